/**
 * Held streams of bench:browser, in the bench process: raw sockets (no EventSource, no parser
 * per stream), each with its own request, so a stream can carry a cookie, a grant and a
 * Last-Event-ID. A stream is "back" when its ready marker arrived; deliveries are the bench
 * payloads (`b <seq> <hrtime ns>`, bench/sse/publisher.ts) found in complete lines, so chunked
 * framing (Pushpin) and SSE framing (the sidecar) read alike. Invariant: dropAll() ends every socket.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

const PAYLOAD = /b (\d+) (\d+)/;
const ID_LINE = /^id: ?(\S+)/;
const POSITION = /"position":"([^"]+)"/;

/** One stream: how to (re)open it and what it saw. */
class Stream {
  socket: net.Socket | null = null;
  carry = '';
  lastId = '';
  readyAtMs = NaN;
  readonly request: (lastId: string) => string;
  constructor(request: (lastId: string) => string) {
    this.request = request;
  }
}

/** Result of opening (or reopening) every stream. */
export interface OpenResult {
  ok: number;
  failed: number;
  /** Until the last stream was back, ms. */
  allBackMs: number;
  /** Per stream: from its first attempt to its ready marker, ms (back streams only). */
  eachMs: number[];
}

export class StreamSet {
  readonly #streams: Stream[] = [];
  /** Latencies (ms) of each seq's deliveries. */
  readonly #seen = new Map<number, number[]>();
  readonly port: number;
  readonly readyMarker: string;
  constructor(port: number, readyMarker: string) {
    this.port = port;
    this.readyMarker = readyMarker;
  }

  get size(): number {
    return this.#streams.length;
  }

  add(request: (lastId: string) => string): void {
    this.#streams.push(new Stream(request));
  }

  /** Deliveries of event `seq` and their latencies, ms. */
  deliveries(seq: number): number[] {
    return this.#seen.get(seq) ?? [];
  }

  clearDeliveries(): void {
    this.#seen.clear();
  }

  #onLine(s: Stream, line: string): void {
    if (Number.isNaN(s.readyAtMs) && line.includes(this.readyMarker))
      s.readyAtMs = performance.now();
    const id = ID_LINE.exec(line) ?? POSITION.exec(line);
    if (id?.[1] !== undefined) s.lastId = id[1];
    const m = PAYLOAD.exec(line);
    if (m?.[1] === undefined || m[2] === undefined) return;
    const ms = Number(process.hrtime.bigint() - BigInt(m[2])) / 1e6;
    const seq = Number(m[1]);
    const list = this.#seen.get(seq);
    if (list === undefined) this.#seen.set(seq, [ms]);
    else list.push(ms);
  }

  /** One attempt: resolves true when the ready marker came, false when the stream ended before. */
  #connect(s: Stream): Promise<boolean> {
    return new Promise((resolve) => {
      s.readyAtMs = NaN;
      s.carry = '';
      const socket = net.connect(this.port, '127.0.0.1');
      s.socket = socket;
      socket.setEncoding('latin1');
      socket.on('connect', () => socket.write(s.request(s.lastId)));
      socket.on('data', (chunk: string) => {
        const lines = (s.carry + chunk).split('\n');
        s.carry = lines.pop() ?? '';
        const wasReady = !Number.isNaN(s.readyAtMs);
        for (const line of lines) this.#onLine(s, line);
        if (!wasReady && !Number.isNaN(s.readyAtMs)) resolve(true);
      });
      // Errors end the attempt; the caller retries (what an EventSource does) and counts it.
      socket.on('error', () => undefined);
      socket.on('close', () => {
        if (s.socket === socket) s.socket = null;
        resolve(false);
      });
    });
  }

  /**
   * Opens every stream that is not open, `parallel` attempts at a time (Infinity: all at once, a
   * storm); a failed attempt is retried after `retryMs` until `deadlineMs` has passed.
   */
  async openAll(parallel: number, retryMs: number, deadlineMs: number): Promise<OpenResult> {
    const started = performance.now();
    const eachMs: number[] = [];
    let failed = 0;
    let next = 0;
    const todo = this.#streams.filter((s) => s.socket === null);
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const s = todo[next++];
        if (s === undefined) return;
        const first = performance.now();
        while (!(await this.#connect(s))) {
          if (performance.now() - started > deadlineMs) {
            failed++;
            return;
          }
          await sleep(retryMs);
        }
        eachMs.push(s.readyAtMs - first);
      }
    };
    const n = Math.min(todo.length, parallel);
    await Promise.all(Array.from({ length: n }, worker));
    return { ok: eachMs.length, failed, allBackMs: performance.now() - started, eachMs };
  }

  /** Ends every stream at once (their last ids are kept, for Last-Event-ID). */
  async dropAll(): Promise<void> {
    const closing = this.#streams.flatMap((s) => {
      const socket = s.socket;
      if (socket === null) return [];
      s.socket = null;
      socket.destroy();
      return [new Promise<void>((r) => (socket.closed ? r() : socket.once('close', () => r())))];
    });
    await Promise.all(closing);
  }
}
