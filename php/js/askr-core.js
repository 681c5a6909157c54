/**
 * askr-core.js: what askr-connector.js (Laravel Echo) and askr-echo.js (standalone) share: the
 * channels of one tab, their dispatch, and ONE stream for all the tabs of an origin. A leader tab,
 * elected with Web Locks, holds the stream (askr-stream.js) for the union of every tab's channels;
 * a BroadcastChannel carries the frames to the other tabs and their channel sets to the leader.
 * When the leader goes, the lock passes to another tab, which resumes from the last id it saw (or,
 * before any event, from the position the stream vouched for in askr:connected).
 * Invariants: every tab dispatches each event at most once and in stream order (ids are deduped
 * per tab); without Web Locks or BroadcastChannel each tab holds its own stream.
 *
 *   leader tab                          other tabs
 *   StreamSession --frame/state--> BroadcastChannel --> receive() --> their channels
 *        ^                               |
 *        +-------- want/bye/refresh -----+
 */
import { isGuarded, parseData, parseId, StreamSession } from './askr-stream.js';

/**
 * @typedef {import('./askr-stream.js').SseFrame} SseFrame
 * @typedef {import('./askr-stream.js').SessionSnapshot} SessionSnapshot
 * @typedef {import('./askr-stream.js').GrantInfo} GrantInfo
 * @typedef {import('./askr-stream.js').StreamState} StreamState
 * @typedef {{ user_id: string | number, user_info?: unknown }} Member
 * @typedef {{ status: number, reason: string }} ChannelError
 * @typedef {{
 *   event: (event: string, data: any) => void,
 *   subscribed: () => void,
 *   error: (error: ChannelError) => void,
 *   here: (members: Member[]) => void,
 *   joining: (member: Member) => void,
 *   leaving: (member: Member) => void,
 * }} ChannelHandler what a channel object of the connector or of the standalone client implements
 * @typedef {{
 *   handler: ChannelHandler, status: 'pending' | 'allowed' | 'refused', generation: number,
 *   errorKey: string | null, hereKey: string | null,
 *   waiters: Array<{ resolve: () => void, reject: (err: Error) => void }>
 * }} Entry
 * @typedef {{
 *   endpoint?: string, authEndpoint?: string, whisperEndpoint?: string,
 *   headers?: () => Record<string, string>, withCredentials?: boolean, shareTabs?: boolean,
 *   reconnectMaxMs?: number
 * }} ClientOptions
 * @typedef {SessionSnapshot & { t: 'state', members: Record<string, Member[]> }} StateMessage
 * @typedef {StateMessage
 *   | { t: 'frame', frame: SseFrame }
 *   | { t: 'whisper', channel: string, event: string, data: unknown }
 *   | { t: 'hello' | 'leader' | 'bye' | 'refresh', tab: string }
 *   | { t: 'want', tab: string, channels: string[] }} TabMessage
 */

const EMPTY_STATE = /** @type {StateMessage} */ ({
  t: 'state',
  state: 'idle',
  socketId: null,
  grant: null,
  results: {},
  stream: [],
  generation: 0,
  position: null,
  members: {},
});

/** @param {Map<string, Member>} members */
function membersKey(members) {
  return JSON.stringify([...members.keys()].sort());
}

/** One tab's side of the connection. */
export class AskrClient {
  /** @param {ClientOptions} options */
  constructor(options = {}) {
    this.options = {
      endpoint: options.endpoint ?? '/askr/events',
      authEndpoint: options.authEndpoint ?? '/askr/auth',
      whisperEndpoint: options.whisperEndpoint ?? '/askr/whisper',
      headers: options.headers ?? (() => ({})),
      credentials: /** @type {RequestCredentials} */ (
        options.withCredentials ? 'include' : 'same-origin'
      ),
      reconnectMaxMs: options.reconnectMaxMs ?? 30_000,
    };
    /** @type {Map<string, Entry>} this tab's channels */
    this.entries = new Map();
    /** @type {Map<string, Set<string>>} the channels of the other tabs, by tab id */
    this.remote = new Map();
    /** @type {Map<string, Map<string, Member>>} presence members by channel */
    this.members = new Map();
    /** @type {{ epoch: string, seq: number, channels: Set<string | null> } | null} */
    this.position = null;
    /** @type {string | null} the id to resume from */
    this.lastEventId = null;
    /** Whether lastEventId comes from a frame (an event, askr:lost) rather than a position. */
    this.eventSeen = false;
    /** @type {StateMessage} */
    this.shared = EMPTY_STATE;
    /** @type {StreamState} */
    this.state = 'idle';
    /** @type {Set<(state: StreamState) => void>} */
    this.stateCallbacks = new Set();
    /** @type {Set<(info: any) => void>} */
    this.lostCallbacks = new Set();
    /** @type {Set<() => void>} */
    this.grantWaiters = new Set();
    /** @type {StreamSession | null} */
    this.session = null;
    this.closed = false;
    this.announceQueued = false;
    this.tab = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    /** @type {'solo' | 'leader' | 'follower'} */
    this.role = 'solo';
    /** @type {BroadcastChannel | null} */
    this.bc = null;
    /** @type {(() => void) | null} */
    this.releaseLock = null;
    /** @type {(() => void) | null} */
    this.releaseTabLock = null;
    this.lockAbort = new AbortController();
    /** @type {LockManager | null} */
    this.locks = null;
    this.lockKey = '';
    /** @type {Set<string>} tabs whose lock the leader waits for (it is free once they are gone) */
    this.watched = new Set();
    const locks = globalThis.navigator?.locks;
    if (
      options.shareTabs !== false &&
      locks !== undefined &&
      typeof BroadcastChannel === 'function'
    ) {
      this.share(locks);
    } else {
      this.startSession();
    }
  }

