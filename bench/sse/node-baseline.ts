/**
 * The floor for a Node SSE server, for comparison only (BENCH_TARGETS=...,node-http): plain
 * node:http, no routing, no hub, no limits. `GET /sub` holds the response; `POST /pub` frames the
 * body once (`data: ...\n\n`) and writes the same Buffer to every held response.
 * With BENCH_BASELINE_CHUNKED=0 the stream is sent without chunked encoding (body until close,
 * as nchan does), to measure what chunk framing costs per write. With BENCH_BASELINE_BATCH=1 the
 * sockets stay corked until setImmediate, so the events of every publish handled in one
 * event-loop turn go out in one writev per subscriber (what the datagram path gets for free).
 *   node bench/sse/node-baseline.ts PORT
 */
import http from 'node:http';

const subscribers = new Set<http.ServerResponse>();
const chunked = process.env['BENCH_BASELINE_CHUNKED'] !== '0';
const batch = process.env['BENCH_BASELINE_BATCH'] === '1';
let flushScheduled = false;
const flush = (): void => {
  flushScheduled = false;
  for (const sub of subscribers) sub.uncork();
};
const HEAD = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url?.startsWith('/sub') === true) {
    if (!chunked) res.useChunkedEncodingByDefault = false;
    res.writeHead(200, HEAD);
    res.write('retry: 3000\n\n');
    subscribers.add(res);
    res.once('close', () => subscribers.delete(res));
    return;
  }
  if (req.method === 'POST' && req.url?.startsWith('/pub') === true) {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const frame = Buffer.from(`data: ${Buffer.concat(parts).toString('utf8')}\n\n`);
      if (batch && !flushScheduled) {
        flushScheduled = true;
        for (const sub of subscribers) sub.cork();
        setImmediate(flush);
      }
      for (const sub of subscribers) sub.write(frame);
      res.writeHead(202, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    });
    return;
  }
  res.writeHead(404, { 'content-length': '0' });
  res.end();
});
server.maxConnections = 20_000;
server.listen(Number(process.argv[2]), '127.0.0.1');
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
