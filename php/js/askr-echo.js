/**
 * askr-echo.js: an Echo-style browser client for askr-sidecar without Laravel Echo (for Echo itself,
 * use askr-connector.js). Plain ES module, no build step, no dependency; it shares askr-core.js and
 * askr-stream.js with the connector (same protocol, docs/browser.md): one batch authorization and a
 * signed grant for the private/presence channels, one stream for every channel, and for all the
 * tabs of the origin. Invariants: each event reaches its listeners at most once, in order;
 * `askr:lost` goes to onLost(); a refused channel reports its error and leaves the others alone.
 *
 *   import { AskrEcho } from '/vendor/askr/askr-echo.js';
 *   const echo = new AskrEcho();
 *   echo.private(`orders.${id}`).listen('OrderShipped', (e) => render(e));
 *   echo.join('room.1').here(show).joining(add).leaving(remove);
 *   echo.onLost(() => location.reload());
 */
import { AskrClient, csrfToken, formatEventName, NOTIFICATION_EVENT } from './askr-core.js';

/**
 * @typedef {import('./askr-core.js').ChannelHandler} ChannelHandler
 * @typedef {import('./askr-core.js').Member} Member
 * @typedef {import('./askr-stream.js').StreamState} StreamState
 * @typedef {(data: any) => void} Callback
 * @typedef {{
 *   endpoint?: string, authBatchEndpoint?: string, whisperEndpoint?: string,
 *   namespace?: string | false, withCredentials?: boolean, csrfToken?: string | null,
 *   bearerToken?: string | null, headers?: Record<string, string>, reconnectMaxMs?: number,
 *   shareTabs?: boolean, [key: string]: unknown
 * }} AskrEchoOptions
 */

/** A subscription, public or private. Obtained from AskrEcho#channel() / #private(). */
export class Channel {
  /** @param {AskrEcho} echo @param {string} name the full name, e.g. `private-orders.1` */
  constructor(echo, name) {
    this.echo = echo;
    this.name = name;
    /** @type {Map<string, Set<Callback>>} event name as sent -> callbacks */
    this.listeners = new Map();
    /** @type {Set<(error: { status: number, message: string }) => void>} */
    this.errorCallbacks = new Set();
    /** @type {Set<() => void>} */
    this.subscribedCallbacks = new Set();
    this.failed = false;
  }

  /**
   * Calls `callback(payload)` for `event`: `'OrderShipped'` is `App\Events\OrderShipped` (the
   * `namespace` option), `'.message.posted'` is the `broadcastAs()` name as is.
   * @param {string} event @param {Callback} callback
   */
  listen(event, callback) {
    const name = this.echo.formatEventName(event);
    let set = this.listeners.get(name);
    if (set === undefined) this.listeners.set(name, (set = new Set()));
    set.add(callback);
    return this;
  }

  /** Removes one callback, or every callback of `event`. @param {string} event @param {Callback} [callback] */
  stopListening(event, callback) {
    const name = this.echo.formatEventName(event);
    if (callback === undefined) this.listeners.delete(name);
    else this.listeners.get(name)?.delete(callback);
    return this;
  }

  /** Laravel notifications broadcast to this (usually `App.Models.User.{id}`) channel. @param {Callback} callback */
  notification(callback) {
    return this.listen(NOTIFICATION_EVENT, callback);
  }

  /** Called each time the stream (re)opens with this channel. @param {() => void} callback */
  subscribed(callback) {
    this.subscribedCallbacks.add(callback);
    return this;
  }

  /**
   * Called with `{ status, message }` when the channel cannot be subscribed (the app's auth route
   * refused it: 403; or the auth failed: 502, retried later).
   * @param {(error: { status: number, message: string }) => void} callback
   */
  error(callback) {
    this.errorCallbacks.add(callback);
    return this;
  }

  /**
   * Sends `client-<event>` to the other subscribers of this private/presence channel (never back
   * to this page). Resolves once the sidecar took it; rejects when it was refused.
   * @param {string} event @param {unknown} data @returns {Promise<void>}
   */
  whisper(event, data) {
    return this.echo.client.whisper(this.name, `client-${event}`, data);
  }

  /** Client events of the other subscribers. @param {string} event @param {Callback} callback */
  listenForWhisper(event, callback) {
    return this.listen(`.client-${event}`, callback);
  }

  /** @returns {ChannelHandler} */
  handler() {
    return {
      event: (event, data) => {
        for (const callback of [...(this.listeners.get(event) ?? [])]) callback(data);
      },
      subscribed: () => {
        for (const callback of [...this.subscribedCallbacks]) callback();
      },
      error: ({ status, reason }) => {
        const denied = status === 401 || status === 403;
        if (denied || status === 400) this.failed = true;
        const message = denied ? `not authorized for channel "${this.name}"` : reason;
        for (const callback of [...this.errorCallbacks]) callback({ status, message });
      },
      here: () => {},
      joining: () => {},
      leaving: () => {},
    };
  }
}

/** A `presence-*` channel: Echo's here / joining / leaving, from the sidecar's member events. */
export class PresenceChannel extends Channel {
  /** @param {AskrEcho} echo @param {string} name */
  constructor(echo, name) {
    super(echo, name);
    /** @type {Map<string, Member>} by user_id */
    this.members = new Map();
    /** @type {Set<(infos: any[]) => void>} */
    this.hereCallbacks = new Set();
    /** @type {Set<Callback>} */
    this.joiningCallbacks = new Set();
    /** @type {Set<Callback>} */
    this.leavingCallbacks = new Set();
  }

