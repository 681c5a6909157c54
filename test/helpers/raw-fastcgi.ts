/**
 * A deliberately tiny FastCGI client for tests that must not depend on src/fastcgi: one request per
 * connection (requestId 1, no KEEP_CONN), records parsed from a buffered reply. It reports STDOUT
 * and STDERR separately so tests can see where PHP's error output went.
 */
import net from 'node:net';

const FCGI_VERSION_1 = 1;
const FCGI_BEGIN_REQUEST = 1;
const FCGI_END_REQUEST = 3;
const FCGI_PARAMS = 4;
const FCGI_STDIN = 5;
const FCGI_STDOUT = 6;
const FCGI_STDERR = 7;
const FCGI_RESPONDER = 1;

/** What FPM sent back for one request. */
export interface RawFastCgiResponse {
  stdout: Buffer;
  stderr: Buffer;
  /** Every STDERR record's content, in order (one PHP error per record in practice). */
  stderrRecords: Buffer[];
  /** appStatus of FCGI_END_REQUEST; undefined when the connection closed without one. */
  appStatus: number | undefined;
  protocolStatus: number | undefined;
}

function record(type: number, content: Buffer): Buffer {
  const padding = (8 - (content.length % 8)) % 8;
  const header = Buffer.alloc(8);
  header.writeUInt8(FCGI_VERSION_1, 0);
  header.writeUInt8(type, 1);
  header.writeUInt16BE(1, 2);
  header.writeUInt16BE(content.length, 4);
  header.writeUInt8(padding, 6);
  return Buffer.concat([header, content, Buffer.alloc(padding)]);
}

function nameValueLength(n: number): Buffer {
  if (n < 128) return Buffer.from([n]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0, 0);
  return b;
}

function encodeParams(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(params)) {
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    parts.push(nameValueLength(n.length), nameValueLength(v.length), n, v);
  }
  return Buffer.concat(parts);
}

/** Connect options for a 'unix:/path' or 'host:port' FPM address. */
export function connectOptions(address: string): net.NetConnectOpts {
  if (address.startsWith('unix:')) return { path: address.slice('unix:'.length) };
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/**
 * Sends one responder request (params + stdin) and resolves with everything FPM sent before it
 * closed the connection. Params are sent in one record, so keep them under 64 KiB.
 */
export async function rawFastCgiRequest(
  address: string,
  params: Record<string, string>,
  stdin: Buffer = Buffer.alloc(0),
): Promise<RawFastCgiResponse> {
  const socket = net.connect(connectOptions(address));
  const begin = Buffer.alloc(8);
  begin.writeUInt16BE(FCGI_RESPONDER, 0); // flags 0: FPM closes the connection at the end
  const out = [record(FCGI_BEGIN_REQUEST, begin), record(FCGI_PARAMS, encodeParams(params))];
  out.push(record(FCGI_PARAMS, Buffer.alloc(0)));
  if (stdin.length > 0) out.push(record(FCGI_STDIN, stdin));
  out.push(record(FCGI_STDIN, Buffer.alloc(0)));
  socket.end(Buffer.concat(out));

  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('close', () => resolve());
  });

  const buf = Buffer.concat(chunks);
  const stdout: Buffer[] = [];
  const stderrRecords: Buffer[] = [];
  let appStatus: number | undefined;
  let protocolStatus: number | undefined;
  let off = 0;
  while (off + 8 <= buf.length) {
    const type = buf.readUInt8(off + 1);
    const len = buf.readUInt16BE(off + 4);
    const pad = buf.readUInt8(off + 6);
    const content = buf.subarray(off + 8, off + 8 + len);
    if (type === FCGI_STDOUT && len > 0) stdout.push(content);
    if (type === FCGI_STDERR && len > 0) stderrRecords.push(content);
    if (type === FCGI_END_REQUEST) {
      appStatus = content.readUInt32BE(0);
      protocolStatus = content.readUInt8(4);
    }
    off += 8 + len + pad;
  }
  return {
    stdout: Buffer.concat(stdout),
    stderr: Buffer.concat(stderrRecords),
    stderrRecords,
    appStatus,
    protocolStatus,
  };
}

/** CGI params for running `scriptFilename` as a plain GET. */
export function scriptParams(
  scriptFilename: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: 'GET',
    SCRIPT_FILENAME: scriptFilename,
    SCRIPT_NAME: '/' + (scriptFilename.split('/').pop() ?? ''),
    REQUEST_URI: '/',
    QUERY_STRING: '',
    SERVER_PROTOCOL: 'HTTP/1.1',
    SERVER_NAME: 'localhost',
    REMOTE_ADDR: '127.0.0.1',
    CONTENT_LENGTH: '0',
    REDIRECT_STATUS: '200',
    ...extra,
  };
}
