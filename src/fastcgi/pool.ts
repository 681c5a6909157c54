/**
 * Pool of FastCGI connections to one PHP-FPM address: a cap, a bounded wait queue, and either a
 * connection per request (nginx's default) or keep-alive reuse with a short idle life, one retry
 * on a fresh socket when a reused one turns out dead. An idle kept connection pins an FPM worker
 * (php-fpm serves one connection until it closes), so keep-alive is only for pools known to fit,
 * and even then a fresh connection that FPM has not accepted within STALL_MS while we hold idle
 * or returning ones makes the pool close those to free workers (docs/fastcgi-pool.md).
 * Invariants: open (connected + connecting) never exceeds maxConnections except transiently
 * after reconfigure() lowers it; a socket is reused only with keep-alive, after
 * END_REQUEST/REQUEST_COMPLETE and never after an abort; nothing here knows HTTP. Per request:
 * one object (PoolCall: the caller's FcgiCall, the exchange's listener, the queue's waiter), one
 * promise, and no timer of its own in the queue (one timer serves every waiter).
 *
 *   request ─▶ idle socket? ─yes─▶ run ─END_REQUEST─▶ keep-alive, no stall? ─yes─▶ waiter? ─▶ hand over
 *                 │no                                    │no                         │no
 *                 ├─ open < cap ─▶ connect ─▶ run         └─▶ close (frees the worker)  └─▶ idle (idleTimeoutMs)
 *                 └─ queue (bounded, timed) ─▶ FCGI_POOL_EXHAUSTED when full or expired
 */
import { ConfigError, ErrorCodes, SidecarError, toError } from '../errors.ts';
import { parseFcgiAddress } from './address.ts';
import { BeginRequestFlags, FCGI_REQUEST_ID, Role } from './constants.ts';
import { FcgiConnection } from './connection.ts';
import {
  abortedError,
  PoolCall,
  type CallHost,
  type FcgiCall,
  type FcgiRequestInit,
  type Waiter,
} from './pool-call.ts';
import { encodeBeginRequest } from './record-codec.ts';
import { encodeParams, encodeRequest } from './request-encoder.ts';

export { AbortFlag, type AbortListener, type FcgiAbortSignal } from './abort-flag.ts';
export { STALL_MS, type FcgiCall, type FcgiRequestInit } from './pool-call.ts';

export interface FcgiPoolOptions {
  /** "unix:/abs/path", "host:port" or "[v6]:port". */
  address: string;
  /** Cap of open sockets (set it to FPM's pm.max_children). */
  maxConnections: number;
  /** Waiters allowed when all sockets are busy; beyond that a request is rejected at once. */
  queueSize: number;
  /** A waiter gives up after this long (503). */
  queueTimeoutMs: number;
  connectTimeoutMs: number;
  /** An idle pooled socket is closed after this long. */
  idleTimeoutMs: number;
  /**
   * Reuse connections (FCGI_KEEP_CONN). Off: FPM closes each connection after its request, so
   * no worker is ever pinned by an idle connection of ours.
   */
  keepAlive: boolean;
  hooks?: FcgiPoolHooks;
}

/** Observability callbacks (metrics). They must not throw. */
export interface FcgiPoolHooks {
  /** A connect failed (refused, ENOENT, ...); a connect timeout calls onTimeout('connect'). */
  onConnectError?(err: Error): void;
  /** A reused socket was dead before any byte arrived; the request is replayed once. */
  onRetry?(): void;
  onTimeout?(kind: 'connect' | 'send' | 'read' | 'queue'): void;
  /** Called for every acquired connection (0 when none waited). */
  onQueueWait?(waitMs: number): void;
  /**
   * A fresh connection got nothing from FPM for STALL_MS while kept connections existed: FPM
   * probably has not accepted it (all workers pinned). `open` and `stalled` are the counts then.
   */
  onStall?(open: number, stalled: number): void;
  /** Kept connections closed (idle or just released) to free FPM workers for stalled ones. */
  onWorkersFreed?(count: number): void;
}

/** What reconfigure() may change: the cap, the queue and the timeouts (not the address or mode). */
export type FcgiPoolTunables = Omit<FcgiPoolOptions, 'address' | 'hooks' | 'keepAlive'>;
type Tunables = FcgiPoolTunables;