  /**
   * Joins the tabs of this origin: a BroadcastChannel, a queued Web Lock whose holder leads, and
   * a lock of this tab's own, held while it lives: the leader waits for it to learn that the tab
   * is gone (closed, crashed: no goodbye needed) and drops its channels.
   * @param {LockManager} locks
   */
  share(locks) {
    const key = `askr ${new URL(this.options.endpoint, globalThis.location?.href).href}`;
    this.role = 'follower';
    this.locks = locks;
    this.lockKey = key;
    // Requested before this tab says anything, so it holds it before any leader asks for it.
    locks
      .request(`${key} tab ${this.tab}`, { signal: this.lockAbort.signal }, () => {
        return new Promise((resolve) => {
          this.releaseTabLock = () => resolve(undefined);
        });
      })
      .catch(() => {}); // aborted by disconnect(): nothing to release
    this.bc = new BroadcastChannel(key);
    this.bc.onmessage = (e) => this.onMessage(e.data);
    locks
      .request(key, { signal: this.lockAbort.signal }, () => this.lead())
      .catch((/** @type {unknown} */ err) => {
        if (this.closed) return; // the request was aborted by disconnect()
        console.warn('askr: Web Locks failed; this tab holds its own stream', err);
        this.bc?.close();
        this.bc = null;
        this.role = 'solo';
        this.startSession();
      });
    this.post({ t: 'hello', tab: this.tab });
    globalThis.addEventListener?.('pagehide', (e) => {
      if (!e.persisted) this.post({ t: 'bye', tab: this.tab });
    });
  }

  /** Runs while this tab holds the lock: resolves (releasing it) on disconnect(). */
  lead() {
    if (this.closed) return Promise.resolve();
    this.role = 'leader';
    for (const tab of this.remote.keys()) this.watch(tab);
    this.startSession();
    this.post({ t: 'leader', tab: this.tab });
    return new Promise((resolve) => {
      this.releaseLock = () => resolve(undefined);
    });
  }

  /**
   * (Leader) Waits for the lock of `tab`, which it holds while it lives: granted, the tab is gone.
   * @param {string} tab
   */
  watch(tab) {
    if (this.locks === null || this.watched.has(tab)) return;
    this.watched.add(tab);
    this.locks
      .request(`${this.lockKey} tab ${tab}`, { signal: this.lockAbort.signal }, () => {
        this.watched.delete(tab);
        if (!this.remote.delete(tab)) return;
        this.session?.setChannels(this.union());
      })
      .catch(() => {}); // aborted by disconnect(): this tab no longer leads
  }

  startSession() {
    const g = this.shared.grant;
    this.session = new StreamSession(
      {
        endpoint: this.options.endpoint,
        authEndpoint: this.options.authEndpoint,
        credentials: this.options.credentials,
        headers: this.options.headers,
        reconnectMaxMs: this.options.reconnectMaxMs,
        // A new leader goes on with the same socket id, and with the old leader's grant while it
        // covers the channels: a handover asks no PHP.
        socketId: this.shared.socketId,
        grant: g !== null && g.expiresAt > Date.now() + 5000 ? g : null,
        connectedBefore: this.state === 'connected' || this.state === 'reconnecting',
      },
      {
        onFrame: (frame) => this.emit({ t: 'frame', frame }),
        onChange: () => this.emitState(),
        lastEventId: () => this.lastEventId,
      },
    );
    this.session.setChannels(this.union());
  }

