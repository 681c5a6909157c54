/**
 * One request's life through the FastCGI pool (PoolCall): it waits in the queue (Waiter), runs
 * one exchange, or a second on a fresh connection when a reused one was dead (ExchangeListener),
 * and is what the caller gets (FcgiCall). One object per request instead of a closure per
 * callback. Invariants: `started` settles once; `done` exists only when asked for, and never
 * rejects unobserved; the abort listener is removed when the request settles.
 */
import type { Readable } from 'node:stream';
import { ErrorCodes, SidecarError, toError } from '../errors.ts';
import type { AbortListener, FcgiAbortSignal } from './abort-flag.ts';
import type { FcgiConnection } from './connection.ts';
import type { Exchange, ExchangeListener } from './exchange.ts';
import type { FcgiPoolHooks } from './pool.ts';
import type { EndRequestBody } from './record-codec.ts';

/**
 * How long a request on a fresh keep-alive connection may go without a byte from FPM before the
 * pool suspects FPM never accepted it. A false alarm (a slow script) only costs the reuse of a
 * few connections; a missed one costs a request its whole read timeout. Measured on php-fpm 8.2:
 * an accepted request's first bytes arrive within 1-5 ms for a trivial script.
 */
export const STALL_MS = 200;

/** One FastCGI request as the pool's callers describe it. */
export interface FcgiRequestInit {
  /** CGI params, sent in order. Strings are sent as UTF-8, Buffers byte for byte. */
  params: ReadonlyArray<readonly [string, string | Buffer]>;
  /**
   * FCGI_STDIN. The caller sets CONTENT_LENGTH in params. Streams are sent with backpressure;
   * on failure a stream is left paused, never destroyed (the caller owns it).
   */
  body?: Buffer | NodeJS.ReadableStream | null;
  /** Max time between successful writes to FPM while the request is being sent. */
  sendTimeoutMs: number;
  /** Max time between reads from FPM once the request is sent; paused while stdout is unread. */
  readTimeoutMs: number;
  /** Aborted: the socket is destroyed (never pooled), the call fails with FCGI_ABORTED (499). */
  signal?: FcgiAbortSignal;
  /** FCGI_STDERR content (PHP errors). Must not throw. */
  onStderr?(chunk: Buffer): void;
}

/** A running request, from its first STDOUT bytes (or END_REQUEST) on. */
export interface FcgiCall {
  /** FCGI_STDOUT bytes (CGI headers + body, unparsed). Unread, it pauses the FPM socket. Ends at
   * END_REQUEST; destroyed with the SidecarError when the connection fails. */
  readonly stdout: Readable;
  /**
   * When `ended` and `stdout` was never used: all of STDOUT's chunks, in order, taken without a
   * stream (`stdout` is empty afterwards); null otherwise.
   */
  takeStdout(): Buffer[] | null;
  /** END_REQUEST; rejects with a SidecarError if the connection breaks or times out first. */
  readonly done: Promise<{ appStatus: number; protocolStatus: number }>;
  /** Destroy the connection now (client went away). */
  abort(): void;
  /**
   * END_REQUEST has arrived: the rest of the response is already held (takeStdout, or `stdout`'s
   * buffer; the usual case for a small page, which FPM sends in one write), so it can be sent
   * in one piece.
   */
  readonly ended: boolean;
  readonly queueWaitMs: number;
}

/** A request waiting in the queue for a connection. */
export interface Waiter {
  /** performance.now() past which it gives up (503). */
  readonly deadline: number;
  /** The wait it was allowed when it joined (queueTimeoutMs then), for the message. */
  readonly waitLimitMs: number;
  /** Its turn: an existing connection, or one being opened for it. */
  take(connection: FcgiConnection | Promise<FcgiConnection>): void;
  /** It leaves the queue without a connection (expired, pool closing). */
  fail(err: SidecarError): void;
}

