/**
 * The pure parts of the browser client (php/js), in Node: the SSE parser of askr-stream.js (every
 * frame split at every byte, CR / LF / CRLF line ends, comments, BOM, retry) and the per-tab
 * dispatch of askr-core.js (one frame per channel of a multi-channel event, each dispatched once
 * even when a resume or a tab handover delivers it again; askr:lost resets the position). Then
 * the session against a fake sidecar (a stubbed fetch): the resume point of a page without an
 * event (askr:connected's position; a recurrence: the reopen's URL has no lastEventId, and an
 * event published meanwhile is missed), the grant in X-Askr-Grant (a recurrence: `grant=` in the
 * URL, so in access logs), a channel refused with 400 by the batch not asked again.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';

interface Frame {
  event: string;
  data: string;
  id: string | null;
}
interface Parser {
  push(text: string): void;
}
interface Handler {
  event(event: string, data: unknown): void;
  subscribed(): void;
  error(error: unknown): void;
  here(members: unknown[]): void;
  joining(member: unknown): void;
  leaving(member: unknown): void;
}
interface Client {
  add(name: string, handler: Handler): void;
  receive(msg: { t: 'frame'; frame: Frame }): void;
  onLost(callback: (info: unknown) => void): void;
  disconnect(): void;
  lastEventId: string | null;
  session: {
    position: string | null;
    stream: { pendingPosition: string | null } | null;
  } | null;
}
interface StreamModule {
  SseParser: new (
    onFrame: (f: Frame) => void,
    onRetry: (ms: number) => void,
    onComment?: (text: string) => void,
  ) => Parser;
}
interface CoreModule {
  AskrClient: new (options: {
    shareTabs: boolean;
    endpoint?: string;
    authEndpoint?: string;
  }) => Client;
}

// Browser modules without type declarations: a computed specifier keeps tsc from resolving them.
const stream = (await import(['..', 'php', 'js', 'askr-stream.js'].join('/'))) as StreamModule;
const core = (await import(['..', 'php', 'js', 'askr-core.js'].join('/'))) as CoreModule;

function parse(chunks: string[]): { frames: Frame[]; retries: number[] } {
  const frames: Frame[] = [];
  const retries: number[] = [];
  const parser = new stream.SseParser(
    (f) => frames.push(f),
    (ms) => retries.push(ms),
  );
  for (const chunk of chunks) parser.push(chunk);
  return { frames, retries };
}

const CASES: Array<{ name: string; text: string; frames: Frame[]; retries?: number[] }> = [
  {
    name: 'askr frames: retry, connected, event with id',
    text:
      'retry: 200\n\nevent: askr:connected\ndata: {"socket_id":"1.2"}\n\n' +
      'id: k3x9-7@orders\nevent: order.shipped\ndata: {"id":1}\n\n',
    frames: [
      { event: 'askr:connected', data: '{"socket_id":"1.2"}', id: null },
      { event: 'order.shipped', data: '{"id":1}', id: 'k3x9-7@orders' },
    ],
    retries: [200],
  },
  {
    name: 'CRLF and CR line ends, several data lines, a comment',
    text: ': ping\r\ndata: a\r\ndata: b\r\rdata:c\r\n\r\n',
    frames: [
      { event: 'message', data: 'a\nb', id: null },
      { event: 'message', data: 'c', id: null },
    ],
  },
  {
    name: 'a BOM, an empty data line, a field without a colon, an unknown field',
    text: '\uFEFFdata\nfoo: bar\n\nevent: x\ndata: \n\n',
    frames: [
      { event: 'message', data: '', id: null },
      { event: 'x', data: '', id: null },
    ],
  },
  {
    name: 'a frame without data is not dispatched; an id with NUL is ignored',
    text: 'id: 1-1@a\nevent: nothing\n\nid: bad\0id\ndata: d\n\n',
    frames: [{ event: 'message', data: 'd', id: null }],
  },
  {
    name: 'an unfinished frame waits for its blank line',
    text: 'data: complete\n\ndata: partial\n',
    frames: [{ event: 'message', data: 'complete', id: null }],
  },
];

describe('SseParser', () => {
  for (const c of CASES) {
    it(`${c.name}, whole and split at every position`, () => {
      const whole = parse([c.text]);
      expect(whole.frames).toEqual(c.frames);
      expect(whole.retries).toEqual(c.retries ?? []);
      for (let i = 1; i < c.text.length; i++) {
        expect(parse([c.text.slice(0, i), c.text.slice(i)]).frames).toEqual(c.frames);
      }
      // One UTF-16 unit per push (the texts are ASCII but for the BOM).
      expect(
        parse(Array.from({ length: c.text.length }, (_, i) => c.text.charAt(i))).frames,
      ).toEqual(c.frames);
    });
  }
});

describe('per-tab dispatch', () => {
  function subscribe(client: Client, name: string, got: string[]): void {
    const noop = (): void => {};
    client.add(name, {
      event: (event, data) => got.push(`${name} ${event} ${JSON.stringify(data)}`),
      subscribed: noop,
      error: noop,
      here: noop,
      joining: noop,
      leaving: noop,
    });
  }
  const frame = (id: string, data: string, event = 'E'): { t: 'frame'; frame: Frame } => ({
    t: 'frame',
    frame: { event, data, id },
  });

  it('one frame per channel; each (seq, channel) once, whatever delivers it again', () => {
    const client = new core.AskrClient({ shareTabs: false });
    const got: string[] = [];
    subscribe(client, 'probe', got);
    subscribe(client, 'private-orders.1', got);
    client.receive(frame('ep-5@probe', '1'));
    client.receive(frame('ep-5@private-orders.1', '1'));
    // A resume from 5@probe (a handover, a reopen) replays 5@private-orders.1 and what follows.
    client.receive(frame('ep-5@private-orders.1', '1'));
    client.receive(frame('ep-5@probe', '1'));
    client.receive(frame('ep-4@probe', '0'));
    client.receive(frame('ep-6@probe', '2'));
    client.receive(frame('ep-6@other', '2')); // another tab's channel: skipped, position kept
    client.receive(frame('ep-6@private-orders.1', '2'));
    expect(got).toEqual(['probe E 1', 'private-orders.1 E 1', 'probe E 2', 'private-orders.1 E 2']);
    expect(client.lastEventId).toBe('ep-6@private-orders.1');
    client.disconnect();
  });

  it('askr:lost reports the gap and accepts the older events that follow it', () => {
    const client = new core.AskrClient({ shareTabs: false });
    const got: string[] = [];
    const lost: unknown[] = [];
    subscribe(client, 'probe', got);
    client.onLost((info) => lost.push(info));
    client.receive(frame('ep-9@probe', '9'));
    client.receive(frame('ep-20', '{"reason":"too_old","lastEventId":"ep-9@probe"}', 'askr:lost'));
    client.receive(frame('ep-18@probe', '18'));
    client.receive(frame('ep-19@probe', '19'));
    expect(lost).toEqual([{ reason: 'too_old', lastEventId: 'ep-9@probe' }]);
    expect(got).toEqual(['probe E 9', 'probe E 18', 'probe E 19']);
    expect(client.lastEventId).toBe('ep-19@probe');
    client.disconnect();
  });

  it('a new epoch (a restarted sidecar) starts a new position', () => {
    const client = new core.AskrClient({ shareTabs: false });
    const got: string[] = [];
    subscribe(client, 'probe', got);
    client.receive(frame('old-9@probe', '9'));
    client.receive(frame('new-1@probe', '1'));
    expect(got).toEqual(['probe E 9', 'probe E 1']);
    client.disconnect();
  });
});

/** One request to the fake events endpoint: what the client sent, and a way to answer. */
interface EventsRequest {
  url: URL;
  headers: Record<string, string>;
  send(text: string): void;
}