  /** Subscribes this tab to `name`; `handler` gets its events. @param {string} name @param {ChannelHandler} handler */
  add(name, handler) {
    /** @type {Entry} */
    const entry = {
      handler,
      status: 'pending',
      generation: -1,
      errorKey: null,
      hereKey: null,
      waiters: [],
    };
    this.entries.set(name, entry);
    this.channelsChanged();
    // The stream may hold the channel already (another tab's, or left and joined again): apply
    // what is known, after the caller chained its callbacks (`join(…).here(…)`).
    queueMicrotask(() => {
      if (this.entries.get(name) === entry && !this.closed) this.applyState(this.shared);
    });
  }

  /** @param {string} name */
  remove(name) {
    const entry = this.entries.get(name);
    if (entry === undefined) return;
    this.entries.delete(name);
    for (const w of entry.waiters) w.reject(new Error(`askr: left channel "${name}"`));
    this.channelsChanged();
  }

  /** The socket id of the stream (`X-Socket-ID` for toOthers()), once known. */
  socketId() {
    return this.shared.socketId;
  }

  /** @param {(state: StreamState) => void} callback @returns {() => void} unsubscribes */
  onState(callback) {
    this.stateCallbacks.add(callback);
    return () => this.stateCallbacks.delete(callback);
  }

  /** @param {(info: any) => void} callback */
  onLost(callback) {
    this.lostCallbacks.add(callback);
  }

  /** Closes this tab's side; a leader hands the stream over to another tab. */
  disconnect() {
    if (this.closed) return;
    this.closed = true;
    this.session?.close();
    this.session = null;
    this.post({ t: 'bye', tab: this.tab });
    this.lockAbort.abort();
    this.releaseLock?.();
    this.releaseTabLock?.();
    this.bc?.close();
    this.bc = null;
    this.setState('disconnected');
  }

