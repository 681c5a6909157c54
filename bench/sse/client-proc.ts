/**
 * The SSE subscriber client, run as its own process (fork of this file) so that it never shares
 * an event loop with a server. Raw `net` sockets, a minimal HTTP/1.1 head parser, chunked decoding
 * and an SSE parser that only looks at `data:` lines. Benchmark events carry `b <seq> <ns>` where
 * ns is process.hrtime (CLOCK_MONOTONIC, the same clock in every process of the machine), so the
 * latency is publish-time to the moment this process read the bytes. Driven over IPC (client.ts).
 */
import net from 'node:net';
import { LatencyHistogram } from './histogram.ts';
import type { ClientCommand, ClientReply, ClientStats, OpenResult } from './client-protocol.ts';

const CR_LF_2 = '\r\n\r\n';

interface Conn {
  socket: net.Socket;
  headDone: boolean;
  status: number;
  chunked: boolean;
  /** Raw bytes before the head is complete, as latin1. */
  head: string;
  /** Chunked decoder: bytes left in the current chunk, or -1 while reading a size line. */
  chunkLeft: number;
  sizeLine: string;
  /** SSE text not yet ending in a blank line. */
  pending: string;
  bodyBytes: number;
  lastByteAt: number;
  closed: boolean;
  /** Benchmark events received on this connection in the current run. */
  events: number;
}

const conns: Conn[] = [];
let hist = new LatencyHistogram();
let perSeq = new Uint32Array(0);
let runEvents = 0;
let otherFrames = 0;
let errors: Record<string, number> = {};
let closedByPeer = 0;

function send(reply: ClientReply): void {
  process.send?.(reply);
}

function countError(code: string): void {
  errors[code] = (errors[code] ?? 0) + 1;
}

/** Feeds decoded body text (latin1) to the SSE parser. `nowNs` is read lazily once per read. */
function onBody(c: Conn, text: string, clock: { ns: number }): void {
  c.pending += text;
  let start = 0;
  for (;;) {
    const end = c.pending.indexOf('\n\n', start);
    if (end < 0) break;
    onFrame(c, c.pending.slice(start, end), clock);
    start = end + 2;
  }
  c.pending = start === 0 ? c.pending : c.pending.slice(start);
}

function onFrame(c: Conn, frame: string, clock: { ns: number }): void {
  let at = frame.startsWith('data: b ') ? 0 : frame.indexOf('\ndata: b ');
  if (at < 0) {
    if (frame.includes('data:')) otherFrames++;
    return;
  }
  at += at === 0 ? 8 : 9;
  const space = frame.indexOf(' ', at);
  const lineEnd = frame.indexOf('\n', at);
  const seq = Number(frame.slice(at, space));
  const sentNs = Number(frame.slice(space + 1, lineEnd < 0 ? undefined : lineEnd));
  if (clock.ns === 0) clock.ns = Number(process.hrtime.bigint());
  hist.record((clock.ns - sentNs) / 1000);
  if (seq >= 0 && seq < perSeq.length) perSeq[seq] = (perSeq[seq] ?? 0) + 1;
  c.events++;
  runEvents++;
}

/** Decodes a body buffer (chunked or not) and passes the text on. */
function onBodyBytes(c: Conn, buf: string, clock: { ns: number }): void {
  if (!c.chunked) {
    onBody(c, buf, clock);
    return;
  }
  let i = 0;
  while (i < buf.length) {
    if (c.chunkLeft < 0) {
      const nl = buf.indexOf('\n', i);
      if (nl < 0) {
        c.sizeLine += buf.slice(i);
        return;
      }
      const line = (c.sizeLine + buf.slice(i, nl)).trim();
      c.sizeLine = '';
      i = nl + 1;
      if (line === '') continue; // the CRLF that ends a chunk's data
      c.chunkLeft = Number.parseInt(line, 16);
      if (c.chunkLeft === 0) return; // last chunk: the server ends the stream
    } else {
      const take = Math.min(c.chunkLeft, buf.length - i);
      onBody(c, buf.slice(i, i + take), clock);
      c.chunkLeft -= take;
      i += take;
      if (c.chunkLeft === 0) c.chunkLeft = -1;
    }
  }
}

