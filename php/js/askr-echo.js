/**
 * askr-echo.js: a Laravel Echo-style browser client for askr-sidecar. Plain ES module, no build
 * step, no dependency. Every channel shares ONE EventSource (`/askr/events?channel=a&channel=b`),
 * reopened (with `lastEventId`) when the set of channels changes. Invariants: each event reaches
 * its listeners at most once (ids are ordered per sidecar epoch); `askr:lost` goes to onLost();
 * a stream that the sidecar refused is retried with backoff, after dropping the channels that the
 * app's auth route denies (403), as Echo does for a failed subscription.
 *
 *   import { AskrEcho } from '/vendor/askr/askr-echo.js';
 *   const echo = new AskrEcho();
 *   echo.private(`orders.${id}`).listen('OrderShipped', (e) => render(e));
 *   echo.join('room.1').here(show).joining(add).leaving(remove);
 *   echo.onLost(() => location.reload());
 */

const PRESENCE_EVENTS = ['askr:presence.members', 'askr:presence.join', 'askr:presence.leave'];

/** `<epoch>-<seq>[@<channel>]`, the sidecar's SSE ids (docs/sse.md). */
const ID = /^([A-Za-z0-9]+)-(\d+)(?:@(.+))?$/;

/** @param {string} id */
function parseId(id) {
  const m = ID.exec(id);
  return m === null ? null : { epoch: m[1], seq: Number(m[2]), channel: m[3] ?? null };
}

/** @param {string} data */
function parseData(data) {
  try {
    return JSON.parse(data);
  } catch {
    return data; // not JSON: listeners get the raw text
  }
}

function randomSocketId() {
  const n = new Uint32Array(2);
  globalThis.crypto.getRandomValues(n);
  return `${n[0]}.${n[1]}`;
}

function metaCsrfToken() {
  const meta = globalThis.document?.querySelector?.('meta[name="csrf-token"]');
  return meta?.getAttribute('content') ?? null;
}

function clientEventsError() {
  return new Error(
    'askr-echo: client events (whisper) cannot travel over Server-Sent Events, which are one-way; ' +
      'send a normal request and broadcast from the server (e.g. broadcast(...)->toOthers()).',
  );
}

/** A subscription, public or private. Obtained from AskrEcho#channel() / #private(). */
export class Channel {
  /** @param {AskrEcho} echo @param {string} name the full name, e.g. `private-orders.1` */
  constructor(echo, name) {
    this.echo = echo;
    this.name = name;
    /** @type {Map<string, Set<(data: any) => void>>} SSE event name -> callbacks */
    this.listeners = new Map();
    this.errorCallbacks = new Set();
    this.subscribedCallbacks = new Set();
    this.failed = false;
  }

  /**
   * Calls `callback(payload)` for `event`: `'OrderShipped'` is `App\Events\OrderShipped` (the
   * `namespace` option), `'.message.posted'` is the `broadcastAs()` name as is.
   */
  listen(event, callback) {
    const name = this.echo.formatEventName(event);
    let set = this.listeners.get(name);
    if (set === undefined) this.listeners.set(name, (set = new Set()));
    set.add(callback);
    this.echo.bindEvent(name);
    return this;
  }

  /** Removes one callback, or every callback of `event`. */
  stopListening(event, callback) {
    const name = this.echo.formatEventName(event);
    if (callback === undefined) this.listeners.delete(name);
    else this.listeners.get(name)?.delete(callback);
    return this;
  }

  /** Laravel notifications broadcast to this (usually `App.Models.User.{id}`) channel. */
  notification(callback) {
    return this.listen(
      '.Illuminate\\Notifications\\Events\\BroadcastNotificationCreated',
      callback,
    );
  }

  /** Called each time the stream (re)opens with this channel. */
  subscribed(callback) {
    this.subscribedCallbacks.add(callback);
    return this;
  }

  /** Called with `{ status, message }` when the app's auth route refuses this channel. */
  error(callback) {
    this.errorCallbacks.add(callback);
    return this;
  }

  whisper() {
    throw clientEventsError();
  }

  listenForWhisper() {
    throw clientEventsError();
  }

  /** @internal */
  dispatch(event, data) {
    for (const callback of [...(this.listeners.get(event) ?? [])]) callback(data);
  }
}

/** A `presence-*` channel: Echo's here / joining / leaving, from the sidecar's member events. */
export class PresenceChannel extends Channel {
  constructor(echo, name) {
    super(echo, name);
    /** @type {Map<string, {user_id: string|number, user_info: any}>} */
    this.members = new Map();
    this.hereCallbacks = new Set();
    this.joiningCallbacks = new Set();
    this.leavingCallbacks = new Set();
  }

  /** `callback(infos)` with every member's user_info, at each (re)connect. */
  here(callback) {
    this.hereCallbacks.add(callback);
    return this;
  }

  /** `callback(info)` when a user's first stream joins. */
  joining(callback) {
    this.joiningCallbacks.add(callback);
    return this;
  }

  /** `callback(info)` when a user's last stream leaves. */
  leaving(callback) {
    this.leavingCallbacks.add(callback);
    return this;
  }

