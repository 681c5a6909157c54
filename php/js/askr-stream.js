/**
 * askr-stream.js: the one stream a browser holds to askr-sidecar (docs/browser.md). Private and
 * presence channels are authorized in ONE request to the sidecar's batch endpoint (POST /askr/auth,
 * with whatever headers the app uses: session cookie, bearer token, CSRF), which answers a short-lived
 * signed grant; the stream is GET /askr/events?channel=… with the grant in X-Askr-Grant (never in
 * the URL, so never in a log), read with fetch() and parsed here (EventSource can send no header,
 * reports no status and only dispatches event names bound in advance). Invariants: at most one
 * stream open; a reconnect within the grant asks no PHP; the grant is refreshed at ~80% of its
 * life; a refused channel never takes the others down.
 */

/** Pusher's channel-name characters (docs/sse.md). */
const CHANNEL_NAME = /^[A-Za-z0-9_\-=@,.;]+$/;

/** `<epoch>-<seq>[@<channel>]`, the sidecar's SSE ids (the first `@` after the seq ends it). */
const ID = /^([A-Za-z0-9]+)-(\d+)(?:@(.+))?$/;

/**
 * @typedef {{ event: string, data: string, id: string | null }} SseFrame
 *   one dispatched SSE event; `id` is the frame's own `id:` field (null when it had none)
 * @typedef {{ allowed: true, member?: unknown } | { allowed: false, status: number, reason: string }} ChannelResult
 * @typedef {{ token: string, expiresAt: number, channels: string[] }} GrantInfo
 * @typedef {'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'failed'} StreamState
 * @typedef {{
 *   state: StreamState, socketId: string | null, grant: GrantInfo | null,
 *   results: Record<string, ChannelResult>, stream: string[], generation: number,
 *   position: string | null
 * }} SessionSnapshot
 *   `position`: the newest `<epoch>-<seq>` a stream vouched for (askr:connected): a tab that has
 *   received no event resumes from it
 * @typedef {{
 *   endpoint: string, authEndpoint: string, credentials: RequestCredentials,
 *   headers: () => Record<string, string>, reconnectMaxMs: number,
 *   socketId?: string | null, grant?: GrantInfo | null, connectedBefore?: boolean
 * }} SessionOptions
 * @typedef {{
 *   onFrame: (frame: SseFrame) => void, onChange: () => void, lastEventId: () => string | null
 * }} SessionHooks
 * @typedef {{
 *   abort: AbortController, channels: string[], token: string | null, open: boolean,
 *   resumedFrom: string | null, pendingPosition: string | null
 * }} OpenStream one request to the events endpoint; `resumedFrom`: the id it was opened with
 */

/** @param {string} name @returns {boolean} a private-/presence- channel, authorized by the app */
export function isGuarded(name) {
  return name.startsWith('private-') || name.startsWith('presence-');
}

/** @param {string} name @returns {boolean} */
export function isChannelName(name) {
  return CHANNEL_NAME.test(name);
}

/** @param {string} id @returns {{ epoch: string, seq: number, channel: string | null } | null} */
export function parseId(id) {
  const m = ID.exec(id);
  return m === null ? null : { epoch: m[1] ?? '', seq: Number(m[2]), channel: m[3] ?? null };
}