/** The error of a request whose caller went away (499). */
export function abortedError(): SidecarError {
  return new SidecarError(ErrorCodes.FCGI_ABORTED, 'FastCGI request aborted by the client');
}

/** What a PoolCall may do to its pool (made once per pool, not per request). */
export interface CallHost {
  readonly hooks: FcgiPoolHooks;
  readonly keepAlive: boolean;
  readonly stalled: Set<FcgiConnection>;
  release(connection: FcgiConnection, reusable: boolean): void;
  openFresh(): Promise<FcgiConnection>;
  onStall(connection: FcgiConnection): void;
  onTimeout(kind: 'send' | 'read'): void;
  /** Take a waiter out of the queue (aborted while waiting). */
  dequeue(waiter: Waiter): void;
}

type EndResult = { appStatus: number; protocolStatus: number };

const ONCE = { once: true } as const;

function ignore(): void {
  // A rejection of `done` nobody awaits is expected (the response was already sent); callers
  // that care await it.
}

/**
 * One request through the pool: the FcgiCall its caller gets and the listener of its exchange(s)
 * (a retry runs a second exchange on a fresh connection). One object per request instead of a
 * closure per callback; `done` exists only once someone asks for it.
 */
export class PoolCall implements FcgiCall, ExchangeListener, AbortListener, Waiter {
  /** Resolves at the first STDOUT bytes (or END_REQUEST); rejects when the request never ran. */
  readonly started: Promise<FcgiCall>;
  queueWaitMs = 0;
  deadline = 0;
  waitLimitMs = 0;
  #queuedAt = -1;
  readonly #host: CallHost;
  readonly #head: Buffer;
  readonly #body: NodeJS.ReadableStream | null;
  readonly #init: FcgiRequestInit;
  #resolve!: (call: FcgiCall) => void;
  #reject!: (err: Error) => void;
  #exchange: Exchange | null = null;
  #connection: FcgiConnection | null = null;
  #started = false;
  #listening = false;
  #stallTimer: NodeJS.Timeout | null = null;
  #end: EndResult | null = null;
  #error: SidecarError | null = null;
  #done: Promise<EndResult> | null = null;
  #settleDone: ((result: EndResult) => void) | null = null;
  #failDone: ((err: SidecarError) => void) | null = null;

  constructor(
    host: CallHost,
    head: Buffer,
    body: NodeJS.ReadableStream | null,
    init: FcgiRequestInit,
  ) {
    this.#host = host;
    this.#head = head;
    this.#body = body;
    this.#init = init;
    this.started = new Promise<FcgiCall>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    if (init.signal !== undefined) {
      init.signal.addEventListener('abort', this, ONCE);
      this.#listening = true;
    }
  }

