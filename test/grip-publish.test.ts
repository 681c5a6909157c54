/**
 * Pushpin-compatible publishing (issue 12, item 4): the real @fanoutio/grip Publisher, pointed at
 * the sidecar's admin listener with no other change, publishes to streams a PHP origin holds with
 * GripInstruct's headers (fixtures-php/app/public/grip-app.php) and to /askr/events subscribers.
 * A recurrence of the bug this guards against looks like the report: the Publisher gets a
 * 200 from PHP (the request fell through to index.php) or an error, and the held client gets
 * nothing, or gets the content wrapped in SSE framing instead of the exact bytes published.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  Auth,
  GripInstruct,
  HttpResponseFormat,
  HttpStreamFormat,
  Item,
  Publisher,
  loadKey,
} from '@fanoutio/grip';
import { startNode } from './helpers/cluster.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startRedis } from './helpers/redis.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream } from './helpers/sse-client.ts';
import { until } from './helpers/wait.ts';

const KEY = 'grip-test-key-0123456789abcdef-0123';
const ISS = 'askr-test';
const USER = 'publisher';
const PASSWORD = 'basic:secret';
/** sse.publish_token: askr's own HTTP publish, for events that are not GRIP content. */
const TOKEN = 'askr-token';

let s: TestSidecar;
let admin: string;
beforeAll(async () => {
  s = await startTestSidecar({
    'server.index': 'grip-app.php',
    'log.access_log': 'false',
    'metrics.enabled': 'true',
    'metrics.listen': '127.0.0.1:0',
    'grip.publish_key': KEY,
    'grip.publish_iss': ISS,
    'grip.publish_user': USER,
    'grip.publish_password': PASSWORD,
    'grip.max_publish_size': '64KiB',
    'sse.heartbeat_interval': '1h',
    'sse.publish_token': TOKEN,
  });
  admin = s.adminUrl ?? '';
});
afterAll(async () => {
  await s.close();
});
/** Streams a test opened: closed after it, so the next one starts with none. */
const opened: Array<{ close(): void }> = [];
afterEach(async () => {
  for (const stream of opened.splice(0)) stream.close();
  await until(() => s.hub.stats().connections === 0, 5000, 'the streams to close');
});

/** A Publisher configured as a Pushpin user would, control_uri being the admin listener. */
function jwtPublisher(config: { control_iss?: string; key?: string } = {}): Publisher {
  return new Publisher({ control_uri: admin, control_iss: ISS, key: KEY, ...config });
}

interface RawStream {
  status: number;
  bytes(): Buffer;
  /** Resolves once the body holds at least `length` bytes (rejects after timeoutMs). */
  waitForLength(length: number, timeoutMs?: number): Promise<Buffer>;
  /** True when the server ended the response, false when it was cut or closed by us. */
  ended: Promise<boolean>;
  close(): void;
}