  /** @internal */
  presence(event, data) {
    if (event === 'askr:presence.members') {
      this.members = new Map((data.members ?? []).map((m) => [String(m.user_id), m]));
      const infos = [...this.members.values()].map((m) => m.user_info);
      for (const callback of [...this.hereCallbacks]) callback(infos);
      return;
    }
    const member = data.member;
    if (member === undefined || member === null) return;
    const key = String(member.user_id);
    // Join/leave events are replayed after the member list on a resume: only real changes count.
    if (event === 'askr:presence.join' && !this.members.has(key)) {
      this.members.set(key, member);
      for (const callback of [...this.joiningCallbacks]) callback(member.user_info);
    } else if (event === 'askr:presence.leave' && this.members.has(key)) {
      this.members.delete(key);
      for (const callback of [...this.leavingCallbacks]) callback(member.user_info);
    }
  }
}

/**
 * The connection: one EventSource for all channels.
 *
 * Options: `endpoint` ('/askr/events'), `authEndpoint` ('/broadcasting/auth', only used to find
 * out which channel a refused stream was denied), `namespace` ('App.Events'; false for none),
 * `withCredentials` (false; true for a sidecar on another origin), `csrfToken` (default: the
 * `<meta name="csrf-token">`), `reconnectMinMs` (1000), `reconnectMaxMs` (30000),
 * `EventSource` (the global one).
 */
export class AskrEcho {
  constructor(options = {}) {
    this.options = {
      endpoint: '/askr/events',
      authEndpoint: '/broadcasting/auth',
      namespace: 'App.Events',
      withCredentials: false,
      csrfToken: null,
      reconnectMinMs: 1000,
      reconnectMaxMs: 30000,
      EventSource: globalThis.EventSource,
      ...options,
    };
    /** @type {Map<string, Channel>} */
    this.channels = new Map();
    /** 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected' */
    this.state = 'idle';
    this.source = null;
    this.lastEventId = null;
    this.position = null;
    this.boundEvents = new Set();
    this.lostCallbacks = new Set();
    this.stateCallbacks = new Set();
    this.backoffMs = this.options.reconnectMinMs;
    this.timer = null;
    this.scheduled = false;
    this.id = randomSocketId();
    // Echo sends X-Socket-ID with axios requests, so broadcast(...)->toOthers() skips this page.
    globalThis.axios?.interceptors?.request?.use((config) => {
      config.headers = config.headers ?? {};
      config.headers['X-Socket-ID'] = this.id;
      return config;
    });
  }

  /** A public channel. */
  channel(name) {
    return this.subscribe(name, Channel);
  }

  /** `private-${name}`: authorized by the app's routes/channels.php. */
  private(name) {
    return this.subscribe(`private-${name}`, Channel);
  }

  /** `presence-${name}`: a private channel with members. */
  join(name) {
    return this.subscribe(`presence-${name}`, PresenceChannel);
  }

  /** Leaves `name`, `private-name` and `presence-name`. */
  leave(name) {
    for (const full of [name, `private-${name}`, `presence-${name}`]) this.leaveChannel(full);
  }

  /** Leaves one channel by its full name. */
  leaveChannel(name) {
    if (this.channels.delete(name) && this.state !== 'disconnected') this.reconnectSoon();
  }

  /** The id to send as `X-Socket-ID`, so `broadcast(...)->toOthers()` skips this page. */
  socketId() {
    return this.id;
  }

  /** Headers for your own fetch() calls: `fetch(url, { headers: echo.headers() })`. */
  headers() {
    return { 'X-Socket-ID': this.id };
  }

  /** `callback({ reason, lastEventId })` when events were missed for good (`askr:lost`): reload state. */
  onLost(callback) {
    this.lostCallbacks.add(callback);
    return this;
  }

  /** `callback(state)` on every state change. */
  onStateChange(callback) {
    this.stateCallbacks.add(callback);
    return this;
  }

  /** Closes the stream; a later channel() call connects again. */
  disconnect() {
    clearTimeout(this.timer);
    this.timer = null;
    this.source?.close();
    this.source = null;
    this.setState('disconnected');
  }

  /** @internal Echo's EventFormatter: '.name' as is, else `namespace.name`, dots to backslashes. */
  formatEventName(event) {
    if (event.startsWith('.') || event.startsWith('\\')) return event.slice(1);
    const full = this.options.namespace ? `${this.options.namespace}.${event}` : event;
    return full.replace(/\./g, '\\');
  }

  /** @internal */
  subscribe(name, Kind) {
    let channel = this.channels.get(name);
    if (channel === undefined) {
      channel = new Kind(this, name);
      this.channels.set(name, channel);
      this.reconnectSoon();
    }
    return channel;
  }

  /** @internal Adds the EventSource listener for an event name (once per source). */
  bindEvent(name) {
    if (this.source === null || this.boundEvents.has(name)) return;
    this.boundEvents.add(name);
    this.source.addEventListener(name, (e) => this.onFrame(name, e));
  }