/** @param {string} data @returns {any} the JSON value, or the raw text when it is not JSON */
export function parseData(data) {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

/**
 * The Server-Sent Events parser of the HTML spec (lines end with CRLF, LF or CR, even split across
 * chunks; `:` comments; a frame without data is not dispatched), fed with decoded text.
 */
export class SseParser {
  /**
   * @param {(frame: SseFrame) => void} onFrame @param {(ms: number) => void} onRetry
   * @param {(text: string) => void} [onComment] a `:` line (the sidecar's heartbeat)
   */
  constructor(onFrame, onRetry, onComment) {
    this.onFrame = onFrame;
    this.onRetry = onRetry;
    this.onComment = onComment;
    this.rest = '';
    this.skipLF = false;
    this.started = false;
    /** @type {string[]} */
    this.data = [];
    this.event = '';
    /** @type {string | null} */
    this.id = null;
  }

  /** @param {string} text */
  push(text) {
    let s = this.rest + text;
    if (!this.started && s !== '') {
      this.started = true;
      if (s.charCodeAt(0) === 0xfeff) s = s.slice(1); // a BOM is ignored
    }
    let start = 0;
    if (this.skipLF && s.charCodeAt(0) === 10) start = 1; // the LF of a CRLF split by a chunk
    this.skipLF = false;
    for (let i = start; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(s.slice(start, i));
      if (c === 13) {
        if (i + 1 === s.length) this.skipLF = true;
        else if (s.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.rest = s.slice(start);
  }

  /** @param {string} line */
  line(line) {
    if (line === '') {
      if (this.data.length > 0) {
        this.onFrame({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
      }
      this.data = [];
      this.event = '';
      this.id = null;
      return;
    }
    if (line.charCodeAt(0) === 58) {
      this.onComment?.(line.slice(1)); // ":" comment (heartbeat)
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}

/** @param {readonly string[]} a @param {readonly string[]} b */
function sameList(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The stream of the tab that holds it (alone, or as the leader of the tabs of its origin):
 * `setChannels()` gives the channels wanted, the session authorizes them, keeps the grant fresh,
 * (re)opens the stream and hands every frame to `hooks.onFrame`; `hooks.onChange` fires when
 * `snapshot()` changed (state, socket id, grant, per-channel results, subscribed channels).
 */
export class StreamSession {
  /** @param {SessionOptions} options @param {SessionHooks} hooks */
  constructor(options, hooks) {
    this.options = options;
    this.hooks = hooks;
    /** @type {Set<string>} */
    this.desired = new Set();
    /** @type {Map<string, ChannelResult>} */
    this.results = new Map();
    /** Channels the app refused (401/403) or whose name is invalid: never asked again. */
    this.refused = new Set();
    /** Channels whose auth failed for another reason (502): retried after a backoff. */
    this.waiting = new Set();
    /** @type {{ token: string, expiresAt: number, channels: Set<string> } | null} */
    this.grant = null;
    if (options.grant) {
      const g = options.grant;
      this.grant = { token: g.token, expiresAt: g.expiresAt, channels: new Set(g.channels) };
    }
    this.grantStale = false;
    this.socketId = options.socketId ?? null;
    /** @type {string | null} see SessionSnapshot */
    this.position = null;
    /** @type {StreamState} */
    this.state = 'idle';
    this.connectedBefore = options.connectedBefore ?? false;
    /** @type {OpenStream | null} */
    this.stream = null;
    this.generation = 0;
    this.retryMs = 3000; // until the server's retry: frame says otherwise
    this.failures = 0;
    this.syncing = false;
    this.again = false;
    this.closed = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.syncTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.refreshTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.waitingTimer = undefined;
    if (this.grant !== null) this.scheduleRefresh(this.grant.expiresAt, null);
  }

  /** The channels to hold (a tab's own, or the union of every tab's). @param {Iterable<string>} names */
  setChannels(names) {
    const next = new Set(names);
    for (const name of this.desired) {
      if (next.has(name)) continue;
      this.results.delete(name); // asked again if it comes back
      this.refused.delete(name);
      this.waiting.delete(name);
    }
    for (const name of next) {
      if (this.desired.has(name) || isChannelName(name)) continue;
      this.refused.add(name);
      this.results.set(name, { allowed: false, status: 400, reason: 'invalid channel name' });
    }
    this.desired = next;
    this.schedule(0);
  }

  /** Fetches a new grant now (a whisper was refused with 401). */
  refreshGrant() {
    this.grantStale = true;
    this.schedule(0);
  }

  /** Ends the stream for good. */
  close() {
    this.closed = true;
    clearTimeout(this.syncTimer);
    clearTimeout(this.refreshTimer);
    clearTimeout(this.waitingTimer);
    this.closeStream();
    this.setState('disconnected');
  }

  /** @returns {SessionSnapshot} */
  snapshot() {
    const g = this.grant;
    return {
      state: this.state,
      socketId: this.socketId,
      grant:
        g === null ? null : { token: g.token, expiresAt: g.expiresAt, channels: [...g.channels] },
      results: Object.fromEntries(this.results),
      stream: this.stream?.open === true ? [...this.stream.channels] : [],
      generation: this.generation,
      position: this.position,
    };
  }

  /** @param {number} delayMs */
  schedule(delayMs) {
    if (this.closed) return;
    clearTimeout(this.syncTimer);
    this.syncTimer = setTimeout(() => void this.sync(), delayMs);
  }

  /** The next reconnect delay: the server's retry, doubled per failure, capped, with jitter. */
  backoff() {
    const ms = Math.min(this.retryMs * 2 ** this.failures, this.options.reconnectMaxMs);
    this.failures++;
    return Math.round(ms * (0.5 + Math.random() / 2));
  }

  /** @param {StreamState} state */
  setState(state) {
    if (this.state === state) return;
    this.state = state;
    if (state === 'connected') this.connectedBefore = true;
    this.hooks.onChange();
  }

  /** The state while not connected: first connect, or a reconnect. */
  waitingState() {
    return this.connectedBefore ? 'reconnecting' : 'connecting';
  }

  async sync() {
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = true;
    try {
      do {
        this.again = false;
        await this.syncOnce();
      } while (this.again && !this.closed);
    } finally {
      this.syncing = false;
    }
  }

  async syncOnce() {
    if (this.closed) return;
    const wanted = [...this.desired].filter((name) => !this.refused.has(name));
    const guarded = wanted.filter(isGuarded);
    /** @param {string} name */
    const covered = (name) => this.grant !== null && this.grant.channels.has(name);
    const uncovered = guarded.filter((name) => !covered(name) && !this.waiting.has(name));
    if (guarded.length > 0 && (this.grantStale || uncovered.length > 0)) {
      if (!(await this.authorize(guarded))) return;
    }
    const channels = wanted.filter((name) => !isGuarded(name) || covered(name));
    if (channels.length === 0) {
      this.closeStream();
      this.setState('idle');
      this.hooks.onChange();
      return;
    }
    const s = this.stream;
    if (s !== null && sameList(s.channels, channels) && s.token === (this.grant?.token ?? null))
      return;
    this.open(channels);
  }

  /**
   * One batch request for every guarded channel. Returns false when it failed as a whole (a retry
   * is scheduled); per-channel refusals are recorded and reported, never a failure.
   * @param {string[]} channels
   */
  async authorize(channels) {
    /** @type {{ channels: string[], socket_id?: string }} */
    const body = { channels };
    if (this.socketId !== null) body.socket_id = this.socketId;
    if (this.state === 'idle') this.setState(this.waitingState());
    let res;
    let answer;
    try {
      res = await fetch(this.options.authEndpoint, {
        method: 'POST',
        credentials: this.options.credentials,
        headers: {
          'X-Requested-With': 'XMLHttpRequest',
          ...this.options.headers(),
          'Content-Type': 'application/json',
          Accept: 'application/json',
        },
        body: JSON.stringify(body),
      });
      answer = res.ok ? await res.json() : await res.text();
    } catch (err) {
      if (this.closed) return false;
      console.warn('askr: the channel authorization request failed', err);
      this.setState(this.waitingState());
      this.schedule(this.backoff());
      return false;
    }
    if (this.closed) return false;
    if (!res.ok || typeof answer?.grant !== 'string' || typeof answer?.channels !== 'object') {
      const text = typeof answer === 'string' ? answer : 'not a grant';
      console.warn(`askr: ${this.options.authEndpoint} answered ${res.status}: ${text}`);
      this.setState(res.status === 400 || res.status === 404 ? 'failed' : this.waitingState());
      this.schedule(Math.max(this.backoff(), retryAfterMs(res)));
      return false;
    }
    /** @type {Set<string>} */
    const allowed = new Set();
    let transient = false;
    for (const name of channels) {
      const r = answer.channels[name];
      if (r?.allowed === true) {
        allowed.add(name);
        this.waiting.delete(name);
        this.results.set(
          name,
          r.member === undefined ? { allowed: true } : { allowed: true, member: r.member },
        );
        continue;
      }
      const status = typeof r?.status === 'number' ? r.status : 502;
      const reason = typeof r?.reason === 'string' ? r.reason : 'the sidecar gave no answer for it';
      this.results.set(name, { allowed: false, status, reason });
      // 400: a bad name, or past sse.max_channels_per_connection: asking again changes nothing.
      if (status === 400 || status === 401 || status === 403) this.refused.add(name);
      else {
        this.waiting.add(name);
        transient = true;
      }
    }
    if (transient) {
      clearTimeout(this.waitingTimer);
      this.waitingTimer = setTimeout(() => {
        this.waiting.clear();
        this.schedule(0);
      }, this.backoff());
    }
    const expiresAt = Number(answer.expires_at);
    this.grant = { token: answer.grant, expiresAt, channels: allowed };
    this.grantStale = false;
    if (typeof answer.socket_id === 'string') this.socketId = answer.socket_id;
    // Date has a 1 s resolution (truncated): its latest possible "now" keeps the estimate short.
    const serverNow = Date.parse(res.headers.get('Date') ?? '') + 1000;
    this.scheduleRefresh(expiresAt, Number.isNaN(serverNow) ? null : serverNow);
    this.hooks.onChange();
    return true;
  }

  /**
   * Refreshes at 80% of the grant's life, measured against the server's clock when known (a
   * client clock off by minutes must neither refresh in a loop nor let the grant lapse).
   * @param {number} expiresAt @param {number | null} serverNow
   */
  scheduleRefresh(expiresAt, serverNow) {
    clearTimeout(this.refreshTimer);
    if (!Number.isFinite(expiresAt)) return;
    const lifeMs = expiresAt - (serverNow ?? Date.now());
    this.refreshTimer = setTimeout(
      () => {
        this.grantStale = true;
        this.schedule(0);
      },
      Math.min(Math.max(lifeMs * 0.8, 1000), 2 ** 31 - 1),
    );
  }

  closeStream() {
    if (this.stream === null) return;
    this.stream.abort.abort();
    this.stream = null;
  }

  /** @param {string[]} channels */
  open(channels) {
    this.closeStream();
    const last = this.hooks.lastEventId();
    /** @type {OpenStream} */
    const stream = {
      abort: new AbortController(),
      channels,
      token: this.grant?.token ?? null,
      open: false,
      resumedFrom: last,
      pendingPosition: null,
    };
    this.stream = stream;
    const url = new URL(this.options.endpoint, globalThis.location?.href);
    for (const name of channels) url.searchParams.append('channel', name);
    if (this.socketId !== null) url.searchParams.set('socket_id', this.socketId);
    if (last !== null) url.searchParams.set('lastEventId', last);
    // A planned reopen (channels changed, new grant) keeps "connected": nothing was lost.
    if (this.state !== 'connected') this.setState(this.waitingState());
    void this.read(stream, url);
  }

  /** @param {OpenStream} stream @param {URL} url */
  async read(stream, url) {
    const current = () => this.stream === stream && !this.closed;
    /** @type {Record<string, string>} */
    const headers = { Accept: 'text/event-stream' };
    // A header, not `grant=` in the URL: URLs end up in access logs, proxies' included. Across
    // origins it costs a CORS preflight (the sidecar allows X-Askr-Grant).
    if (stream.token !== null) headers['X-Askr-Grant'] = stream.token;
    let res;
    try {
      res = await fetch(url, {
        headers,
        credentials: this.options.credentials,
        cache: 'no-store',
        signal: stream.abort.signal,
      });
    } catch {
      if (current()) this.ended(stream, this.backoff());
      return;
    }
    if (!current()) return;
    if (res.status !== 200 || res.body === null) {
      await this.refusedStream(stream, res);
      return;
    }
    this.failures = 0;
    stream.open = true;
    this.generation++;
    this.setState('connected');
    this.hooks.onChange();
    const parser = new SseParser(
      (frame) => {
        if (current()) this.frame(stream, frame);
      },
      (ms) => {
        this.retryMs = ms;
      },
      () => {
        // A heartbeat comes after the stream's first write, replay included: its position holds.
        if (current() && stream.pendingPosition !== null) this.vouch(stream.pendingPosition);
        stream.pendingPosition = null;
      },
    );
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || !current()) break;
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch {
      // The connection broke (or this stream was aborted: then current() is false).
    }
    // The server ended it (shutdown, grant expiry, close action, lifetime): reconnect after retry:.
    if (current()) this.ended(stream, this.retryMs);
  }

  /**
   * A non-200 answer: 401 means the grant expired or the secret changed (a restart without
   * sse.grant_secret): fetch a new one. Others are retried with backoff.
   * @param {OpenStream} stream @param {Response} res
   */
  async refusedStream(stream, res) {
    const text = (await res.text().catch(() => '')).slice(0, 500);
    if (this.stream !== stream || this.closed) return;
    this.stream = null;
    let delay = Math.max(this.backoff(), retryAfterMs(res));
    if (res.status === 401 || res.status === 403) {
      if (this.failures === 1) delay = 0; // the first time, at once: a restart costs no wait
      this.grant = null;
      this.grantStale = true;
    }
    if (res.status !== 401) console.warn(`askr: the stream was refused (${res.status}): ${text}`);
    this.setState(res.status === 400 ? 'failed' : this.waitingState());
    this.hooks.onChange();
    this.schedule(delay);
  }

  /** @param {OpenStream} stream @param {number} delayMs */
  ended(stream, delayMs) {
    if (this.stream === stream) this.stream = null;
    this.setState(this.waitingState());
    this.hooks.onChange();
    this.schedule(delayMs);
  }

  /** @param {OpenStream} stream @param {SseFrame} frame */
  frame(stream, frame) {
    if (frame.event === 'askr:connected') {
      const info = parseData(frame.data);
      if (typeof info?.socket_id === 'string' && info.socket_id !== this.socketId) {
        this.socketId = info.socket_id;
        this.hooks.onChange();
      }
      const position = info?.position;
      if (typeof position !== 'string' || parseId(position) === null) return;
      // The position is the hub's as the stream started: a resume from it misses nothing. But
      // a stream that resumed from an older id replays what came between in the same write,
      // after this frame: taking the position now would skip that replay if the connection
      // broke mid-write, so it waits for the first heartbeat (which follows the whole write).
      if (stream.resumedFrom === null || stream.resumedFrom === position) this.vouch(position);
      else stream.pendingPosition = position;
      return;
    }
    this.hooks.onFrame(frame);
  }

  /** Records a position a stream vouched for (see SessionSnapshot). @param {string} position */
  vouch(position) {
    if (position === this.position) return;
    this.position = position;
    this.hooks.onChange();
  }
}

/** @param {Response} res @returns {number} Retry-After in ms, 0 when absent */
function retryAfterMs(res) {
  const seconds = Number(res.headers.get('Retry-After'));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}
