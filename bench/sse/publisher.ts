/**
 * Publishers for the SSE benchmark. Every benchmark event's data is `b <seq> <ns>`, ns being
 * process.hrtime at the moment the request is written (CLOCK_MONOTONIC, shared by every process
 * of the machine). HTTP: a minimal keep-alive HTTP/1.1 client over raw sockets (one request in
 * flight per connection, the rest queued here), the same for nchan and the sidecar. Datagram: the
 * sidecar's Unix socket, as PHP's askr_broadcast() sends it (encodeDatagram).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DgramSocket } from 'node-unix-socket';
import { encodeDatagram } from '../../src/broadcast/datagram-codec.ts';

/** Something that publishes benchmark event `seq`; resolves when the server took it. */
export interface Publisher {
  readonly name: string;
  publish(seq: number): Promise<void>;
  /** Publishes accepted (2xx, or datagram written) and failed so far. */
  readonly accepted: number;
  readonly failed: number;
  close(): void;
}

/** The data of benchmark event `seq`, stamped now. */
export function benchPayload(seq: number): string {
  return `b ${seq} ${process.hrtime.bigint()}`;
}

interface Pending {
  seq: number;
  resolve: () => void;
}

class HttpConn {
  readonly socket: net.Socket;
  busy: Pending | null = null;
  #buf = '';
  readonly #onIdle: (conn: HttpConn) => void;
  readonly #onResult: (ok: boolean) => void;

  constructor(
    host: string,
    port: number,
    onIdle: (conn: HttpConn) => void,
    onResult: (ok: boolean) => void,
  ) {
    this.#onIdle = onIdle;
    this.#onResult = onResult;
    this.socket = net.connect({ host, port, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => this.#onData(chunk.toString('latin1')));
    this.socket.on('error', () => {
      // 'close' follows and fails the request in flight.
    });
    this.socket.on('close', () => {
      const p = this.busy;
      this.busy = null;
      if (p) {
        this.#onResult(false);
        p.resolve();
      }
      this.#onIdle(this); // queued requests move to a new connection
    });
  }

  send(request: string, p: Pending): void {
    this.busy = p;
    this.socket.write(request);
  }

  #onData(text: string): void {
    this.#buf += text;
    for (;;) {
      const headEnd = this.#buf.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const head = this.#buf.slice(0, headEnd);
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      const bodyLength = m?.[1] === undefined ? 0 : Number(m[1]);
      if (this.#buf.length < headEnd + 4 + bodyLength) return;
      this.#buf = this.#buf.slice(headEnd + 4 + bodyLength);
      const status = Number(head.slice(9, 12));
      const p = this.busy;
      this.busy = null;
      this.#onResult(status >= 200 && status < 300);
      p?.resolve();
      this.#onIdle(this);
    }
  }
}

/**
 * Keep-alive HTTP publisher: POST `pathOf()` with the benchmark payload as the raw body, over
 * `connections` sockets. Requests beyond the connections wait in a local FIFO.
 */
export function httpPublisher(opts: {
  name: string;
  host: string;
  port: number;
  path: string;
  headers?: Record<string, string>;
  connections: number;
}): Publisher {
  const extra = Object.entries(opts.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const prefix = `POST ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\n${extra}`;
  const queue: Pending[] = [];
  let accepted = 0;
  let failed = 0;
  const dispatch = (conn: HttpConn): void => {
    if (queue.length === 0) return;
    let target = conn;
    if (target.socket.destroyed) {
      const at = conns.indexOf(conn);
      if (at < 0) return; // already replaced
      // The server closed it (idle keep-alive timeout, or an error): continue on a new one.
      target = new HttpConn(opts.host, opts.port, dispatch, onResult);
      conns[at] = target;
    }
    const p = queue.shift();
    if (p === undefined) return;
    const body = benchPayload(p.seq);
    target.send(`${prefix}Content-Length: ${body.length}\r\n\r\n${body}`, p);
  };
  const onResult = (ok: boolean): void => {
    if (ok) accepted++;
    else failed++;
  };
  const conns: HttpConn[] = Array.from(
    { length: opts.connections },
    () => new HttpConn(opts.host, opts.port, dispatch, onResult),
  );
  const idleConn = (): HttpConn | undefined =>
    conns.find((c) => c.busy === null && !c.socket.destroyed) ?? conns.find((c) => c.busy === null);
  return {
    name: opts.name,
    get accepted() {
      return accepted;
    },
    get failed() {
      return failed;
    },
    publish(seq: number): Promise<void> {
      return new Promise((resolve) => {
        queue.push({ seq, resolve });
        const idle = idleConn();
        if (idle) dispatch(idle);
      });
    },
    close(): void {
      for (const c of conns) c.socket.destroy();
    },
  };
}

/** Datagram publisher to the sidecar's socket (what askr_broadcast() sends). */
export function datagramPublisher(socketPath: string, channel: string): Publisher {
  const dir = mkdtempSync(join(tmpdir(), 'askr-bench-dg-'));
  const socket = new DgramSocket();
  socket.bind(join(dir, 'pub.sock'));
  let accepted = 0;
  let failed = 0;
  return {
    name: 'datagram',
    get accepted() {
      return accepted;
    },
    get failed() {
      return failed;
    },
    publish(seq: number): Promise<void> {
      const buf = encodeDatagram({ channels: channel, data: benchPayload(seq) });
      return new Promise((resolve) => {
        socket.sendTo(buf, 0, buf.length, socketPath, (err) => {
          if (err) failed++;
          else accepted++;
          resolve();
        });
      });
    },
    close(): void {
      socket.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