  get stdout(): Readable {
    return (this.#exchange as Exchange).stdout;
  }

  get ended(): boolean {
    return this.#exchange?.ended === true;
  }

  get done(): Promise<EndResult> {
    if (this.#done === null) {
      if (this.#end !== null) {
        this.#done = Promise.resolve(this.#end);
      } else if (this.#error !== null) {
        this.#done = Promise.reject(this.#error);
      } else {
        this.#done = new Promise<EndResult>((resolve, reject) => {
          this.#settleDone = resolve;
          this.#failDone = reject;
        });
      }
      this.#done.catch(ignore);
    }
    return this.#done;
  }

  takeStdout(): Buffer[] | null {
    return this.#exchange?.takeStdout() ?? null;
  }

  abort(): void {
    this.#exchange?.abort();
  }

  /** The abort listener (AbortListener): the caller's signal fired. */
  handleEvent(): void {
    if (this.#queuedAt >= 0) {
      // Still waiting for a connection: leave the queue.
      this.#queuedAt = -1;
      this.#host.dequeue(this);
      this.failToStart(abortedError());
      return;
    }
    // Connecting: attempt() sees the flag; running: the connection is destroyed.
    this.#exchange?.abort();
  }

  /** It joins the pool's queue now, for at most `timeoutMs`. */
  enqueued(timeoutMs: number): void {
    this.#queuedAt = performance.now();
    this.waitLimitMs = timeoutMs;
    this.deadline = this.#queuedAt + timeoutMs;
  }

  take(connection: FcgiConnection | Promise<FcgiConnection>): void {
    const waitMs = Math.round(performance.now() - this.#queuedAt);
    this.#queuedAt = -1;
    this.queueWaitMs = waitMs;
    if (connection instanceof Promise) {
      connection.then(
        (fresh) => {
          this.#host.hooks.onQueueWait?.(waitMs);
          this.attempt(fresh, true);
        },
        (err: unknown) => this.failToStart(toError(err)),
      );
      return;
    }
    // Started after the current event's work, not inside it: a connection handed over at
    // END_REQUEST must not receive, as this request's answer, anything left in that read.
    queueMicrotask(() => {
      this.#host.hooks.onQueueWait?.(waitMs);
      this.attempt(connection, true);
    });
  }

  fail(err: SidecarError): void {
    this.#queuedAt = -1;
    this.failToStart(err);
  }

  /** Run the request on `connection`; `allowRetry`: a dead reused socket may be replaced once. */
  attempt(connection: FcgiConnection, allowRetry: boolean): void {
    const host = this.#host;
    if (this.#init.signal?.aborted === true) {
      // Aborted while we were connecting: the socket is unused and fine to pool.
      this.#unlisten();
      host.release(connection, true);
      this.#reject(abortedError());
      return;
    }
    this.#connection = connection;
    this.#exchange = connection.startExchange(
      {
        head: this.#head,
        body: this.#body,
        sendTimeoutMs: this.#init.sendTimeoutMs,
        readTimeoutMs: this.#init.readTimeoutMs,
      },
      this,
      allowRetry,
    );
    if (host.keepAlive && connection.requestsCompleted === 0 && !connection.closed) {
      this.#stallTimer = setTimeout(() => {
        this.#stallTimer = null;
        host.onStall(connection);
      }, STALL_MS);
      this.#stallTimer.unref();
    }
  }

  /** No connection could be had (queue full or expired, connect failed, aborted while queued). */
  failToStart(err: Error): void {
    this.#unlisten();
    this.#reject(err);
  }

  onFirstByte(): void {
    this.#clearStall();
  }

  onStart(): void {
    this.#started = true;
    this.#resolve(this);
  }

  onEnd(result: EndRequestBody, reusable: boolean): void {
    this.#clearStall();
    this.#unlisten();
    this.#host.release(this.#connection as FcgiConnection, reusable);
    this.#end = result;
    this.#settleDone?.(result);
  }

  onStderr(chunk: Buffer): void {
    this.#init.onStderr?.(chunk);
  }

  onTimeout(kind: 'send' | 'read'): void {
    this.#host.onTimeout(kind);
  }

  onError(err: SidecarError, retryable: boolean): void {
    this.#clearStall();
    if (!this.#started && retryable) {
      // A reused socket was dead before FPM saw anything of ours (worker recycled by
      // pm.max_requests, FPM restarted): replay once on a fresh socket, which takes the dead
      // one's slot synchronously so no waiter can grab it meanwhile.
      this.#host.hooks.onRetry?.();
      this.#host.openFresh().then(
        (fresh) => this.attempt(fresh, false),
        (connectErr: unknown) => this.failToStart(toError(connectErr)),
      );
      return;
    }
    this.#unlisten();
    if (!this.#started) {
      this.#reject(err);
      return;
    }
    this.#error = err;
    this.#failDone?.(err);
  }

  #clearStall(): void {
    if (this.#stallTimer !== null) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
    if (this.#connection !== null) this.#host.stalled.delete(this.#connection);
  }

  #unlisten(): void {
    if (!this.#listening) return;
    this.#listening = false;
    this.#init.signal?.removeEventListener('abort', this);
  }
}