  /** `callback(infos)` with every member's user_info, when joined and when a reconnect changed them. @param {(infos: any[]) => void} callback */
  here(callback) {
    this.hereCallbacks.add(callback);
    return this;
  }

  /** `callback(info)` when a user's first stream joins. @param {Callback} callback */
  joining(callback) {
    this.joiningCallbacks.add(callback);
    return this;
  }

  /** `callback(info)` when a user's last stream leaves. @param {Callback} callback */
  leaving(callback) {
    this.leavingCallbacks.add(callback);
    return this;
  }

  /** @returns {ChannelHandler} */
  handler() {
    return {
      ...super.handler(),
      here: (/** @type {Member[]} */ members) => {
        this.members = new Map(members.map((m) => [String(m.user_id), m]));
        const infos = members.map((m) => m.user_info);
        for (const callback of [...this.hereCallbacks]) callback(infos);
      },
      joining: (/** @type {Member} */ member) => {
        this.members.set(String(member.user_id), member);
        for (const callback of [...this.joiningCallbacks]) callback(member.user_info);
      },
      leaving: (/** @type {Member} */ member) => {
        this.members.delete(String(member.user_id));
        for (const callback of [...this.leavingCallbacks]) callback(member.user_info);
      },
    };
  }
}

/**
 * The connection: one stream for all channels (and all tabs).
 *
 * Options: `endpoint` ('/askr/events'), `authBatchEndpoint` ('/askr/auth'), `whisperEndpoint`
 * ('/askr/whisper'), `namespace` ('App.Events'; false for none), `withCredentials` (false; true for
 * a sidecar on another origin), `csrfToken` (default: the `<meta name="csrf-token">`),
 * `bearerToken` (sent as `Authorization: Bearer …` to authorize channels), `headers` (more headers
 * for that request), `reconnectMaxMs` (30000), `shareTabs` (true).
 */
export class AskrEcho {
  /** @param {AskrEchoOptions} options */
  constructor(options = {}) {
    this.options = { namespace: 'App.Events', ...options };
    /** @type {Map<string, Channel>} */
    this.channels = new Map();
    this.client = new AskrClient({
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.authBatchEndpoint === undefined
        ? {}
        : { authEndpoint: options.authBatchEndpoint }),
      ...(options.whisperEndpoint === undefined
        ? {}
        : { whisperEndpoint: options.whisperEndpoint }),
      ...(options.reconnectMaxMs === undefined ? {} : { reconnectMaxMs: options.reconnectMaxMs }),
      withCredentials: options.withCredentials === true,
      shareTabs: options.shareTabs !== false,
      headers: () => {
        /** @type {Record<string, string>} */
        const headers = { ...options.headers };
        const csrf = csrfToken(options.csrfToken);
        if (csrf) headers['X-CSRF-TOKEN'] = csrf;
        if (options.bearerToken) headers['Authorization'] = `Bearer ${options.bearerToken}`;
        return headers;
      },
    });
    // Echo sends X-Socket-ID with axios requests, so broadcast(...)->toOthers() skips this page.
    /** @type {any} */ (globalThis).axios?.interceptors?.request?.use(
      (/** @type {any} */ config) => {
        const id = this.socketId();
        if (id !== null) config.headers = { ...config.headers, 'X-Socket-ID': id };
        return config;
      },
    );
  }

  /** 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'failed' */
  get state() {
    return this.client.state;
  }

  /** A public channel. @param {string} name */
  channel(name) {
    return this.subscribe(name, Channel);
  }

  /** `private-${name}`: authorized by the app's routes/channels.php. @param {string} name */
  private(name) {
    return this.subscribe(`private-${name}`, Channel);
  }

  /** `presence-${name}`: a private channel with members. @param {string} name */
  join(name) {
    return /** @type {PresenceChannel} */ (this.subscribe(`presence-${name}`, PresenceChannel));
  }

  /** Leaves `name`, `private-name` and `presence-name`. @param {string} name */
  leave(name) {
    for (const full of [name, `private-${name}`, `presence-${name}`]) this.leaveChannel(full);
  }

  /** Leaves one channel by its full name. @param {string} name */
  leaveChannel(name) {
    if (this.channels.delete(name)) this.client.remove(name);
  }

  /** The id to send as `X-Socket-ID`, so `broadcast(...)->toOthers()` skips this page; null until known. */
  socketId() {
    return this.client.socketId();
  }

  /** Headers for your own fetch() calls: `fetch(url, { headers: echo.headers() })`. */
  headers() {
    const id = this.socketId();
    return id === null ? {} : { 'X-Socket-ID': id };
  }

  /** `callback({ reason, lastEventId })` when events were missed for good (`askr:lost`): reload state. @param {(info: any) => void} callback */
  onLost(callback) {
    this.client.onLost(callback);
    return this;
  }

  /** `callback(state)` on every state change. @param {(state: StreamState) => void} callback */
  onStateChange(callback) {
    this.client.onState(callback);
    return this;
  }

  /** Closes the stream (a leader tab hands it over to another tab). */
  disconnect() {
    this.client.disconnect();
  }

  /** Echo's EventFormatter: '.name' as is, else `namespace.name`, dots to backslashes. @param {string} event */
  formatEventName(event) {
    return formatEventName(event, this.options.namespace);
  }

  /**
   * @param {string} name @param {typeof Channel} Kind
   * @returns {Channel}
   */
  subscribe(name, Kind) {
    let channel = this.channels.get(name);
    if (channel === undefined) {
      channel = new Kind(this, name);
      this.channels.set(name, channel);
      this.client.add(name, channel.handler());
    }
    return channel;
  }
}

export default AskrEcho;
