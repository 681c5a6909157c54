/**
 * One FastCGI request/response on a connection: sends BEGIN_REQUEST + PARAMS + STDIN (one write
 * for a known body, a stream with backpressure otherwise), holds STDOUT until someone reads it
 * (pausing the socket when too much is unread), and ends at END_REQUEST. STDOUT becomes a
 * Readable only when asked for: a small response, complete at END_REQUEST, is taken as it
 * arrived (takeStdout) without any stream machinery. Invariants: the listener hears exactly one
 * of onEnd / onError; the read timer never runs while the consumer applies backpressure;
 * onRecord's protocol errors are thrown to the connection, which catches them and destroys the
 * socket.
 *
 *   start ──▶ sending ──(STDIN end written)──▶ waiting ──(END_REQUEST)──▶ ended
 *                 └────────── socket gone / timeout / abort / bad record ──────▶ failed
 */
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { FCGI_REQUEST_ID, ProtocolStatus, RecordType } from './constants.ts';
import { keepable } from './read-buffer.ts';
import {
  decodeEndRequest,
  encodeStreamData,
  encodeStreamEnd,
  type EndRequestBody,
  type FcgiRecord,
} from './record-codec.ts';

/** Unread STDOUT bytes held before the socket is paused (a Readable's default high-water mark). */
const STDOUT_HIGH_WATER_BYTES = 16 * 1024;

/** The socket side an exchange needs (implemented by FcgiConnection). */
export interface ExchangeHost {
  readonly socket: Socket;
  readonly address: string;
  finishExchange(exchange: Exchange, reusable: boolean): void;
  destroy(err?: SidecarError): void;
}

export interface ExchangeInit {
  /**
   * Encoded once per request: BEGIN_REQUEST and the PARAMS records including the empty one, and,
   * when `body` is null, the STDIN records and the empty STDIN record too (encodeRequest), so a
   * request with a known body is one write.
   */
  readonly head: Buffer;
  /** A body sent as it streams, after `head`; null when `head` already holds all of STDIN. */
  readonly body: NodeJS.ReadableStream | null;
  readonly sendTimeoutMs: number;
  readonly readTimeoutMs: number;
}

export interface ExchangeListener {
  /** FPM sent the first byte of any record for this request: it has accepted the connection. */
  onFirstByte?(): void;
  /** First STDOUT bytes, or END_REQUEST when the script printed nothing. */
  onStart(): void;
  /** END_REQUEST arrived; `reusable` says whether the socket went back for reuse. */
  onEnd(result: EndRequestBody, reusable: boolean): void;
  /** Failed before END_REQUEST; `retryable`: nothing was received or consumed, safe to replay. */
  onError(err: SidecarError, retryable: boolean): void;
  /** FCGI_STDERR content (PHP errors). Must not throw. */
  onStderr?(chunk: Buffer): void;
  /** Our send or read timeout fired; the exchange fails with FCGI_TIMEOUT next. */
  onTimeout?(kind: 'send' | 'read'): void;
}

type State = 'sending' | 'waiting' | 'ended' | 'failed';

/**
 * A reused socket that FPM had already closed (worker recycled by pm.max_requests) fails within
 * one round trip of our write: measured against php-fpm 8.2, 0.04-0.1 ms. A worker killed
 * mid-script (request_terminate_timeout, >= 1 s) also fails before sending a byte, but FPM ran
 * the request: replaying it would execute a POST twice (measured). Only failures this soon
 * after the write count as "the socket was dead".
 */
export const RETRY_WINDOW_MS = 1000;

