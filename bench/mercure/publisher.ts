/**
 * The publisher of bench:mercure, the same for every door: keep-alive HTTP/1.1 over raw sockets,
 * one request in flight per connection, the request text built per event by the door (askr raw
 * body or Mercure form) so its payload `b <seq> <ns>` is stamped right before the write
 * (bench/sse/publisher.ts benchPayload). A closed connection is reopened for the next request.
 * Answers are read by Content-Length (every server measured sends one).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { PublishCounts } from '../lib/pace.ts';

/** Builds the whole HTTP request for event `seq`. */
export type RequestOf = (seq: number) => string;

/** One keep-alive connection; `send` must not be called while a request is in flight. */
class Conn {
  readonly #host: string;
  readonly #port: number;
  #socket: net.Socket | null = null;
  #buf = '';
  #waiting: ((status: number) => void) | null = null;

  constructor(host: string, port: number) {
    this.#host = host;
    this.#port = port;
  }

  /** Resolves with the answer's status; 0 when the connection failed or closed first. */
  send(request: string): Promise<number> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
      this.#open().write(request);
    });
  }

  #open(): net.Socket {
    if (this.#socket !== null && !this.#socket.destroyed) return this.#socket;
    this.#buf = '';
    const socket = net.connect({ host: this.#host, port: this.#port, noDelay: true });
    socket.on('data', (chunk: Buffer) => {
      if (this.#socket === socket) this.#onData(chunk.toString('latin1'));
    });
    socket.on('error', () => {
      // 'close' follows and fails the request in flight (counted as failed by the caller).
    });
    socket.on('close', () => {
      // A socket let go after `connection: close` has no request in flight any more.
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#settle(0);
    });
    this.#socket = socket;
    return socket;
  }

  #settle(status: number): void {
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.(status);
  }

  #onData(text: string): void {
    this.#buf += text;
    const headEnd = this.#buf.indexOf('\r\n\r\n');
    if (headEnd < 0) return;
    const head = this.#buf.slice(0, headEnd);
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.#buf.length < headEnd + 4 + length) return;
    this.#buf = this.#buf.slice(headEnd + 4 + length);
    if (/\r\nconnection:\s*close/i.test(head)) {
      const closing = this.#socket;
      this.#socket = null;
      closing?.end();
    }
    this.#settle(Number(head.slice(9, 12)));
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = null;
  }
}

/** What a closed-loop phase did. */
export interface LoopResult {
  accepted: number;
  failed: number;
  /** From the first request to the last answer, ms. */
  elapsedMs: number;
  /** performance.now() of the first request. */
  startedAt: number;
}

/**
 * A publisher with `connections` keep-alive connections. `publish` (for bench/lib/pace.ts) uses
 * the first idle one, or waits for one; `closedLoop` keeps each connection busy for a while.
 */
export class Publisher implements PublishCounts {
  readonly #conns: Conn[];
  readonly #idle: Conn[];
  readonly #waiters: ((conn: Conn) => void)[] = [];
  readonly #requestOf: RequestOf;
  accepted = 0;
  failed = 0;

  constructor(host: string, port: number, connections: number, requestOf: RequestOf) {
    this.#conns = Array.from({ length: connections }, () => new Conn(host, port));
    this.#idle = [...this.#conns];
    this.#requestOf = requestOf;
  }

  /** Publishes event `seq`; resolves true when it was answered 2xx. */
  async publish(seq: number): Promise<boolean> {
    const conn =
      this.#idle.pop() ?? (await new Promise<Conn>((resolve) => this.#waiters.push(resolve)));
    const status = await conn.send(this.#requestOf(seq));
    const next = this.#waiters.shift();
    if (next === undefined) this.#idle.push(conn);
    else next(conn);
    const ok = status >= 200 && status < 300;
    if (ok) this.accepted++;
    else this.failed++;
    return ok;
  }

  /**
   * Every connection publishes its next event as soon as the previous one was answered, until
   * `durationMs` has passed; events are numbered from `firstSeq`.
   */
  async closedLoop(durationMs: number, firstSeq: number): Promise<LoopResult> {
    const before = { accepted: this.accepted, failed: this.failed };
    const startedAt = performance.now();
    const end = startedAt + durationMs;
    let seq = firstSeq;
    let lastAnswer = startedAt;
    const worker = async (): Promise<void> => {
      while (performance.now() < end) {
        await this.publish(seq++);
        lastAnswer = performance.now();
      }
    };
    await Promise.all(this.#conns.map(worker));
    return {
      accepted: this.accepted - before.accepted,
      failed: this.failed - before.failed,
      elapsedMs: lastAnswer - startedAt,
      startedAt,
    };
  }

  close(): void {
    for (const c of this.#conns) c.close();
  }
}