const BASE = 'http://sidecar.test';

/**
 * A fake sidecar behind a stubbed fetch: POST /askr/auth answers `authAnswer(channels)`, every
 * GET of the events endpoint stays open and is recorded, for the test to write frames to.
 */
function fakeSidecar(authAnswer: (channels: string[]) => unknown = () => ({})): {
  streams: EventsRequest[];
  auths: Array<{ channels: string[]; socket_id?: string }>;
} {
  const streams: EventsRequest[] = [];
  const auths: Array<{ channels: string[]; socket_id?: string }> = [];
  const encoder = new TextEncoder();
  vi.stubGlobal('fetch', (input: string | URL, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(String(input));
    if (url.pathname === '/askr/auth') {
      const body = JSON.parse(init.body as string) as { channels: string[] };
      auths.push(body);
      const headers = { date: new Date().toUTCString() };
      return Promise.resolve(Response.json(authAnswer(body.channels), { headers }));
    }
    let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    // The client aborts a stream it replaces: its reader then fails, as with a real fetch.
    init.signal?.addEventListener('abort', () => controller?.error(new Error('aborted')));
    streams.push({
      url,
      headers: { ...(init.headers as Record<string, string>) },
      send: (text) => controller?.enqueue(encoder.encode(text)),
    });
    return Promise.resolve(
      new Response(body, { headers: { 'content-type': 'text/event-stream' } }),
    );
  });
  return { streams, auths };
}

const connected = (position: string): string =>
  `retry: 200\n\nevent: askr:connected\ndata: ${JSON.stringify({
    socket_id: '1.2',
    grant_expires_at: null,
    position,
  })}\n\n`;