export class Exchange {
  readonly #host: ExchangeHost;
  readonly #init: ExchangeInit;
  readonly #listener: ExchangeListener;
  readonly #mayRetry: boolean;
  #state: State = 'sending';
  #started = false;
  #bytesReceived = 0;
  /** A body stream gave us data or its end: a replay would lose it. */
  #bodyConsumed = false;
  #bodyPaused = false;
  #socketPaused = false;
  #aborted = false;
  #writtenAt = 0;
  #sendTimer: NodeJS.Timeout | null = null;
  #readTimer: NodeJS.Timeout | null = null;
  #detachBody: (() => void) | null = null;
  /** STDOUT as a stream, made on first use of `stdout`. */
  #stdout: Readable | null = null;
  /** STDOUT content received while no Readable exists, in order (views of the socket chunks). */
  #held: Buffer[] = [];
  #heldBytes = 0;
  /** How the Readable must end when made after a failure: destroyed, with the error if started. */
  #failure: { err: SidecarError | undefined } | null = null;

  constructor(
    host: ExchangeHost,
    init: ExchangeInit,
    listener: ExchangeListener,
    mayRetry: boolean,
  ) {
    this.#host = host;
    this.#init = init;
    this.#listener = listener;
    this.#mayRetry = mayRetry;
  }

  /**
   * FCGI_STDOUT bytes as a Readable (made on first use, holding what arrived before). Unread, it
   * pauses the FPM socket; it ends at END_REQUEST and is destroyed when the exchange fails.
   */
  get stdout(): Readable {
    this.#stdout ??= this.#makeStdout();
    return this.#stdout;
  }