function onData(c: Conn, chunk: Buffer): void {
  const clock = { ns: 0 };
  c.lastByteAt = Date.now();
  let text = chunk.toString('latin1');
  if (!c.headDone) {
    c.head += text;
    const end = c.head.indexOf(CR_LF_2);
    if (end < 0) return;
    const head = c.head.slice(0, end);
    text = c.head.slice(end + 4);
    c.head = '';
    c.headDone = true;
    c.status = Number(head.slice(9, 12));
    c.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
    headWaiters.get(c)?.();
    if (text === '') return;
  }
  c.bodyBytes += text.length;
  onBodyBytes(c, text, clock);
}

const headWaiters = new Map<Conn, () => void>();

function openOne(
  host: string,
  port: number,
  request: string,
  headTimeoutMs: number,
): Promise<'ok' | 'status' | 'error' | 'pending'> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, noDelay: true });
    const c: Conn = {
      socket,
      headDone: false,
      status: 0,
      chunked: false,
      head: '',
      chunkLeft: -1,
      sizeLine: '',
      pending: '',
      bodyBytes: 0,
      lastByteAt: 0,
      closed: false,
      events: 0,
    };
    conns.push(c);
    let settled = false;
    const settle = (r: 'ok' | 'status' | 'error' | 'pending'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      headWaiters.delete(c);
      resolve(r);
    };
    const timer = setTimeout(() => settle('pending'), headTimeoutMs);
    headWaiters.set(c, () => settle(c.status === 200 ? 'ok' : 'status'));
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => onData(c, chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      countError(err.code ?? err.message);
      settle('error');
    });
    socket.on('close', () => {
      if (!c.closed) closedByPeer++;
      c.closed = true;
      settle('error');
    });
  });
}

async function open(cmd: Extract<ClientCommand, { type: 'open' }>): Promise<OpenResult> {
  const started = Date.now();
  const request =
    `GET ${cmd.path} HTTP/1.1\r\nHost: ${cmd.host}:${cmd.port}\r\n` +
    `Accept: text/event-stream\r\nUser-Agent: askr-bench\r\n\r\n`;
  const result: OpenResult = { ok: 0, status: 0, error: 0, pending: 0, ms: 0 };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cmd.count) {
      next++;
      const r = await openOne(cmd.host, cmd.port, request, cmd.headTimeoutMs);
      result[r]++;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency) }, worker));
  result.ms = Date.now() - started;
  return result;
}

function stats(activeWindowMs: number): ClientStats {
  const now = Date.now();
  let open = 0;
  let headOk = 0;
  let withBody = 0;
  let active = 0;
  let streamsComplete = 0;
  for (const c of conns) {
    if (c.closed) continue;
    open++;
    if (c.headDone && c.status === 200) headOk++;
    if (c.bodyBytes > 0) withBody++;
    if (now - c.lastByteAt <= activeWindowMs) active++;
    if (perSeq.length > 0 && c.events >= perSeq.length) streamsComplete++;
  }
  let minPerSeq = perSeq.length === 0 ? 0 : Number.MAX_SAFE_INTEGER;
  for (const n of perSeq) minPerSeq = Math.min(minPerSeq, n);
  const statuses: Record<string, number> = {};
  for (const c of conns) {
    if (c.headDone && c.status !== 200) statuses[c.status] = (statuses[c.status] ?? 0) + 1;
  }
  return {
    open,
    headOk,
    withBody,
    active,
    closedByPeer,
    errors,
    statuses,
    events: runEvents,
    otherFrames,
    minPerSeq,
    streamsComplete,
    latency: hist.summary(),
  };
}

process.on('message', (raw: unknown) => {
  const cmd = raw as ClientCommand;
  switch (cmd.type) {
    case 'open':
      void open(cmd).then((r) => send({ type: 'opened', result: r }));
      break;
    case 'reset':
      hist = new LatencyHistogram();
      perSeq = new Uint32Array(cmd.messages);
      runEvents = 0;
      otherFrames = 0;
      for (const c of conns) c.events = 0;
      send({ type: 'done' });
      break;
    case 'stats':
      send({ type: 'stats', stats: stats(cmd.activeWindowMs) });
      break;
    case 'close':
      for (const c of conns) {
        c.closed = true;
        c.socket.destroy();
      }
      conns.length = 0;
      errors = {};
      closedByPeer = 0;
      send({ type: 'done' });
      break;
    case 'exit':
      process.exit(0);
  }
});
// The parent went away (crash, Ctrl-C): never linger holding thousands of sockets.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