  /**
   * Sends a client event (`client-…`) to the other members of a private/presence channel: POST to
   * the sidecar's whisper endpoint with the grant, and to this browser's other tabs directly (the
   * sidecar skips the stream they share with this one). Waits until the channel is authorized.
   * @param {string} name @param {string} event @param {unknown} data @returns {Promise<void>}
   */
  async whisper(name, event, data) {
    if (!isGuarded(name))
      throw new Error(`askr: whisper needs a private or presence channel, not "${name}"`);
    const entry = this.entries.get(name);
    if (entry === undefined)
      throw new Error(`askr: whisper on "${name}", which this page did not join`);
    await this.authorized(name, entry);
    const payload = JSON.parse(JSON.stringify(data ?? null));
    for (let attempt = 0; ; attempt++) {
      const token = this.shared.grant?.token ?? '';
      const res = await fetch(this.options.whisperEndpoint, {
        method: 'POST',
        credentials: this.options.credentials,
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json',
          'X-Askr-Grant': token,
        },
        body: JSON.stringify({
          channel: name,
          event,
          data: payload,
          socket_id: this.shared.socketId,
        }),
      });
      if (res.ok) break;
      if (res.status === 401 && attempt === 0) {
        await this.newGrant(token); // expired: one more try with a fresh grant
        continue;
      }
      throw new Error(`askr: whisper on "${name}" refused (${res.status}): ${await res.text()}`);
    }
    this.bc?.postMessage({ t: 'whisper', channel: name, event, data: payload });
  }

  /** @param {string} name @param {Entry} entry @returns {Promise<void>} */
  authorized(name, entry) {
    if (entry.status === 'allowed' && this.shared.grant?.channels.includes(name))
      return Promise.resolve();
    if (entry.status === 'refused')
      return Promise.reject(new Error(`askr: channel "${name}" was refused`));
    return new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
  }

  /** Asks the stream holder for a new grant and waits for it (10 s at most). @param {string} old */
  newGrant(old) {
    if (this.session !== null) this.session.refreshGrant();
    else this.post({ t: 'refresh', tab: this.tab });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.grantWaiters.delete(check);
        reject(new Error('askr: no new grant within 10 s'));
      }, 10_000);
      const check = () => {
        if ((this.shared.grant?.token ?? old) === old) return;
        clearTimeout(timer);
        this.grantWaiters.delete(check);
        resolve(undefined);
      };
      this.grantWaiters.add(check);
    });
  }

  /** This tab's channels, without the refused ones. */
  ownChannels() {
    return [...this.entries].filter(([, e]) => e.status !== 'refused').map(([name]) => name);
  }

  /** Every tab's channels: what the stream holds. */
  union() {
    const all = new Set(this.ownChannels());
    for (const channels of this.remote.values()) for (const name of channels) all.add(name);
    return all;
  }

  channelsChanged() {
    this.session?.setChannels(this.union());
    if (this.bc === null || this.announceQueued) return;
    this.announceQueued = true;
    queueMicrotask(() => {
      this.announceQueued = false;
      this.post({ t: 'want', tab: this.tab, channels: this.ownChannels() });
    });
  }

  /** @param {TabMessage} msg */
  post(msg) {
    if (this.closed && msg.t !== 'bye') return;
    this.bc?.postMessage(msg);
  }

  /** From the stream (this tab leads or is alone): here, and to the other tabs. @param {TabMessage} msg */
  emit(msg) {
    this.receive(msg);
    if (this.role === 'leader') this.post(msg);
  }

  emitState() {
    if (this.session === null) return;
    const snapshot = this.session.snapshot();
    /** @type {Record<string, Member[]>} */
    const members = {};
    for (const name of snapshot.stream) {
      const m = this.members.get(name);
      if (m !== undefined) members[name] = [...m.values()];
    }
    this.emit({ t: 'state', ...snapshot, members });
  }

  /** A message of another tab. @param {TabMessage} msg */
  onMessage(msg) {
    if (this.closed) return;
    switch (msg.t) {
      case 'frame':
      case 'state':
      case 'whisper':
        this.receive(msg);
        return;
      case 'leader':
        this.post({ t: 'want', tab: this.tab, channels: this.ownChannels() });
        return;
      case 'want':
        this.remote.set(msg.tab, new Set(msg.channels));
        if (this.role === 'leader') this.watch(msg.tab);
        break;
      case 'bye':
        this.remote.delete(msg.tab);
        break;
      case 'refresh':
        this.session?.refreshGrant();
        return;
      case 'hello':
        break;
    }
    if (this.session === null) return;
    this.session.setChannels(this.union());
    this.emitState(); // the new tab learns the grant, results and members it may already have
  }

  /** @param {TabMessage} msg */
  receive(msg) {
    if (msg.t === 'frame') this.handleFrame(msg.frame);
    else if (msg.t === 'state') this.applyState(msg);
    else if (msg.t === 'whisper') {
      const entry = this.entries.get(msg.channel);
      if (entry?.status === 'allowed') entry.handler.event(msg.event, msg.data);
    }
  }

  /** @param {StateMessage} s */
  applyState(s) {
    this.shared = s;
    // No event yet: resume from the stream's position, so an event published while the stream
    // is reopened (a channel added, a new grant, a handover) is replayed, not missed.
    if (!this.eventSeen && typeof s.position === 'string') this.lastEventId = s.position;
    for (const [name, list] of Object.entries(s.members)) {
      this.members.set(name, new Map(list.map((m) => [String(m.user_id), m])));
    }
    let refusedSome = false;
    for (const [name, entry] of [...this.entries]) {
      const result = s.results[name];
      if (result !== undefined && !result.allowed) {
        const key = `${result.status} ${result.reason}`;
        if (entry.errorKey !== key) {
          entry.errorKey = key;
          if (result.status === 401 || result.status === 403 || result.status === 400) {
            entry.status = 'refused';
            refusedSome = true;
            for (const w of entry.waiters.splice(0))
              w.reject(new Error(`askr: channel "${name}" was refused`));
          }
          entry.handler.error({ status: result.status, reason: result.reason });
        }
        continue;
      }
      const inStream = s.stream.includes(name);
      if (result?.allowed || (inStream && !isGuarded(name))) {
        entry.status = 'allowed';
        entry.errorKey = null;
      }
      if (entry.status === 'allowed' && s.grant?.channels.includes(name)) {
        for (const w of entry.waiters.splice(0)) w.resolve();
      }
      if (inStream && entry.generation !== s.generation) {
        entry.generation = s.generation;
        entry.handler.subscribed();
      }
      if (inStream) this.presenceSync(name);
    }
    if (refusedSome) this.channelsChanged();
    for (const check of [...this.grantWaiters]) check();
    this.setState(s.state);
  }

  /** Calls here() when this tab has not told the member list yet, or it changed. @param {string} name */
  presenceSync(name) {
    const entry = this.entries.get(name);
    const members = this.members.get(name);
    if (entry === undefined || members === undefined || !name.startsWith('presence-')) return;
    const key = membersKey(members);
    if (entry.hereKey === key) return;
    entry.hereKey = key;
    entry.handler.here([...members.values()]);
  }

  /** @param {SseFrame} frame */
  handleFrame(frame) {
    const event = frame.event;
    if (event === 'askr:lost') {
      // What follows (the newest events still held) is older than the lost frame's id.
      this.position = null;
      this.lastEventId = frame.id;
      this.eventSeen = frame.id !== null;
      const info = parseData(frame.data);
      for (const callback of [...this.lostCallbacks]) callback(info);
      return;
    }
    if (event === 'askr:presence.members') {
      // Sent first on every new stream, without id: the full list.
      const data = parseData(frame.data);
      if (typeof data?.channel !== 'string' || !Array.isArray(data.members)) return;
      const list = /** @type {Member[]} */ (data.members);
      this.members.set(data.channel, new Map(list.map((m) => [String(m.user_id), m])));
      this.presenceSync(data.channel);
      return;
    }
    if (!this.accept(frame.id)) return;
    const channel = frame.id === null ? null : (parseId(frame.id)?.channel ?? null);
    if (channel === null) return;
    const data = parseData(frame.data);
    if (event === 'askr:presence.join' || event === 'askr:presence.leave') {
      this.presence(
        event,
        typeof data?.channel === 'string' ? data.channel : channel,
        data?.member,
      );
      return;
    }
    const entry = this.entries.get(channel);
    if (entry === undefined || entry.status === 'refused') return;
    entry.handler.event(event, data);
  }

  /**
   * Join/leave events are replayed after the member list on a resume: only real changes count.
   * @param {string} event @param {string} channel @param {Member | undefined} member
   */
  presence(event, channel, member) {
    if (member === undefined || member === null) return;
    let members = this.members.get(channel);
    if (members === undefined) this.members.set(channel, (members = new Map()));
    const key = String(member.user_id);
    const joined = event === 'askr:presence.join';
    if (joined === members.has(key)) return;
    if (joined) members.set(key, member);
    else members.delete(key);
    const entry = this.entries.get(channel);
    if (entry === undefined || entry.hereKey === null) return;
    entry.hereKey = membersKey(members);
    if (joined) entry.handler.joining(member);
    else entry.handler.leaving(member);
  }

  /**
   * Records the position; false for a frame already dispatched. An event published to several
   * channels comes as one frame per channel with the same seq: (seq, channel) is the key.
   * @param {string | null} raw
   */
  accept(raw) {
    const id = raw === null ? null : parseId(raw);
    if (raw === null || id === null) return true;
    const pos = this.position;
    if (pos !== null && pos.epoch === id.epoch) {
      if (id.seq < pos.seq) return false;
      if (id.seq === pos.seq) {
        if (pos.channels.has(id.channel)) return false;
        pos.channels.add(id.channel);
        this.lastEventId = raw;
        this.eventSeen = true;
        return true;
      }
    }
    this.position = { epoch: id.epoch, seq: id.seq, channels: new Set([id.channel]) };
    this.lastEventId = raw;
    this.eventSeen = true;
    return true;
  }

  /** @param {StreamState} state */
  setState(state) {
    if (this.state === state) return;
    this.state = state;
    for (const callback of [...this.stateCallbacks]) callback(state);
  }
}

/**
 * Echo's EventFormatter: `.name` (or `\name`) is taken as is, else `namespace.name` with dots as
 * backslashes (`OrderShipped` -> `App\Events\OrderShipped`).
 * @param {string} event @param {string | false | null | undefined} namespace
 */
export function formatEventName(event, namespace) {
  if (event.startsWith('.') || event.startsWith('\\')) return event.slice(1);
  return (namespace ? `${namespace}.${event}` : event).replace(/\./g, '\\');
}

/** Laravel's notification event (Echo's `notification()`). */
export const NOTIFICATION_EVENT =
  '.Illuminate\\Notifications\\Events\\BroadcastNotificationCreated';

/**
 * The CSRF token as Echo finds it: window.Laravel.csrfToken, the option, or the csrf-token meta.
 * @param {string | null | undefined} option @returns {string | null}
 */
export function csrfToken(option) {
  const laravel = /** @type {{ Laravel?: { csrfToken?: string } }} */ (globalThis).Laravel;
  if (laravel?.csrfToken) return laravel.csrfToken;
  if (option) return option;
  return (
    globalThis.document?.querySelector?.('meta[name="csrf-token"]')?.getAttribute('content') ?? null
  );
}