  /**
   * After END_REQUEST, when `stdout` was never used: every STDOUT chunk, in order, taken out (the
   * Readable, if made later, is empty). Null otherwise: read `stdout` then.
   */
  takeStdout(): Buffer[] | null {
    if (this.#state !== 'ended' || this.#stdout !== null) return null;
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    return held;
  }

  #makeStdout(): Readable {
    const stdout = new Readable({
      read: () => this.#onStdoutRead(),
      destroy: (err, callback) => {
        // The consumer gave up (e.g. pipeline() saw the client go): same as abort().
        if (this.#state === 'sending' || this.#state === 'waiting') this.abort();
        callback(err);
      },
    });
    // The same error reaches the caller through `done`; without a listener an 'error' on a
    // stdout nobody consumes would crash the process.
    stdout.on('error', () => undefined);
    for (const chunk of this.#held) stdout.push(chunk);
    this.#held = [];
    this.#heldBytes = 0;
    if (this.#failure !== null) stdout.destroy(this.#failure.err);
    else if (this.#state === 'ended') stdout.push(null);
    return stdout;
  }

  /** END_REQUEST has arrived: everything FPM sent for this request is in `stdout`'s buffer. */
  get ended(): boolean {
    return this.#state === 'ended';
  }

  /** Write the request. Called once by the connection. */
  start(): void {
    this.#writtenAt = performance.now();
    const body = this.#init.body;
    if (body === null) {
      // The whole request in one buffer, one write. The send timer only runs when the socket
      // did not take it at once (it covers "no write to FPM succeeded").
      this.#host.socket.write(this.#init.head);
      this.#state = 'waiting';
      if (this.#host.socket.writableNeedDrain) this.#armSendTimer();
      this.#armReadTimer();
      return;
    }
    this.#armSendTimer();
    this.#write(this.#init.head);
    this.#pumpBody(body);
  }

  /** Client went away: destroy the connection (FPM ignores ABORT_REQUEST), fail with 499. */
  abort(): void {
    if (this.#state === 'ended') {
      // The connection is already back in the pool; only drop what is buffered for us.
      if (this.#stdout === null) {
        this.#held = [];
        this.#heldBytes = 0;
      } else if (!this.#stdout.readableEnded) {
        this.#stdout.destroy();
      }
      return;
    }
    if (this.#state === 'failed') return;
    this.#aborted = true;
    this.#host.destroy(
      new SidecarError(ErrorCodes.FCGI_ABORTED, 'FastCGI request aborted by the client'),
    );
  }

  /** The connection died (or we killed it): settle as failed. Idempotent. */
  fail(err: SidecarError): void {
    if (this.#state === 'ended' || this.#state === 'failed') return;
    this.#state = 'failed';
    this.#clearTimers();
    this.#detachBody?.();
    const retryable =
      this.#mayRetry &&
      !this.#aborted &&
      this.#bytesReceived === 0 &&
      !this.#bodyConsumed &&
      err.code === ErrorCodes.FCGI_CONNECTION_CLOSED &&
      performance.now() - this.#writtenAt < RETRY_WINDOW_MS;
    const streamErr = this.#started ? err : undefined;
    if (this.#stdout !== null) {
      this.#stdout.destroy(streamErr);
    } else {
      this.#failure = { err: streamErr };
      this.#held = [];
      this.#heldBytes = 0;
    }
    this.#listener.onError(err, retryable);
  }

  /** Bytes arrived on the socket (before decoding). */
  onBytes(length: number): void {
    if (this.#bytesReceived === 0 && length > 0) this.#listener.onFirstByte?.();
    this.#bytesReceived += length;
    this.#readTimer?.refresh();
  }

  onDrain(): void {
    if (this.#state === 'waiting') {
      // Everything we had to send is flushed.
      this.#clearSendTimer();
      return;
    }
    if (this.#state !== 'sending') return;
    this.#sendTimer?.refresh();
    if (this.#bodyPaused) {
      this.#bodyPaused = false;
      (this.#init.body as NodeJS.ReadableStream).resume();
    }
  }

  /**
   * A record for this connection; throws SidecarError FCGI_PROTOCOL on a bad one. Its content
   * may be a view into a buffer reused after this call: what is kept is copied.
   */
  onRecord(record: FcgiRecord): void {
    if (this.#state === 'ended' || this.#state === 'failed') return;
    switch (record.type) {
      case RecordType.FCGI_STDOUT:
        this.#checkId(record);
        // The empty STDOUT record closes the stream; END_REQUEST follows and ends stdout.
        if (record.content.length === 0) return;
        this.#markStarted();
        this.#onStdout(keepable(record.content));
        return;
      case RecordType.FCGI_STDERR:
        this.#checkId(record);
        if (record.content.length > 0) this.#listener.onStderr?.(keepable(record.content));
        return;
      case RecordType.FCGI_END_REQUEST:
        this.#checkId(record);
        this.#end(decodeEndRequest(record.content));
        return;
      default:
        // GET_VALUES_RESULT / UNKNOWN_TYPE (answers to management records we never send) and
        // types from a future spec carry nothing for this request; ignoring them is the spec's
        // forward-compatible behaviour.
        return;
    }
  }

  /** STDOUT content, in a Buffer of its own (not the connection's read buffer). */
  #onStdout(content: Buffer): void {
    if (this.#stdout !== null) {
      if (!this.#stdout.push(content)) this.#pauseSocket();
      return;
    }
    // The consumer may take it all at END_REQUEST (takeStdout); until it reads, hold a
    // Readable's worth and then stop reading the socket, as a Readable would.
    this.#held.push(content);
    this.#heldBytes += content.length;
    if (this.#heldBytes >= STDOUT_HIGH_WATER_BYTES) this.#pauseSocket();
  }

  #checkId(record: FcgiRecord): void {
    if (record.requestId !== FCGI_REQUEST_ID) {
      throw new SidecarError(
        ErrorCodes.FCGI_PROTOCOL,
        `bad FastCGI record: type ${record.type} for request id ${record.requestId} (expected ${FCGI_REQUEST_ID})`,
      );
    }
  }

  #markStarted(): void {
    if (this.#started) return;
    this.#started = true;
    this.#listener.onStart();
  }

  #end(result: EndRequestBody): void {
    // A body still streaming at END_REQUEST (the script ended without reading it) leaves the
    // socket mid-request: it cannot be reused.
    const reusable =
      this.#state === 'waiting' &&
      !this.#aborted &&
      result.protocolStatus === ProtocolStatus.FCGI_REQUEST_COMPLETE;
    this.#state = 'ended';
    this.#clearTimers();
    this.#detachBody?.();
    this.#markStarted();
    this.#stdout?.push(null);
    this.#host.finishExchange(this, reusable);
    this.#listener.onEnd(result, reusable);
  }

  #write(data: Buffer): void {
    if (data.length === 0) return;
    // write() buffers even when it returns false; `writableNeedDrain` is what we wait on.
    this.#host.socket.write(data);
    if (!this.#host.socket.writableNeedDrain) this.#sendTimer?.refresh();
  }

  #endStdin(): void {
    this.#write(encodeStreamEnd(RecordType.FCGI_STDIN, FCGI_REQUEST_ID));
    this.#state = 'waiting';
    // Keep the send timer until everything is flushed; the read timer starts now.
    if (!this.#host.socket.writableNeedDrain) this.#clearSendTimer();
    this.#armReadTimer();
  }

  #pumpBody(body: NodeJS.ReadableStream): void {
    if ((body as Partial<Readable>).readableEnded === true) {
      this.#endStdin();
      return;
    }
    const onData = (chunk: Buffer | string): void => {
      this.#bodyConsumed = true;
      const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      this.#write(encodeStreamData(RecordType.FCGI_STDIN, FCGI_REQUEST_ID, data));
      if (this.#host.socket.writableNeedDrain) {
        this.#bodyPaused = true;
        body.pause();
      }
    };
    const onEnd = (): void => {
      this.#bodyConsumed = true;
      detach();
      this.#endStdin();
    };
    const onError = (err: unknown): void => {
      detach();
      this.#host.destroy(
        new SidecarError(ErrorCodes.FCGI_ABORTED, 'request body stream failed', { cause: err }),
      );
    };
    const detach = (): void => {
      this.#detachBody = null;
      body.removeListener('data', onData);
      body.removeListener('end', onEnd);
      body.removeListener('error', onError);
      // Left paused, never destroyed: the caller owns the stream (it may still answer on it),
      // and a retry on a fresh connection resumes it.
      body.pause();
    };
    this.#detachBody = detach;
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.resume();
  }

  #pauseSocket(): void {
    if (this.#socketPaused) return;
    this.#socketPaused = true;
    this.#host.socket.pause();
    // Our consumer is slow, not FPM: the read timeout does not run meanwhile.
    this.#clearReadTimer();
  }

  #onStdoutRead(): void {
    if (!this.#socketPaused || (this.#state !== 'sending' && this.#state !== 'waiting')) return;
    this.#socketPaused = false;
    this.#host.socket.resume();
    if (this.#state === 'waiting') this.#armReadTimer();
  }

  #armSendTimer(): void {
    const ms = this.#init.sendTimeoutMs;
    this.#sendTimer = setTimeout(() => this.#timeout('send', ms), ms);
  }

  #armReadTimer(): void {
    if (this.#socketPaused || this.#readTimer !== null) return;
    const ms = this.#init.readTimeoutMs;
    this.#readTimer = setTimeout(() => this.#timeout('read', ms), ms);
  }

  #timeout(kind: 'send' | 'read', ms: number): void {
    const what = kind === 'send' ? 'no write to FPM succeeded' : 'nothing read from FPM';
    this.#listener.onTimeout?.(kind);
    this.#host.destroy(
      new SidecarError(
        ErrorCodes.FCGI_TIMEOUT,
        `FastCGI ${kind} timeout: ${what} for ${ms} ms (${this.#host.address})`,
      ),
    );
  }

  #clearSendTimer(): void {
    if (this.#sendTimer !== null) clearTimeout(this.#sendTimer);
    this.#sendTimer = null;
  }

  #clearReadTimer(): void {
    if (this.#readTimer !== null) clearTimeout(this.#readTimer);
    this.#readTimer = null;
  }

  #clearTimers(): void {
    this.#clearSendTimer();
    this.#clearReadTimer();
  }
}
