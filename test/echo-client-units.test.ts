/**
 * The pure parts of the browser client (php/js), in Node: the SSE parser of askr-stream.js (every
 * frame split at every byte, CR / LF / CRLF line ends, comments, BOM, retry) and the per-tab
 * dispatch of askr-core.js (one frame per channel of a multi-channel event, each dispatched once
 * even when a resume or a tab handover delivers it again; askr:lost resets the position).
 */
import { describe, expect, it } from 'vitest';

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
}
interface StreamModule {
  SseParser: new (onFrame: (f: Frame) => void, onRetry: (ms: number) => void) => Parser;
}
interface CoreModule {
  AskrClient: new (options: { shareTabs: boolean }) => Client;
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