const TUNABLE_KEYS = [
  'maxConnections',
  'queueSize',
  'queueTimeoutMs',
  'connectTimeoutMs',
  'idleTimeoutMs',
] as const satisfies ReadonlyArray<keyof Tunables>;

/**
 * Throws ConfigError for a value reconfigure() would refuse, so a reload can check every component
 * before it applies anything.
 */
export function checkPoolTunables(options: Tunables): void {
  const check = (name: keyof Tunables, min: number): void => {
    const value = options[name];
    if (!Number.isInteger(value) || value < min) {
      throw new ConfigError(`FcgiPool ${name} = ${String(value)}: expected an integer >= ${min}`);
    }
  };
  check('maxConnections', 1);
  check('queueSize', 0);
  check('queueTimeoutMs', 1);
  check('connectTimeoutMs', 1);
  check('idleTimeoutMs', 1);
}

const HEAD_BEGIN_KEEP = encodeBeginRequest(
  FCGI_REQUEST_ID,
  Role.FCGI_RESPONDER,
  BeginRequestFlags.FCGI_KEEP_CONN,
);
const HEAD_BEGIN_CLOSE = encodeBeginRequest(FCGI_REQUEST_ID, Role.FCGI_RESPONDER, 0);

export class FcgiPool {
  readonly #address: string;
  readonly #hooks: FcgiPoolHooks;
  readonly #keepAlive: boolean;
  readonly #headBegin: Buffer;
  /** Fresh connections whose request has had no byte from FPM for STALL_MS (keep-alive only). */
  readonly #stalled = new Set<FcgiConnection>();
  #options: Tunables;
  readonly #all = new Set<FcgiConnection>();
  /** LIFO: the most recently used socket is reused first, so the others can expire. */
  readonly #idle: FcgiConnection[] = [];
  readonly #idleTimers = new Map<FcgiConnection, NodeJS.Timeout>();
  #connecting = 0;
  readonly #queue: Waiter[] = [];
  /** One timer for the whole queue, due at the earliest deadline (not one per waiter). */
  #queueTimer: NodeJS.Timeout | null = null;
  #queueTimerAt = 0;
  #closing = false;
  readonly #closeResolvers: Array<() => void> = [];
  /** What a running call may do to the pool (made once, not per request). */
  readonly #callHost: CallHost;

