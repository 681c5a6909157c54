/**
 * A raw SSE client for tests: opens a stream with undici, parses frames per the WHATWG rules
 * (fields id/event/data/retry, comments kept separately) and lets a test await the next frame.
 * The `eventsource` package is used where browser-like reconnect behaviour matters.
 */
import { request } from 'undici';

export interface Frame {
  id?: string;
  event?: string;
  data?: string;
  retry?: number;
  comments: string[];
}

/** The event of the first frame of every askr stream (GET /askr/events), right after `retry:`. */
export const CONNECTED_EVENT = 'askr:connected';

/**
 * The frames carrying data, less the askr:connected frame every askr stream opens with: what was
 * published, plus askr:lost and presence frames.
 */
export function dataFrames(frames: readonly Frame[]): Frame[] {
  return frames.filter((f) => f.data !== undefined && f.event !== CONNECTED_EVENT);
}

/**
 * The socket id of an askr stream, from its askr:connected frame. Throws unless that frame is the
 * first frame carrying data and its `socket_id` has the `<digits>.<digits>` form.
 */
export function connectedSocketId(frames: readonly Frame[]): string {
  const first = frames.find((f) => f.data !== undefined);
  if (first?.event !== CONNECTED_EVENT) {
    throw new Error(
      `the first frame with data is not ${CONNECTED_EVENT}: ${JSON.stringify(first)}`,
    );
  }
  const parsed: unknown = JSON.parse(first.data ?? '');
  const socketId =
    typeof parsed === 'object' && parsed !== null && 'socket_id' in parsed
      ? parsed.socket_id
      : undefined;
  if (typeof socketId !== 'string' || !/^\d+\.\d+$/.test(socketId)) {
    throw new Error(`${CONNECTED_EVENT} carries no socket id: ${first.data ?? ''}`);
  }
  return socketId;
}

export interface SseStream {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  frames: Frame[];
  /** Resolves with the frame at `index` (waits for it), or rejects after timeoutMs. */
  frame(index: number, timeoutMs?: number): Promise<Frame>;
  /** Resolves with the first frame (from `from`) matching, or rejects after timeoutMs. */
  waitFor(match: (f: Frame) => boolean, timeoutMs?: number, from?: number): Promise<Frame>;
  ended: Promise<void>;
  close(): void;
  body: string;
}

export async function openStream(
  url: string,
  headers: Record<string, string> = {},
): Promise<SseStream> {
  const controller = new AbortController();
  const res = await request(url, {
    headers: { accept: 'text/event-stream', ...headers },
    signal: controller.signal,
  });
  const frames: Frame[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  let current: Frame = { comments: [] };
  const stream: SseStream = {
    status: res.statusCode,
    headers: res.headers,
    frames,
    body: '',
    frame: (index, timeoutMs = 5000) => stream.waitFor((_f) => true, timeoutMs, index),
    waitFor(match, timeoutMs = 5000, from = 0) {
      return new Promise<Frame>((resolve, reject) => {
        const check = (): boolean => {
          for (let i = from; i < frames.length; i++) {
            const f = frames[i];
            if (f !== undefined && match(f)) {
              clearTimeout(timer);
              waiters.delete(check);
              resolve(f);
              return true;
            }
          }
          return false;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `no matching frame within ${timeoutMs} ms; got ${JSON.stringify(frames.slice(-5))}`,
            ),
          );
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    ended: Promise.resolve(),
    close: () => controller.abort(),
  };
  const push = (): void => {
    if (
      current.id === undefined &&
      current.event === undefined &&
      current.data === undefined &&
      current.retry === undefined &&
      current.comments.length === 0
    )
      return;
    frames.push(current);
    current = { comments: [] };
    for (const w of [...waiters]) w();
  };
  stream.ended = (async () => {
    try {
      for await (const chunk of res.body) {
        const text = (chunk as Buffer).toString('utf8');
        stream.body += text;
        buffer += text;
        let nl: number;
        while ((nl = buffer.search(/\r\n|\r|\n/)) !== -1) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            push();
            continue;
          }
          if (line.startsWith(':')) {
            current.comments.push(line.slice(1).trimStart());
            continue;
          }
          const colon = line.indexOf(':');
          const field = colon === -1 ? line : line.slice(0, colon);
          let value = colon === -1 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data')
            current.data = current.data === undefined ? value : `${current.data}\n${value}`;
          else if (field === 'id') current.id = value;
          else if (field === 'event') current.event = value;
          else if (field === 'retry') current.retry = Number(value);
        }
      }
    } catch {
      // Aborted by close() or cut by the server: the test looks at frames and `ended`.
    }
  })();
  return stream;
}
