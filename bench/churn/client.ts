/**
 * The clients of bench/churn.ts: raw SSE connections (a request written on a socket, the stream
 * counted as started once its head and first frame came), and one-shot HTTP requests on a
 * connection of their own (publish, /metrics), which the sidecar closes after them.
 */
import http from 'node:http';
import net from 'node:net';
import { HOST, TOKEN } from './sidecar.ts';

export interface Stream {
  socket: net.Socket;
  /** Resolves when the server ended the response (the last chunk) or the connection closed. */
  ended: Promise<void>;
}

/** Opens one raw SSE connection; resolves once the head and the first frame arrived (the
 * stream is in the hub). */
export function openStream(port: number, request: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST);
    let seen = '';
    let started = false;
    let onEnd = (): void => {};
    const ended = new Promise<void>((r) => {
      onEnd = r;
    });
    socket.once('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      // Only the tail matters: the head, the first frame, the terminating chunk.
      seen = (seen + chunk.toString('latin1')).slice(-4096);
      if (!started) {
        if (!seen.startsWith('HTTP/1.1 200')) {
          socket.destroy();
          reject(new Error(`stream refused: ${seen.slice(0, 300)}`));
          return;
        }
        const body = seen.indexOf('\r\n\r\n');
        if (body >= 0 && seen.includes('\n\n', body + 4)) {
          started = true;
          resolve({ socket, ended });
        }
      }
      if (seen.endsWith('\r\n0\r\n\r\n')) onEnd();
    });
    socket.once('close', onEnd);
    socket.once('error', (err) => {
      if (!started) reject(err);
    });
  });
}

/** Opens `count` streams, at most 256 connecting at once (the listen backlog is bounded). */
export async function openMany(count: number, port: number, request: string): Promise<Stream[]> {
  const out: Stream[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      out.push(await openStream(port, request));
    }
  };
  await Promise.all(Array.from({ length: Math.min(256, count) }, worker));
  return out;
}

/**
 * One request on a connection of its own, closed after it (`agent: false`): a kept-alive one
 * would be an fd the sidecar holds after the round, mistaken for a stream not released.
 */
function request(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body = '',
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: HOST,
        port,
        method,
        path,
        agent: false,
        headers: { connection: 'close', ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.once('error', reject);
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

export async function publish(port: number, body: object): Promise<void> {
  const res = await request(
    port,
    'POST',
    '/askr/publish',
    { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    JSON.stringify(body),
  );
  if (res.status !== 202 && res.status !== 200) throw new Error(`publish: HTTP ${res.status}`);
}

/** askr_sse_connections (all kinds) and askr_sse_channels from the metrics listener. */
export async function hubCounts(
  metricsPort: number,
): Promise<{ streams: number; channels: number }> {
  const { text } = await request(metricsPort, 'GET', '/metrics');
  let streams = 0;
  let channels = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('askr_sse_connections{')) streams += Number(line.split(' ').pop());
    else if (line.startsWith('askr_sse_channels ')) channels = Number(line.split(' ').pop());
  }
  return { streams, channels };
}
