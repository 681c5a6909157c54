/**
 * Node's ceiling for bench:proxy's static workload: a bare node:http server, no routing, no
 * logs, no limits, answering one file from memory with the headers a static server sends
 * (the sidecar's set: validators, Content-Type, Content-Length, Accept-Ranges, nosniff, Vary;
 * node:http adds Date, Connection and Keep-Alive), anything else 404. What the sidecar's static
 * path costs above this is the sidecar's own work, not Node's.
 *   node bench/lib/node-ceiling.ts PORT FILE URL_PATH
 */
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';

const [portText, file, urlPath] = process.argv.slice(2);
if (portText === undefined || file === undefined || urlPath === undefined) {
  process.stderr.write('usage: node bench/lib/node-ceiling.ts PORT FILE URL_PATH\n');
  process.exit(2);
}
const body = readFileSync(file);
const stat = statSync(file);
const mtimeSeconds = Math.floor(stat.mtimeMs / 1000);
// The same validators as the sidecar and nginx: "<mtime hex>-<size hex>" and the IMF-fixdate.
const headers: http.OutgoingHttpHeaders = {
  ETag: `"${mtimeSeconds.toString(16)}-${body.length.toString(16)}"`,
  'Last-Modified': new Date(mtimeSeconds * 1000).toUTCString(),
  Vary: 'Accept-Encoding',
  'Accept-Ranges': 'bytes',
  'X-Content-Type-Options': 'nosniff',
  'Content-Type': 'text/plain; charset=utf-8',
  'Content-Length': body.length,
};
const notFound = Buffer.from('404 Not Found\n');

const server = http.createServer((req, res) => {
  if (req.url === urlPath && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': notFound.length });
  res.end(notFound);
});
server.listen(Number(portText), '127.0.0.1');
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