  /** Throws ConfigError on a malformed address or option. */
  constructor(options: FcgiPoolOptions) {
    parseFcgiAddress(options.address);
    this.#address = options.address;
    this.#hooks = options.hooks ?? {};
    this.#keepAlive = options.keepAlive;
    this.#headBegin = options.keepAlive ? HEAD_BEGIN_KEEP : HEAD_BEGIN_CLOSE;
    this.#options = {
      maxConnections: options.maxConnections,
      queueSize: options.queueSize,
      queueTimeoutMs: options.queueTimeoutMs,
      connectTimeoutMs: options.connectTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs,
    };
    checkPoolTunables(this.#options);
    this.#callHost = {
      hooks: this.#hooks,
      keepAlive: this.#keepAlive,
      stalled: this.#stalled,
      release: (connection, reusable) => this.#release(connection, reusable),
      openFresh: () => this.#openFresh(),
      onStall: (connection) => this.#onStall(connection),
      onTimeout: (kind) => this.#hooks.onTimeout?.(kind),
      dequeue: (waiter) => {
        const index = this.#queue.indexOf(waiter);
        if (index >= 0) this.#queue.splice(index, 1);
      },
    };
  }

  /**
   * Send one request. Resolves at the first STDOUT bytes (or END_REQUEST if the script printed
   * nothing). Rejects with SidecarError: FCGI_POOL_EXHAUSTED 503 (queue full or wait expired),
   * FCGI_POOL_CLOSED 503, FCGI_CONNECT 502, FCGI_CONNECTION_CLOSED 502, FCGI_TIMEOUT 504,
   * FCGI_PROTOCOL 502, FCGI_ABORTED 499, FCGI_PARAMS_TOO_LARGE 431 (one param over 65528 bytes).
   */
  request(init: FcgiRequestInit): Promise<FcgiCall> {
    if (this.#closing) return Promise.reject(this.#closedError());
    if (init.signal?.aborted) return Promise.reject(abortedError());
    const body = init.body ?? null;
    const stream = body !== null && !Buffer.isBuffer(body);
    let head: Buffer;
    try {
      // A known body travels with the params: the whole request is one buffer and one write.
      head = stream
        ? encodeParams(FCGI_REQUEST_ID, init.params, this.#headBegin)
        : encodeRequest(FCGI_REQUEST_ID, this.#headBegin, init.params, body);
    } catch (err) {
      return Promise.reject(toError(err));
    }
    const call = new PoolCall(this.#callHost, head, stream ? body : null, init);
    const idle = this.#idle.pop();
    if (idle !== undefined) {
      // The usual keep-alive case: no promise between the caller and the write.
      this.#takeIdle(idle);
      this.#hooks.onQueueWait?.(0);
      call.attempt(idle, true);
      return call.started;
    }
    const { maxConnections, queueSize, queueTimeoutMs } = this.#options;
    if (this.stats().open < maxConnections) {
      this.#openFresh().then(
        (connection) => {
          this.#hooks.onQueueWait?.(0);
          call.attempt(connection, true);
        },
        (err: unknown) => call.failToStart(toError(err)),
      );
    } else if (this.#queue.length >= queueSize) {
      call.failToStart(
        new SidecarError(
          ErrorCodes.FCGI_POOL_EXHAUSTED,
          `all ${maxConnections} FastCGI connections busy; queue full (${queueSize} waiting)`,
        ),
      );
    } else {
      call.enqueued(queueTimeoutMs);
      this.#queue.push(call);
      if (this.#queueTimer === null || call.deadline < this.#queueTimerAt) {
        this.#armQueueTimer(call.deadline);
      }
    }
    return call.started;
  }

  stats(): { open: number; busy: number; idle: number; queued: number; stalled: number } {
    const open = this.#all.size + this.#connecting;
    return {
      open,
      busy: open - this.#idle.length,
      idle: this.#idle.length,
      queued: this.#queue.length,
      stalled: this.#stalled.size,
    };
  }

  /** Whether connections are reused (FCGI_KEEP_CONN). */
  get keepAlive(): boolean {
    return this.#keepAlive;
  }

  /**
   * Stop accepting, reject waiters (FCGI_POOL_CLOSED), close idle sockets; busy ones close when
   * their request ends. Resolves when all sockets are closed.
   */
  close(): Promise<void> {
    this.#closing = true;
    if (this.#queueTimer !== null) clearTimeout(this.#queueTimer);
    this.#queueTimer = null;
    for (const waiter of this.#queue.splice(0)) waiter.fail(this.#closedError());
    for (const connection of [...this.#idle]) connection.destroy();
    return new Promise((resolve) => {
      this.#closeResolvers.push(resolve);
      this.#checkClosed();
    });
  }

  /** Update cap, queue and timeouts at run time; throws ConfigError on a bad value. */
  reconfigure(options: Partial<Tunables>): void {
    const next: Tunables = { ...this.#options };
    for (const key of TUNABLE_KEYS) {
      const value = options[key];
      if (value !== undefined) next[key] = value;
    }
    checkPoolTunables(next);
    const idleChanged = next.idleTimeoutMs !== this.#options.idleTimeoutMs;
    this.#options = next;
    // Over the (lowered) cap: shed idle sockets now, busy ones as they finish (see #release).
    while (this.#idle.length > 0 && this.stats().open > next.maxConnections) {
      this.#idle[0]?.destroy();
    }
    if (idleChanged) for (const connection of this.#idle) this.#armIdleTimer(connection);
    this.#dispatch();
  }

  #closedError(): SidecarError {
    return new SidecarError(ErrorCodes.FCGI_POOL_CLOSED, 'FastCGI pool is shutting down');
  }

  #armQueueTimer(at: number): void {
    if (this.#queueTimer !== null) clearTimeout(this.#queueTimer);
    this.#queueTimerAt = at;
    this.#queueTimer = setTimeout(
      () => this.#expireWaiters(),
      Math.max(0, Math.ceil(at - performance.now())),
    );
  }

  /** The queue timer fired: waiters past their deadline leave with 503; re-arm for the rest. */
  #expireWaiters(): void {
    this.#queueTimer = null;
    const now = performance.now();
    const expired: Waiter[] = [];
    let next = Number.POSITIVE_INFINITY;
    let kept = 0;
    for (const waiter of this.#queue) {
      if (waiter.deadline <= now) {
        expired.push(waiter);
      } else {
        this.#queue[kept++] = waiter;
        next = Math.min(next, waiter.deadline);
      }
    }
    this.#queue.length = kept;
    if (kept > 0) this.#armQueueTimer(next);
    for (const waiter of expired) {
      this.#hooks.onTimeout?.('queue');
      waiter.fail(
        new SidecarError(
          ErrorCodes.FCGI_POOL_EXHAUSTED,
          `all ${this.#options.maxConnections} FastCGI connections busy; waited ${waiter.waitLimitMs} ms`,
        ),
      );
    }
  }

  /** Connect a new socket in a free slot (the caller checked the cap). */
  async #openFresh(): Promise<FcgiConnection> {
    this.#connecting += 1;
    let connection: FcgiConnection;
    try {
      connection = await FcgiConnection.connect(this.#address, this.#options.connectTimeoutMs);
    } catch (err) {
      this.#connecting -= 1;
      const error = err as SidecarError;
      if (error.code === ErrorCodes.FCGI_TIMEOUT) this.#hooks.onTimeout?.('connect');
      else this.#hooks.onConnectError?.(error);
      this.#dispatch();
      this.#checkClosed();
      throw error;
    }
    this.#connecting -= 1;
    this.#all.add(connection);
    connection.onClose = (c) => this.#onConnectionClose(c);
    return connection;
  }

  #takeIdle(connection: FcgiConnection): void {
    const timer = this.#idleTimers.get(connection);
    if (timer !== undefined) clearTimeout(timer);
    this.#idleTimers.delete(connection);
    connection.socket.ref();
  }

  /**
   * A fresh connection has had no byte from FPM for STALL_MS. If we hold idle kept connections
   * they may be pinning the workers it waits for: close them (FPM then accepts the waiting
   * connections), and close returning ones too while any connection stays stalled (#release).
   */
  #onStall(connection: FcgiConnection): void {
    if (connection.closed || !connection.busy) return;
    this.#stalled.add(connection);
    const open = this.stats().open;
    this.#hooks.onStall?.(open, this.#stalled.size);
    const idle = this.#idle.splice(0);
    for (const c of idle) c.destroy();
    if (idle.length > 0) this.#hooks.onWorkersFreed?.(idle.length);
  }

  /** A request ended on this socket: hand it to a waiter, park it, or close it. */
  #release(connection: FcgiConnection, reusable: boolean): void {
    if (connection.closed) return;
    if (
      !reusable ||
      !this.#keepAlive ||
      this.#closing ||
      this.stats().open > this.#options.maxConnections
    ) {
      connection.destroy();
      return;
    }
    if (this.#stalled.size > 0) {
      // A connection of ours waits in FPM's backlog: this worker is better freed than reused.
      connection.destroy();
      this.#hooks.onWorkersFreed?.(1);
      return;
    }
    const waiter = this.#queue.shift();
    if (waiter !== undefined) {
      waiter.take(connection);
      return;
    }
    this.#idle.push(connection);
    // An idle pool must not keep the process alive on its own.
    connection.socket.unref();
    this.#armIdleTimer(connection);
  }

  #armIdleTimer(connection: FcgiConnection): void {
    const previous = this.#idleTimers.get(connection);
    if (previous !== undefined) clearTimeout(previous);
    const timer = setTimeout(() => connection.destroy(), this.#options.idleTimeoutMs);
    timer.unref();
    this.#idleTimers.set(connection, timer);
  }

  #onConnectionClose(connection: FcgiConnection): void {
    this.#all.delete(connection);
    this.#stalled.delete(connection);
    const index = this.#idle.indexOf(connection);
    if (index >= 0) this.#idle.splice(index, 1);
    const timer = this.#idleTimers.get(connection);
    if (timer !== undefined) clearTimeout(timer);
    this.#idleTimers.delete(connection);
    this.#dispatch();
    this.#checkClosed();
  }

  /** Serve waiters from free capacity (a slot freed by a close, a failed connect, a raised cap). */
  #dispatch(): void {
    if (this.#closing) return;
    while (this.#queue.length > 0) {
      const idle = this.#idle.pop();
      if (idle !== undefined) {
        this.#takeIdle(idle);
        this.#queue.shift()?.take(idle);
        continue;
      }
      if (this.stats().open >= this.#options.maxConnections) return;
      this.#queue.shift()?.take(this.#openFresh());
    }
  }

  #checkClosed(): void {
    if (!this.#closing || this.#all.size > 0 || this.#connecting > 0) return;
    for (const resolve of this.#closeResolvers.splice(0)) resolve();
  }
}