  /** Reopens the stream once, after the current task (several subscriptions, one stream). */
  reconnectSoon() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      clearTimeout(this.timer);
      this.timer = null;
      this.connect();
    });
  }

  connect() {
    this.source?.close();
    this.source = null;
    this.boundEvents = new Set();
    const names = [...this.channels.values()].filter((c) => !c.failed).map((c) => c.name);
    if (names.length === 0) {
      this.setState('idle');
      return;
    }
    const url = new URL(this.options.endpoint, globalThis.location?.href);
    for (const name of names) url.searchParams.append('channel', name);
    // A new EventSource has no Last-Event-ID header: the query parameter resumes instead.
    if (this.lastEventId !== null) url.searchParams.set('lastEventId', this.lastEventId);
    const source = new this.options.EventSource(url.toString(), {
      withCredentials: this.options.withCredentials,
    });
    this.source = source;
    const first = this.state === 'idle' || this.state === 'disconnected';
    this.setState(first ? 'connecting' : 'reconnecting');
    source.addEventListener('open', () => {
      if (this.source !== source) return;
      this.backoffMs = this.options.reconnectMinMs;
      this.setState('connected');
      for (const name of names) {
        const channel = this.channels.get(name);
        for (const callback of [...(channel?.subscribedCallbacks ?? [])]) callback();
      }
    });
    source.addEventListener('error', () => {
      if (this.source !== source) return;
      if (source.readyState === 2 /* CLOSED: refused, the browser gives up */) {
        this.source = null;
        this.setState('reconnecting');
        void this.recover(names);
      } else {
        this.setState('reconnecting'); // the browser reconnects by itself, with Last-Event-ID
      }
    });
    for (const name of ['message', 'askr:lost', ...PRESENCE_EVENTS]) this.bindEvent(name);
    for (const channel of this.channels.values())
      for (const name of channel.listeners.keys()) this.bindEvent(name);
  }

  /**
   * After a refused stream (EventSource gives up on a non-200 answer, e.g. 403 or 502): find the
   * channels the app denies, drop them, and retry the rest with exponential backoff.
   */
  async recover(names) {
    const guarded = names.filter((n) => n.startsWith('private-') || n.startsWith('presence-'));
    await Promise.all(guarded.map((name) => this.checkAuth(name)));
    const delay = Math.round(this.backoffMs * (0.5 + Math.random() / 2));
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.reconnectMaxMs);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.source === null && this.state !== 'disconnected') this.connect();
    }, delay);
  }

  /** Asks the auth route about one channel; a 401/403 marks it failed and reports it. */
  async checkAuth(name) {
    let res;
    try {
      const headers = {
        'Content-Type': 'application/x-www-form-urlencoded',
        Accept: 'application/json',
        'X-Requested-With': 'XMLHttpRequest',
        'X-Socket-ID': this.id,
      };
      const token = this.options.csrfToken ?? metaCsrfToken();
      if (token !== null) headers['X-CSRF-TOKEN'] = token;
      res = await fetch(this.options.authEndpoint, {
        method: 'POST',
        headers,
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
        body: new URLSearchParams({ channel_name: name, socket_id: this.id }).toString(),
      });
    } catch {
      return; // the app is unreachable too: retry later
    }
    if (res.status !== 401 && res.status !== 403) return;
    const channel = this.channels.get(name);
    if (channel === undefined) return;
    channel.failed = true;
    const error = { status: res.status, message: `not authorized for channel "${name}"` };
    for (const callback of [...channel.errorCallbacks]) callback(error);
  }

  /** @internal One SSE frame from the stream. */
  onFrame(event, e) {
    if (PRESENCE_EVENTS.includes(event)) {
      // askr:presence.members has no id (e.lastEventId is then the previous event's).
      if (event !== 'askr:presence.members' && !this.accept(e.lastEventId)) return;
      const data = parseData(e.data);
      const channel = this.channels.get(data?.channel);
      if (channel instanceof PresenceChannel) channel.presence(event, data);
      return;
    }
    if (event === 'askr:lost') {
      this.lastEventId = e.lastEventId;
      // What follows (the newest events still held) is older than the lost frame's id.
      this.position = null;
      const data = parseData(e.data);
      for (const callback of [...this.lostCallbacks]) callback(data);
      return;
    }
    if (!this.accept(e.lastEventId)) return;
    const id = parseId(e.lastEventId);
    const channel = id?.channel === null || id === null ? undefined : this.channels.get(id.channel);
    if (channel === undefined) return;
    const data = parseData(e.data);
    if (data !== null && typeof data === 'object' && 'socket' in data) {
      if (data.socket === this.id) return; // broadcast(...)->toOthers() from this page
      delete data.socket;
    }
    channel.dispatch(event, data);
  }

  /** Records the position; false for an event already seen (same epoch, seq not newer). */
  accept(lastEventId) {
    const id = parseId(lastEventId ?? '');
    if (id === null) return true;
    const pos = this.position;
    if (pos !== null && pos.epoch === id.epoch && id.seq <= pos.seq) return false;
    this.position = { epoch: id.epoch, seq: id.seq };
    this.lastEventId = lastEventId;
    return true;
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    for (const callback of [...this.stateCallbacks]) callback(state);
  }
}

export default AskrEcho;