describe('the session against a fake sidecar', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  function record(client: Client, name: string, got: string[], errors: unknown[] = []): void {
    const noop = (): void => {};
    client.add(name, {
      event: (event, data) => got.push(`${name} ${event} ${JSON.stringify(data)}`),
      subscribed: noop,
      error: (e) => errors.push(e),
      here: noop,
      joining: noop,
      leaving: noop,
    });
  }

  it("no event yet: resumes from askr:connected's position; a resumed stream's position counts after a heartbeat", async () => {
    const { streams } = fakeSidecar();
    const client = new core.AskrClient({ shareTabs: false, endpoint: `${BASE}/askr/events` });
    const got: string[] = [];
    record(client, 'news', got);
    await vi.waitFor(() => expect(streams).toHaveLength(1));
    const first = streams[0] as EventsRequest;
    expect(first.url.searchParams.get('lastEventId')).toBeNull();
    first.send(connected('ep-4'));
    // Opened without a resume point: nothing is replayed after askr:connected, the position holds.
    await vi.waitFor(() => expect(client.lastEventId).toBe('ep-4'));

    // A channel added: the reopen resumes from the position (the sidecar replays what came since).
    record(client, 'sport', got);
    await vi.waitFor(() => expect(streams).toHaveLength(2));
    const second = streams[1] as EventsRequest;
    expect(second.url.searchParams.getAll('channel')).toEqual(['news', 'sport']);
    expect(second.url.searchParams.get('lastEventId')).toBe('ep-4');
    second.send(connected('ep-6'));
    // The replay of ep-5.. would follow in the same write: the new position waits for a heartbeat.
    await vi.waitFor(() => expect(client.session?.stream?.pendingPosition).toBe('ep-6'));
    expect(client.lastEventId).toBe('ep-4');
    second.send(': ping\n\n');
    await vi.waitFor(() => expect(client.lastEventId).toBe('ep-6'));

    // Once an event came, positions no longer move the resume point: the event's id does.
    second.send('id: ep-7@news\nevent: E\ndata: 1\n\n');
    await vi.waitFor(() => expect(got).toEqual(['news E 1']));
    expect(client.lastEventId).toBe('ep-7@news');
    record(client, 'weather', got);
    await vi.waitFor(() => expect(streams).toHaveLength(3));
    const third = streams[2] as EventsRequest;
    expect(third.url.searchParams.get('lastEventId')).toBe('ep-7@news');
    third.send(`${connected('ep-9')}: ping\n\n`);
    await vi.waitFor(() => expect(client.session?.position).toBe('ep-9'));
    expect(client.lastEventId).toBe('ep-7@news');
    client.disconnect();
  });

  it('the grant goes in X-Askr-Grant, never in the URL; a channel the batch refused with 400 is not asked again', async () => {
    const { streams, auths } = fakeSidecar((channels) => ({
      grant: 'payload.signature',
      expires_at: Date.now() + 60_000,
      socket_id: '1.2',
      channels: Object.fromEntries(
        channels.map((name) => [
          name,
          name === 'private-a'
            ? { allowed: true }
            : {
                allowed: false,
                status: 400,
                reason: 'over the limit of 1 channels per stream (sse.max_channels_per_connection)',
              },
        ]),
      ),
    }));
    const client = new core.AskrClient({
      shareTabs: false,
      endpoint: `${BASE}/askr/events`,
      authEndpoint: `${BASE}/askr/auth`,
    });
    const got: string[] = [];
    const errors: unknown[] = [];
    record(client, 'private-a', got);
    record(client, 'private-b', got, errors);
    await vi.waitFor(() => expect(streams).toHaveLength(1));
    expect(auths).toEqual([{ channels: ['private-a', 'private-b'] }]);
    const stream = streams[0] as EventsRequest;
    expect(stream.url.searchParams.getAll('channel')).toEqual(['private-a']);
    expect(stream.url.searchParams.has('grant')).toBe(false);
    expect(stream.url.searchParams.get('socket_id')).toBe('1.2');
    expect(stream.headers['X-Askr-Grant']).toBe('payload.signature');
    await vi.waitFor(() =>
      expect(errors).toEqual([
        {
          status: 400,
          reason: 'over the limit of 1 channels per stream (sse.max_channels_per_connection)',
        },
      ]),
    );
    // Another channel reopens the stream; the refused one is not authorized again.
    record(client, 'news', got);
    await vi.waitFor(() => expect(streams).toHaveLength(2));
    expect((streams[1] as EventsRequest).url.searchParams.getAll('channel')).toEqual([
      'private-a',
      'news',
    ]);
    expect((streams[1] as EventsRequest).headers['X-Askr-Grant']).toBe('payload.signature');
    expect(auths).toHaveLength(1);
    client.disconnect();
  });
});