/** A held GRIP stream read as raw bytes: what a Pushpin client gets is the exact bytes. */
async function openHold(
  channel: string,
  node: TestSidecar,
  first = ': open\n\n',
  headers: Record<string, string> = {},
): Promise<RawStream> {
  const instruct = new GripInstruct(channel);
  instruct.setHoldStream();
  const query = new URLSearchParams({ instruct: JSON.stringify(instruct.toHeaders()), first });
  const controller = new AbortController();
  const res = await request(`${node.url}/stream?${query.toString()}`, {
    signal: controller.signal,
    headers,
  });
  const chunks: Buffer[] = [];
  const waiters = new Set<() => void>();
  const ended = (async () => {
    try {
      for await (const chunk of res.body) {
        chunks.push(chunk as Buffer);
        for (const w of [...waiters]) w();
      }
      return true;
    } catch {
      return false;
    }
  })();
  const bytes = (): Buffer => Buffer.concat(chunks);
  return {
    status: res.statusCode,
    bytes,
    ended,
    close: () => controller.abort(),
    waitForLength: (length, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (bytes().length < length) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(bytes());
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(`got ${JSON.stringify(bytes().toString('latin1'))}, want ${length} bytes`),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
  };
}

/** The first bytes of every held stream here: the retry hint, then PHP's body. */
const HEAD = Buffer.from('retry: 3000\n\n: open\n\n');

/** A GRIP hold on `node` (the shared sidecar by default), once the hub holds it. */
async function held(channel: string, node = s): Promise<RawStream> {
  const before = node.hub.stats().connections;
  const hold = await openHold(channel, node);
  opened.push(hold);
  expect(hold.status).toBe(200);
  await hold.waitForLength(HEAD.length);
  await until(() => node.hub.stats().connections > before, 5000, `the hold on ${channel}`);
  return hold;
}

/** A raw POST to the publish API with the JWT a Publisher would send. */
async function post(
  body: string,
  headers: Record<string, string> = {},
  path = '/publish/',
): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const authorization = await new Auth.Jwt({ iss: ISS }, loadKey(KEY)).buildHeader();
  const res = await request(`${admin}${path}`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

async function metric(name: string, labels: string): Promise<number> {
  const res = await request(`${admin}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return Number(line?.split(' ').at(-1) ?? 'NaN');
}

describe('Pushpin-compatible publishing with @fanoutio/grip', () => {
  it("a JWT Publisher's http-stream content reaches a GRIP hold as its exact bytes", async () => {
    const hold = await held('news');
    const text = 'event: update\ndata: {"n":1}\n\n';
    const bin = Buffer.from([0x00, 0xff, 0x0a, 0x0d, 0xfe, 0x80]);
    await jwtPublisher().publishHttpStream('news', text);
    await jwtPublisher().publishHttpStream('news', new HttpStreamFormat(new Uint8Array(bin)));
    const expected = Buffer.concat([HEAD, Buffer.from(text), bin]);
    expect(await hold.waitForLength(expected.length)).toEqual(expected);
  });

  it('an /askr/events subscriber of the channel gets the same publish as an event', async () => {
    const hold = await held('shared');
    const events = await openStream(`${s.url}/askr/events?channel=shared`);
    opened.push(events);
    await until(() => s.hub.stats().connections >= 2);
    await jwtPublisher().publishHttpStream('shared', 'line 1\nline 2');
    // The channel's events (the endpoint may send frames of its own first).
    const frame = await events.waitFor((f) => f.id?.endsWith('@shared') === true);
    expect(frame.data).toBe('line 1\nline 2');
    expect(frame.event).toBeUndefined();
    const expected = Buffer.concat([HEAD, Buffer.from('line 1\nline 2')]);
    expect(await hold.waitForLength(expected.length)).toEqual(expected);
  });

  it('prev-id puts items published out of order back in order; a repeated id is dropped', async () => {
    const hold = await held('ordered');
    const p = jwtPublisher();
    const reorderedBefore = await metric('askr_grip_items_total', 'outcome="reordered"');
    await p.publishHttpStream('ordered', 'one;', '1');
    await p.publishHttpStream('ordered', 'three;', '3', '2'); // waits for '2'
    await p.publishHttpStream('ordered', 'two;', '2', '1'); // goes, and releases '3'
    await p.publishHttpStream('ordered', 'two again;', '2', '1'); // a retry: duplicate
    await p.publishHttpStream('ordered', 'four;', '4', '3');
    const expected = Buffer.concat([HEAD, Buffer.from('one;two;three;four;')]);
    expect(await hold.waitForLength(expected.length)).toEqual(expected);
    expect(await metric('askr_grip_items_total', 'outcome="reordered"')).toBe(reorderedBefore + 1);
    expect(await metric('askr_grip_items_total', 'outcome="duplicate"')).toBeGreaterThanOrEqual(1);
  });

  it("a close action ends the held stream, and the channel's events streams", async () => {
    const hold = await held('closing');
    const events = await openStream(`${s.url}/askr/events?channel=closing`);
    opened.push(events);
    await until(() => s.hub.stats().connections >= 2);
    await jwtPublisher().publishHttpStream('closing', 'last words');
    await jwtPublisher().publishHttpStream('closing', new HttpStreamFormat(null, true));
    expect(await hold.ended).toBe(true);
    expect(hold.bytes()).toEqual(Buffer.concat([HEAD, Buffer.from('last words')]));
    await events.ended;
    const published = events.frames.filter((f) => f.id?.endsWith('@closing') === true);
    expect(published.map((f) => f.data)).toEqual(['last words']);
  });

  it('a GRIP hold resuming with Last-Event-ID gets the GRIP content it missed as raw bytes', async () => {
    const hold = await held('resume');
    // An askr event (not GRIP content) gives the client an id to resume from.
    const res = await request(`${s.url}/askr/publish?channel=resume`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: 'askr event',
    });
    const { id } = (await res.body.json()) as { id: string };
    const frame = Buffer.from(`id: ${id}@resume\ndata: askr event\n\n`);
    await hold.waitForLength(HEAD.length + frame.length);
    hold.close();
    await until(() => s.hub.stats().connections === 0);
    await jwtPublisher().publishHttpStream('resume', 'missed;');
    const again = await openHold('resume', s, ': open\n\n', { 'last-event-id': `${id}@resume` });
    opened.push(again);
    const expected = Buffer.concat([HEAD, Buffer.from('missed;')]);
    expect(await again.waitForLength(expected.length)).toEqual(expected);
  });

  it('a Publisher with Basic auth (user + pass) publishes too', async () => {
    const hold = await held('basic');
    const publisher = new Publisher({ control_uri: admin, user: USER, pass: PASSWORD });
    await publisher.publishHttpStream('basic', 'via basic');
    const expected = Buffer.concat([HEAD, Buffer.from('via basic')]);
    expect(await hold.waitForLength(expected.length)).toEqual(expected);
  });

  it('bad auth: the Publisher rejects with the reason, and it is counted', async () => {
    const before = await metric('askr_rejected_requests_total', 'reason="grip_unauthorized"');
    const cases: Array<[Publisher, string]> = [
      [
        jwtPublisher({ key: 'another-key-0123456789abcdef-0123' }),
        'not signed with grip.publish_key',
      ],
      [jwtPublisher({ control_iss: 'someone-else' }), 'another iss than grip.publish_iss'],
      [
        new Publisher({ control_uri: admin, user: USER, pass: 'wrong' }),
        'do not match grip.publish_user',
      ],
      [new Publisher({ control_uri: admin, key: KEY }), 'refused while grip.publish_iss is set'],
      [new Publisher({ control_uri: admin }), 'no Authorization header'],
    ];
    for (const [publisher, reason] of cases) {
      await expect(publisher.publishHttpStream('news', 'nope')).rejects.toMatchObject({
        context: { statusCode: 401 },
        message: expect.stringContaining(reason) as unknown,
      });
    }
    expect(await metric('askr_rejected_requests_total', 'reason="grip_unauthorized"')).toBe(
      before + cases.length,
    );
    const res = await request(`${admin}/publish/`, { method: 'POST', body: '{}' });
    await res.body.text();
    expect(res.headers['www-authenticate']).toEqual([
      'Bearer realm="askr-grip"',
      'Basic realm="askr-grip", charset="UTF-8"',
    ]);
  });

  it("malformed items get 400 with Pushpin's message naming the item and field", async () => {
    const cases: Array<[string, string]> = [
      ['{"items": [', 'Body is not valid JSON.\n'],
      ['{}', "Invalid format: object does not contain 'items'\n"],
      [
        JSON.stringify({ items: [{ channel: 'c', formats: { 'http-stream': {} } }] }),
        "Invalid format: items[0]: 'http-stream' does not contain 'content' or 'content-bin'\n",
      ],
      [
        JSON.stringify({
          items: [{ channel: 'bad channel', formats: { 'http-stream': { content: 'x' } } }],
        }),
        'Invalid format: items[0]: channel name "bad channel" has a character outside',
      ],
      [
        JSON.stringify({ items: [{ channel: 'c', formats: { 'ws-message': { content: 'x' } } }] }),
        "Invalid format: items[0]: no 'http-stream' format",
      ],
    ];
    for (const [body, message] of cases) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(res.text).toContain(message);
    }
    // A request with one bad item publishes nothing, not even its good items.
    const hold = await held('atomic');
    const good = { channel: 'atomic', formats: { 'http-stream': { content: 'never;' } } };
    expect((await post(JSON.stringify({ items: [good, { channel: 'atomic' }] }))).status).toBe(400);
    await jwtPublisher().publishHttpStream('atomic', 'after;');
    const expected = Buffer.concat([HEAD, Buffer.from('after;')]);
    expect(await hold.waitForLength(expected.length)).toEqual(expected);
  });

  it('answers as Pushpin: Published, JSON on request, /publish too, 405, 406, 413', async () => {
    const item = JSON.stringify({
      items: [{ channel: 'misc', formats: { 'http-stream': { content: 'x' } } }],
    });
    expect(await post(item)).toMatchObject({ status: 200, text: 'Published\n' });
    expect(await post(item, { accept: 'application/json' }, '/publish')).toMatchObject({
      status: 200,
      text: '{"message":"Published"}\n',
    });
    expect(await post(item, { accept: 'image/png' })).toMatchObject({
      status: 406,
      text: 'Not Acceptable. Supported formats are text/plain and application/json.\n',
    });
    const big = JSON.stringify({
      items: [{ channel: 'misc', formats: { 'http-stream': { content: 'x'.repeat(70_000) } } }],
    });
    const tooLarge = await post(big);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.text).toContain('(grip.max_publish_size)');
    const get = await request(`${admin}/publish/`);
    expect(get.statusCode).toBe(405);
    expect(get.headers['allow']).toBe('POST');
    await get.body.text();
  });

  it('ignores http-response and ws-message beside http-stream, with one warning', async () => {
    const hold = await held('mixed');
    const before = await metric('askr_grip_ignored_total', 'format="http-response"');
    const item = new Item([
      new HttpStreamFormat('streamed;'),
      new HttpResponseFormat({ body: 'r' }),
    ]);
    await jwtPublisher().publish('mixed', item);
    await jwtPublisher().publish('mixed', item);
    const expected = Buffer.concat([HEAD, Buffer.from('streamed;streamed;')]);
    expect(await hold.waitForLength(expected.length)).toEqual(expected);
    expect(await metric('askr_grip_ignored_total', 'format="http-response"')).toBe(before + 2);
    const warnings = s.logs.filter((l) => String(l['msg']).startsWith('GRIP publish: the sidecar'));
    expect(warnings).toHaveLength(1);
  });

  it('counts what was published through GRIP under ingress "grip"', async () => {
    expect(await metric('askr_events_published_total', 'ingress="grip"')).toBeGreaterThanOrEqual(8);
    expect(await metric('askr_grip_items_total', 'outcome="sent"')).toBeGreaterThanOrEqual(8);
  });
});

describe('Pushpin-compatible publishing, not configured', () => {
  it('is off (404 naming the keys) and the Publisher says so', async () => {
    const off = await startTestSidecar({
      'metrics.enabled': 'true',
      'metrics.listen': '127.0.0.1:0',
    });
    try {
      const publisher = new Publisher({ control_uri: off.adminUrl ?? '' });
      await expect(publisher.publishHttpStream('news', 'x')).rejects.toMatchObject({
        context: { statusCode: 404 },
        message: expect.stringContaining('set grip.publish_key') as unknown,
      });
    } finally {
      await off.close();
    }
  });
});

describe('Pushpin-compatible publishing in a cluster', () => {
  it('content published on one node reaches a GRIP hold on another as its exact bytes', async () => {
    const redis = await startRedis();
    const dir = await phpTempDir('askr-grip-');
    const nodes: TestSidecar[] = [];
    try {
      const grip = { 'server.index': 'grip-app.php', 'sse.heartbeat_interval': '1h' };
      const a = await startNode(redis, dir, 'grip-a', {
        token: 't',
        track: nodes,
        settings: {
          ...grip,
          'metrics.enabled': 'true',
          'metrics.listen': '127.0.0.1:0',
          'grip.publish_key': KEY,
        },
      });
      const b = await startNode(redis, dir, 'grip-b', { token: 't', track: nodes, settings: grip });
      const hold = await held('across', b);
      const publisher = new Publisher({
        control_uri: a.adminUrl ?? '',
        control_iss: ISS,
        key: KEY,
      });
      const bin = Buffer.from([0xde, 0xad, 0x0a, 0xbe, 0xef]);
      await publisher.publishHttpStream('across', 'data: from a\n\n', '1');
      await publisher.publishHttpStream(
        'across',
        new HttpStreamFormat(new Uint8Array(bin)),
        '2',
        '1',
      );
      const expected = Buffer.concat([HEAD, Buffer.from('data: from a\n\n'), bin]);
      expect(await hold.waitForLength(expected.length)).toEqual(expected);
      await publisher.publishHttpStream('across', new HttpStreamFormat(null, true));
      expect(await hold.ended).toBe(true);
      expect(hold.bytes()).toEqual(expected);
    } finally {
      for (const node of nodes) await node.close();
      await redis.stop();
    }
  });
});
