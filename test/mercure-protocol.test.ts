/**
 * The Mercure 1.0 hub (issue 11) from outside, against the contract and the spec
 * (/work/shared/reference/mercure/spec-mercure.md): matchers, publication, private updates,
 * reconnection, authorization errors (RFC 6750), token keys, active subscriptions, metadata, CORS
 * and discovery. Each test starts its own sidecar. "Not delivered" is asserted without timing: a
 * later update the subscriber must receive is published after it, and the hub delivers in order.
 */
import { generateKeyPair, exportSPKI, type CryptoKey } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { runCleanups, type Cleanups } from './helpers/wait.ts';
import {
  HUB_PATH,
  ISSUER,
  MERCURE_BASE,
  SECRET,
  bearerChallenge,
  datas,
  detail,
  endsWithin,
  get,
  hubToken,
  hubUrl,
  mintToken,
  nowSeconds,
  publish,
  publishOk,
  publisherToken,
  resourceMetadataUrl,
  unsignedToken,
  urlpattern,
  type Fields,
  type MercureStream,
  mercureHarness,
} from './helpers/mercure.ts';

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

const { hub, sub } = mercureHarness(cleanups);

const BOOK1 = 'https://example.com/books/1';
const BOOK2 = 'https://example.com/books/2';

describe('subscribe', () => {
  it('answers an event stream that starts with retry: and sends heartbeats', async () => {
    const s = await hub({ 'sse.heartbeat_interval': '200ms', 'sse.retry': '2500ms' });
    const st = await sub(s, [['match', BOOK1]]);
    expect(st.status).toBe(200);
    expect(st.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(st.body.startsWith('retry: 2500\n\n')).toBe(true);
    await st.waitFor((f) => f.comments.includes('ping'));
  });

  it('match is exact and case-sensitive: an update on a different-case topic is not delivered', async () => {
    const s = await hub();
    const st = await sub(s, [['match', 'https://example.com/Books/1']]);
    await publishOk(s, { topic: BOOK1, data: 'lower-case topic' });
    await publishOk(s, { topic: 'https://example.com/Books/1', data: 'same topic' });
    await st.update('same topic');
    expect(datas(st)).toEqual(['same topic']);
  });

  it('match_exact is the explicit spelling and does not resolve relative topics', async () => {
    const s = await hub();
    const st = await sub(s, [['match_exact', '/books/1']]);
    await publishOk(s, { topic: `${s.url}/books/1`, data: 'absolute' });
    await publishOk(s, { topic: '/books/1', data: 'relative' });
    await st.update('relative');
    expect(datas(st)).toEqual(['relative']);
  });

  it('match_urlpattern with an absolute pattern', async () => {
    const s = await hub();
    const st = await sub(s, [['match_urlpattern', 'https://example.com/books/:id']]);
    await publishOk(s, { topic: BOOK1, data: 'book 1' });
    await publishOk(s, { topic: 'https://example.com/books/1/chapters/2', data: 'chapter' });
    await publishOk(s, { topic: 'https://example.org/books/3', data: 'other host' });
    await publishOk(s, { topic: 'https://example.com/Books/4', data: 'other case' });
    await publishOk(s, { topic: BOOK2, data: 'book 2' });
    await st.update('book 2');
    expect(datas(st)).toEqual(['book 1', 'book 2']);
  });

  it('match_urlpattern with a relative pattern is resolved against the hub URL', async () => {
    const s = await hub();
    const st = await sub(s, [['match_urlpattern', '/books/:id']]);
    await publishOk(s, { topic: '/books/8', data: 'relative topic' });
    await publishOk(s, { topic: `${s.url}/books/7`, data: 'absolute topic on the hub origin' });
    await publishOk(s, { topic: 'https://example.com/books/9', data: 'another origin' });
    await publishOk(s, { topic: '/books/10', data: 'last' });
    await st.update('last');
    expect(datas(st)).toEqual(['relative topic', 'absolute topic on the hub origin', 'last']);
  });

  it('match=* receives every topic', async () => {
    const s = await hub();
    const st = await sub(s, [['match', '*']]);
    await publishOk(s, { topic: 'orders', data: 'a' });
    await publishOk(s, { topic: BOOK1, data: 'b' });
    await publishOk(s, { topic: '/relative/topic', data: 'c' });
    await st.update('c');
    expect(datas(st)).toEqual(['a', 'b', 'c']);
  });

  it('several matchers in one request; an update matching two of them is delivered once', async () => {
    const s = await hub();
    const st = await sub(s, [
      ['match', 'orders'],
      ['match_exact', 'https://example.com/b'],
      ['match_urlpattern', 'https://example.com/:x'],
    ]);
    await publishOk(s, { topic: 'https://example.com/b', data: 'exact and pattern' });
    await publishOk(s, {
      topic: ['orders', 'https://example.com/c'],
      data: 'canonical and alternate',
    });
    await publishOk(s, { topic: 'https://example.com/d', data: 'pattern only' });
    await publishOk(s, { topic: 'orders', data: 'exact only' });
    await st.update('exact only');
    expect(datas(st)).toEqual([
      'exact and pattern',
      'canonical and alternate',
      'pattern only',
      'exact only',
    ]);
  });

  it.each<[string, Array<[string, string]>]>([
    ['an unknown match_ type', [['match_regex', 'a.*']]],
    ['a name under the match prefix', [['matchfoo', 'x']]],
    ['MATCH in capitals', [['MATCH', 'x']]],
    ['a matcher type in another case', [['match_URLPattern', '/x']]],
    [
      'one bad name among good matchers',
      [
        ['match', 'a'],
        ['Match', 'b'],
      ],
    ],
    ['a C0 control character', [['match', 'a\u0001b']]],
    ['DEL', [['match', 'a\u007fb']]],
    ['a C1 control character', [['match', 'a\u0085b']]],
    ['a format character (U+200B)', [['match', 'a\u200bb']]],
    ['a bidi control (U+202E) in a URL pattern', [['match_urlpattern', '/a\u202eb']]],
    ['an invalid URL pattern', [['match_urlpattern', '/books/(']]],
    ['more than max_matchers (32)', Array.from({ length: 33 }, (_, i) => ['match', `t${i}`])],
    ['a matcher longer than max_topic_length (2KiB)', [['match', 'x'.repeat(2049)]]],
    ['no matcher', []],
    ['a resume input and no matcher', [['last_event_id', 'earliest']]],
  ])('400 for %s', async (_name, query) => {
    const s = await hub();
    const st = await sub(s, query);
    expect(st.status).toBe(400);
  });

  it('accepts exactly max_matchers matchers and a matcher of exactly max_topic_length', async () => {
    const s = await hub({ 'mercure.max_matchers': '3', 'mercure.max_topic_length': '64' });
    const ok = await sub(s, [
      ['match', 'a'],
      ['match', 'x'.repeat(64)],
      ['match', 'c'],
    ]);
    expect(ok.status).toBe(200);
    const tooMany = await sub(s, [
      ['match', 'a'],
      ['match', 'b'],
      ['match', 'c'],
      ['match', 'd'],
    ]);
    expect(tooMany.status).toBe(400);
    const tooLong = await sub(s, [['match', 'x'.repeat(65)]]);
    expect(tooLong.status).toBe(400);
  });
});

describe('publish', () => {
  it('form fields: multi-line data, type, retry and the publisher id reach the subscriber', async () => {
    const s = await hub();
    const st = await sub(s, [['match', BOOK1]]);
    const res = await publish(
      s,
      {
        topic: BOOK1,
        data: 'one\ntwo\r\nthree\rfour',
        type: 'book.updated',
        retry: '5000',
        id: 'https://example.com/books/1#rev-2',
        unknown_field: 'ignored',
      },
      { token: await publisherToken(s) },
    );
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.body).toBe('https://example.com/books/1#rev-2');
    const f = await st.waitFor((x) => x.event === 'book.updated');
    expect(f).toMatchObject({
      id: 'https://example.com/books/1#rev-2',
      event: 'book.updated',
      retry: 5000,
      data: 'one\ntwo\nthree\nfour',
    });
    // One data: field per line (the spec: split on CR, LF or CRLF); the client rejoins them.
    expect(st.body).toContain('data: one\ndata: two\ndata: three\ndata: four\n');
  });

  it('a generated id is urn:askr:<epoch>-<seq>, answered as text/plain and sent as the SSE id', async () => {
    const s = await hub();
    const st = await sub(s, [['match', BOOK1]]);
    const token = await publisherToken(s);
    const first = await publish(s, { topic: BOOK1, data: 'first' }, { token });
    const second = await publish(s, { topic: BOOK1, data: 'second' }, { token });
    for (const res of [first, second]) {
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(res.body).toMatch(/^urn:askr:\S+-\d+$/);
    }
    expect(second.body).not.toBe(first.body);
    const epoch = (id: string): string => id.replace(/-\d+$/, '');
    expect(epoch(second.body)).toBe(epoch(first.body));
    expect((await st.update('first')).id).toBe(first.body);
    expect((await st.update('second')).id).toBe(second.body);
  });

  it('a publish without data is an update with empty data', async () => {
    const s = await hub();
    const st = await sub(s, [['match', BOOK1]]);
    const id = await publishOk(s, { topic: BOOK1, type: 'ping' });
    const f = await st.waitFor((x) => x.event === 'ping');
    expect(f.id).toBe(id);
    expect(f.data ?? '').toBe('');
  });

  it('alternate topics: a subscriber of the second topic receives the update', async () => {
    const s = await hub();
    const st = await sub(s, [['match', 'https://example.com/users/42/books/1']]);
    const id = await publishOk(s, {
      topic: [BOOK1, 'https://example.com/users/42/books/1'],
      data: 'via the alternate topic',
    });
    expect((await st.update('via the alternate topic')).id).toBe(id);
  });

  it('topics next to the hub path are not reserved', async () => {
    const s = await hub();
    for (const topic of [
      '/.well-known/mercurex',
      '/.well-known/mercure-other/x',
      '/well-known/mercure',
    ]) {
      const res = await publish(s, { topic, data: 'x' }, { token: await publisherToken(s) });
      expect(res.status, topic).toBe(200);
    }
  });

  it.each<[string, Fields]>([
    ['no topic', { data: 'x' }],
    ['the topic *', { topic: '*' }],
    ['* as an alternate topic', { topic: ['orders', '*'] }],
    ['the hub path', { topic: HUB_PATH }],
    ['a topic under the hub path', { topic: '/.well-known/mercure/x' }],
    [
      'a subscription topic on the hub origin',
      { topic: 'http://hub.example/.well-known/mercure/subscriptions/exact/a/urn%3Auuid%3A1' },
    ],
    [
      'another origin with an escaped unreserved character',
      { topic: 'https://other.example/.well-known/%6Dercure/x' },
    ],
    ['dot-segments reaching the hub path', { topic: '/books/../.well-known/mercure/x' }],
    ['dot-segments inside the hub path', { topic: '/.well-known/mercure/../mercure/x' }],
    ['a reserved alternate topic', { topic: ['orders', '/.well-known/mercure/subscriptions'] }],
    ['a C0 control character in the topic', { topic: 'a\u0001b' }],
    ['DEL in the topic', { topic: 'a\u007fb' }],
    ['a C1 control character in the topic', { topic: 'a\u0085b' }],
    ['a format character in the topic', { topic: 'a\u200bb' }],
    ['a line feed in the id', { topic: 'orders', id: 'a\nb' }],
    ['a format character in the id', { topic: 'orders', id: 'a\u202eb' }],
    ['an id starting with #', { topic: 'orders', id: '#42' }],
    ['the id earliest', { topic: 'orders', id: 'earliest' }],
    ['a carriage return in the type', { topic: 'orders', type: 'a\rb' }],
    ['a format character in the type', { topic: 'orders', type: 'a\u2066b' }],
    ['the type mercure', { topic: 'orders', type: 'mercure' }],
    ['a retry with letters', { topic: 'orders', retry: '10s' }],
    ['a negative retry', { topic: 'orders', retry: '-1' }],
    ['a fractional retry', { topic: 'orders', retry: '1.5' }],
    ['a retry with a space', { topic: 'orders', retry: ' 10' }],
  ])('400 (plain text reason) for %s', async (_name, fields) => {
    const s = await hub();
    const res = await publish(s, fields, { token: await publisherToken(s) });
    expect(res.status).toBe(400);
    expect(res.body.trim()).not.toBe('');
  });

  // Regression (found in issue 13): with `audience` set, a Host header that makes no URL made
  // every topic fail to resolve against the hub URL, so none was "in the reserved namespace" and
  // a publisher could forge subscription events. A recurrence answers 200 (or 500) here.
  it('a Host that makes no valid hub URL is refused, so the reserved namespace holds', async () => {
    const audience = 'https://example.com/.well-known/mercure';
    const s = await hub({ 'mercure.audience': audience, 'mercure.subscriptions': true });
    const token = await hubToken(s, [detail(['publish'], ['*'])], { aud: audience });
    const headers = { host: 'exa mple.com' };
    for (const topic of [
      'https://example.com/.well-known/mercure/subscriptions/exact/a/urn%3Auuid%3A1',
      'https://example.com/books/1',
    ]) {
      const res = await publish(s, { topic, data: 'x' }, { token, headers });
      expect(res.status, topic).toBe(400);
      expect(res.body).toMatch(/Host header/);
    }
    expect((await publish(s, { topic: 'https://example.com/books/1' }, { token })).status).toBe(
      200,
    );
  });

  it('a refused publish is not delivered', async () => {
    const s = await hub();
    const st = await sub(s, [['match', 'orders']]);
    const token = await publisherToken(s);
    expect(
      (await publish(s, { topic: 'orders', type: 'mercure', data: 'forged' }, { token })).status,
    ).toBe(400);
    expect((await publish(s, { topic: ['orders', '*'], data: 'wildcard' }, { token })).status).toBe(
      400,
    );
    await publishOk(s, { topic: 'orders', data: 'accepted' });
    await st.update('accepted');
    expect(datas(st)).toEqual(['accepted']);
  });

  it.each([
    ['application/json', '{"topic":"orders","data":"x"}'],
    ['text/plain', 'topic=orders&data=x'],
    [
      'multipart/form-data; boundary=x',
      '--x\r\nContent-Disposition: form-data; name="topic"\r\n\r\norders\r\n--x--\r\n',
    ],
  ])('415 for the content type %s', async (contentType, body) => {
    const s = await hub();
    const res = await publish(s, {}, { token: await publisherToken(s), contentType, body });
    expect(res.status).toBe(415);
  });

  it('accepts the form content type with a charset parameter', async () => {
    const s = await hub();
    const res = await publish(
      s,
      { topic: 'orders', data: 'x' },
      {
        token: await publisherToken(s),
        contentType: 'application/x-www-form-urlencoded; charset=utf-8',
      },
    );
    expect(res.status).toBe(200);
  });

  it.each<[string, Record<string, unknown>, Fields]>([
    [
      'more than max_topics topics',
      { 'mercure.max_topics': '2' },
      { topic: ['a', 'b', 'c'], data: 'x' },
    ],
    [
      'a topic over max_topic_length',
      { 'mercure.max_topic_length': '64' },
      { topic: 'x'.repeat(65), data: 'x' },
    ],
    [
      'an alternate topic over max_topic_length',
      { 'mercure.max_topic_length': '64' },
      { topic: ['orders', 'x'.repeat(65)], data: 'x' },
    ],
    [
      'a body over max_update_size',
      { 'mercure.max_update_size': '1KiB' },
      { topic: 'orders', data: 'x'.repeat(2048) },
    ],
  ])('413 for %s', async (_name, overrides, fields) => {
    const s = await hub(overrides);
    const res = await publish(s, fields, { token: await publisherToken(s) });
    expect(res.status).toBe(413);
  });

  it('max_topics topics and a topic of max_topic_length are accepted', async () => {
    const s = await hub({ 'mercure.max_topics': '2', 'mercure.max_topic_length': '64' });
    const res = await publish(
      s,
      { topic: ['a', 'x'.repeat(64)], data: 'x' },
      { token: await publisherToken(s) },
    );
    expect(res.status).toBe(200);
  });
});

describe('private updates', () => {
  it('an anonymous subscriber does not receive a private update', async () => {
    const s = await hub();
    const st = await sub(s, [['match', BOOK1]]);
    await publishOk(s, { topic: BOOK1, data: 'secret', private: 'on' });
    await publishOk(s, { topic: BOOK1, data: 'public' });
    await st.update('public');
    expect(datas(st)).toEqual(['public']);
  });

  it('a token granting subscribe on the canonical topic receives it (private with an empty value)', async () => {
    const s = await hub();
    const token = await hubToken(s, [detail(['subscribe'], [BOOK1])]);
    const st = await sub(s, [['match', BOOK1]], { token });
    await publishOk(s, { topic: BOOK1, data: 'secret', private: '' });
    await publishOk(s, { topic: BOOK1, data: 'public' });
    await st.update('public');
    expect(datas(st)).toEqual(['secret', 'public']);
  });

  it('a grant on an alternate topic only is enough', async () => {
    const s = await hub();
    const token = await hubToken(s, [
      detail(['subscribe'], [urlpattern('https://example.com/users/42/*')]),
    ]);
    const st = await sub(s, [['match_urlpattern', 'https://example.com/books/:id']], { token });
    await publishOk(s, {
      topic: [BOOK1, 'https://example.com/users/42/books/1'],
      data: 'for user 42',
      private: 'on',
    });
    await st.update('for user 42');
  });

  it('a grant on another topic does not receive it, whatever the routing matchers select', async () => {
    const s = await hub();
    const token = await hubToken(s, [detail(['subscribe'], [BOOK2])]);
    const st = await sub(s, [['match_urlpattern', 'https://example.com/books/:id']], { token });
    await publishOk(s, { topic: BOOK1, data: 'book 1 secret', private: 'on' });
    await publishOk(s, { topic: BOOK2, data: 'book 2 secret', private: 'on' });
    await st.update('book 2 secret');
    expect(datas(st)).toEqual(['book 2 secret']);
  });

  it('a publish grant does not let a subscriber read private updates', async () => {
    const s = await hub();
    const token = await hubToken(s, [detail(['publish'], ['*'])]);
    const st = await sub(s, [['match', BOOK1]], { token });
    await publishOk(s, { topic: BOOK1, data: 'secret', private: 'on' });
    await publishOk(s, { topic: BOOK1, data: 'public' });
    await st.update('public');
    expect(datas(st)).toEqual(['public']);
  });
});

describe('reconnection', () => {
  /** Publishes a, b (on another topic), c, d on BOOK1 and returns their ids. */
  async function history(s: TestSidecar): Promise<Record<string, string>> {
    return {
      a: await publishOk(s, { topic: BOOK1, data: 'a' }),
      other: await publishOk(s, { topic: BOOK2, data: 'other topic' }),
      b: await publishOk(s, { topic: BOOK1, data: 'b' }),
      c: await publishOk(s, { topic: BOOK1, data: 'c' }),
    };
  }

  it('Last-Event-ID header: later matching events are replayed and Mercure-Last-Event-ID names it', async () => {
    const s = await hub();
    const ids = await history(s);
    const st = await sub(s, [['match', BOOK1]], { headers: { 'last-event-id': ids['a'] ?? '' } });
    expect(st.headers['mercure-last-event-id']).toBe(ids['a']);
    expect(st.headers['last-event-id']).toBe(ids['a']);
    await st.update('c');
    expect(st.updates().map((f) => [f.id, f.data])).toEqual([
      [ids['b'], 'b'],
      [ids['c'], 'c'],
    ]);
    await publishOk(s, { topic: BOOK1, data: 'live' });
    await st.update('live');
    expect(datas(st)).toEqual(['b', 'c', 'live']);
  });

  it('last_event_id query parameter: the same replay and response header', async () => {
    const s = await hub();
    const ids = await history(s);
    const st = await sub(s, [
      ['match', BOOK1],
      ['last_event_id', ids['b'] ?? ''],
    ]);
    expect(st.headers['mercure-last-event-id']).toBe(ids['b']);
    await st.update('c');
    expect(datas(st)).toEqual(['c']);
  });

  it('earliest replays the whole history and answers Mercure-Last-Event-ID: earliest', async () => {
    const s = await hub();
    await history(s);
    const st = await sub(s, [
      ['match', BOOK1],
      ['last_event_id', 'earliest'],
    ]);
    expect(st.headers['mercure-last-event-id']).toBe('earliest');
    await st.update('c');
    expect(datas(st)).toEqual(['a', 'b', 'c']);
  });

  it('an unknown id answers Mercure-Last-Event-ID: earliest, and live updates follow', async () => {
    const s = await hub();
    await history(s);
    const st = await sub(s, [['match', BOOK1]], {
      headers: { 'last-event-id': 'urn:askr:no-such-epoch-12' },
    });
    expect(st.headers['mercure-last-event-id']).toBe('earliest');
    await publishOk(s, { topic: BOOK1, data: 'live' });
    await st.update('live');
  });

  it('without a resume input there is no replay and no Mercure-Last-Event-ID', async () => {
    const s = await hub();
    await history(s);
    const st = await sub(s, [['match', BOOK1]]);
    expect(st.headers['mercure-last-event-id']).toBeUndefined();
    await publishOk(s, { topic: BOOK1, data: 'live' });
    await st.update('live');
    expect(datas(st)).toEqual(['live']);
  });

  it('the Last-Event-ID header wins over the last_event_id query parameter', async () => {
    const s = await hub();
    const ids = await history(s);
    const st = await sub(
      s,
      [
        ['match', BOOK1],
        ['last_event_id', ids['a'] ?? ''],
      ],
      { headers: { 'last-event-id': ids['b'] ?? '' } },
    );
    expect(st.headers['mercure-last-event-id']).toBe(ids['b']);
    await st.update('c');
    expect(datas(st)).toEqual(['c']);
  });

  it('publisher-chosen ids are resume points', async () => {
    const s = await hub();
    for (const v of ['v1', 'v2', 'v3']) {
      await publishOk(s, { topic: BOOK1, data: v, id: `https://example.com/books/1#${v}` });
    }
    const st = await sub(s, [['match', BOOK1]], {
      headers: { 'last-event-id': 'https://example.com/books/1#v1' },
    });
    expect(st.headers['mercure-last-event-id']).toBe('https://example.com/books/1#v1');
    await st.update('v3');
    expect(st.updates().map((f) => f.id)).toEqual([
      'https://example.com/books/1#v2',
      'https://example.com/books/1#v3',
    ]);
  });

  it('replay honours private authorization', async () => {
    const s = await hub();
    await publishOk(s, { topic: BOOK1, data: 'p1' });
    await publishOk(s, { topic: BOOK1, data: 'private 1', private: 'on' });
    await publishOk(s, { topic: BOOK1, data: 'p2' });
    const resume: Fields = [
      ['match', BOOK1],
      ['last_event_id', 'earliest'],
    ];
    const anonymous = await sub(s, resume);
    await anonymous.update('p2');
    expect(datas(anonymous)).toEqual(['p1', 'p2']);
    const other = await sub(s, resume, {
      token: await hubToken(s, [detail(['subscribe'], [BOOK2])]),
    });
    await other.update('p2');
    expect(datas(other)).toEqual(['p1', 'p2']);
    const granted = await sub(s, resume, {
      token: await hubToken(s, [detail(['subscribe'], [BOOK1])]),
    });
    await granted.update('p2');
    expect(datas(granted)).toEqual(['p1', 'private 1', 'p2']);
  });
});

/** Asserts a 401 with a Bearer challenge carrying error="invalid_token". */
function expectInvalidToken(res: {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}): void {
  expect(res.status).toBe(401);
  expect(bearerChallenge(res.headers)).toMatchObject({ error: 'invalid_token' });
}

describe('authorization', () => {
  it('publishing without a token: 401, a Bearer challenge without error, with resource_metadata', async () => {
    const s = await hub();
    const res = await publish(s, { topic: 'orders', data: 'x' });
    expect(res.status).toBe(401);
    const challenge = bearerChallenge(res.headers);
    expect(challenge).not.toBeNull();
    expect(challenge).not.toHaveProperty('error');
    expect(challenge?.['resource_metadata']).toBe(resourceMetadataUrl(s));
  });

  it('anonymous=false: a subscriber without a token gets the same 401 challenge', async () => {
    const s = await hub({ 'mercure.anonymous': false });
    const st = await sub(s, [['match', BOOK1]]);
    expect(st.status).toBe(401);
    const challenge = bearerChallenge(st.headers);
    expect(challenge).not.toBeNull();
    expect(challenge).not.toHaveProperty('error');
    expect(challenge?.['resource_metadata']).toBe(resourceMetadataUrl(s));
    const token = await hubToken(s, [detail(['subscribe'], [BOOK1])]);
    expect((await sub(s, [['match', BOOK1]], { token })).status).toBe(200);
  });

  it('a token without any grant may subscribe (to public updates)', async () => {
    const s = await hub({ 'mercure.anonymous': false });
    const st = await sub(s, [['match', BOOK1]], { token: await hubToken(s, []) });
    expect(st.status).toBe(200);
    await publishOk(s, { topic: BOOK1, data: 'public' });
    await st.update('public');
  });

  const grants = [detail(['publish', 'subscribe'], ['*'])];
  const badTokens: Array<[string, (s: TestSidecar) => Promise<string>]> = [
    ['a bad signature', (s) => hubToken(s, grants, { key: 'another-secret-0123456789abcdefghij' })],
    ['an expired token', (s) => hubToken(s, grants, { exp: nowSeconds() - 120 })],
    ['nbf in the future', (s) => hubToken(s, grants, { nbf: nowSeconds() + 600 })],
    ['typ JWT', (s) => hubToken(s, grants, { typ: 'JWT' })],
    ['no typ', (s) => hubToken(s, grants, { typ: null })],
    ['a wrong iss', (s) => hubToken(s, grants, { iss: 'https://intruder.test' })],
    ['no iss', (s) => hubToken(s, grants, { iss: null })],
    [
      'a wrong aud',
      (s) => hubToken(s, grants, { aud: 'https://other-hub.test/.well-known/mercure' }),
    ],
    ['no aud', (s) => hubToken(s, grants, { aud: null })],
    ['no exp', (s) => hubToken(s, grants, { exp: null })],
    [
      'alg none',
      (s) =>
        Promise.resolve(
          unsignedToken({
            iss: ISSUER,
            aud: hubUrl(s),
            exp: nowSeconds() + 600,
            authorization_details: grants,
          }),
        ),
    ],
    ['not a JWT', () => Promise.resolve('not-a-jwt')],
    [
      'a topic that is not an object',
      (s) => hubToken(s, [{ ...detail(['publish', 'subscribe'], []), topics: ['*'] }]),
    ],
    [
      'an unknown match_type',
      (s) => hubToken(s, [detail(['publish', 'subscribe'], [{ match: '*', match_type: 'regex' }])]),
    ],
    ['empty actions', (s) => hubToken(s, [detail([], ['*'])])],
    ['a non-string action', (s) => hubToken(s, [detail(['subscribe', 1], ['*'])])],
    ['empty topics', (s) => hubToken(s, [detail(['publish', 'subscribe'], [])])],
    [
      'an invalid URL pattern in a grant',
      (s) => hubToken(s, [detail(['publish', 'subscribe'], [urlpattern('/books/(')])]),
    ],
    [
      'one malformed detail beside a valid one',
      (s) => hubToken(s, [...grants, detail(['subscribe'], [{ match: 'x', match_type: 'Exact' }])]),
    ],
  ];

  it.each(badTokens)('401 invalid_token on publish for %s', async (_name, make) => {
    const s = await hub();
    const res = await publish(s, { topic: 'orders', data: 'x' }, { token: await make(s) });
    expectInvalidToken(res);
  });

  it.each(badTokens)(
    '401 invalid_token on subscribe for %s (even with anonymous=true)',
    async (_name, make) => {
      const s = await hub();
      const st = await sub(s, [['match', 'orders']], { token: await make(s) });
      expectInvalidToken(st);
    },
  );

  it('typ application/at+jwt, an aud array and a configured audience are accepted', async () => {
    const s = await hub({ 'mercure.audience': 'https://hub.example/.well-known/mercure' });
    const ok = await mintToken({
      key: SECRET,
      iss: ISSUER,
      aud: ['https://someone-else.test', 'https://hub.example/.well-known/mercure'],
      typ: 'application/at+jwt',
      details: grants,
    });
    expect((await publish(s, { topic: 'orders', data: 'x' }, { token: ok })).status).toBe(200);
    // With an audience configured, the hub URL as requested is no longer the audience.
    const requestUrl = await hubToken(s, grants);
    expectInvalidToken(await publish(s, { topic: 'orders', data: 'x' }, { token: requestUrl }));
  });

  it('jwt_algorithms restricts the accepted algorithms', async () => {
    const s = await hub({ 'mercure.jwt_algorithms': ['HS512'] });
    const hs256 = await hubToken(s, grants);
    expectInvalidToken(await publish(s, { topic: 'orders', data: 'x' }, { token: hs256 }));
    const hs512 = await hubToken(s, grants, { alg: 'HS512' });
    expect((await publish(s, { topic: 'orders', data: 'x' }, { token: hs512 })).status).toBe(200);
  });

  it.each<[string, unknown[], Fields]>([
    ['a subscribe-only token', [detail(['subscribe'], ['*'])], { topic: 'orders' }],
    ['a publish grant on another topic', [detail(['publish'], ['invoices'])], { topic: 'orders' }],
    ['no grant at all', [], { topic: 'orders' }],
    [
      'a grant on the canonical topic but not the alternate',
      [detail(['publish'], ['orders'])],
      { topic: ['orders', 'invoices'] },
    ],
    ['an unknown action only', [detail(['admin'], ['*'])], { topic: 'orders' }],
  ])(
    '403 insufficient_scope on publish for %s, and nothing is delivered',
    async (_name, details, fields) => {
      const s = await hub();
      const st = await sub(s, [['match', '*']]);
      const res = await publish(
        s,
        { ...(fields as Record<string, string | string[]>), data: 'refused' },
        { token: await hubToken(s, details) },
      );
      expect(res.status).toBe(403);
      expect(bearerChallenge(res.headers)).toMatchObject({ error: 'insufficient_scope' });
      await publishOk(s, { topic: 'orders', data: 'after' });
      await st.update('after');
      expect(datas(st)).toEqual(['after']);
    },
  );

  it('a publish grant as a URL pattern covers the matching topics only', async () => {
    const s = await hub();
    const token = await hubToken(s, [
      detail(['publish'], [urlpattern('https://example.com/books/:id')]),
    ]);
    expect((await publish(s, { topic: BOOK1, data: 'x' }, { token })).status).toBe(200);
    expect(
      (await publish(s, { topic: 'https://example.com/users/1', data: 'x' }, { token })).status,
    ).toBe(403);
  });

  /** A raw request with exactly these header lines (undici sends an array value as repeated lines). */
  async function raw(
    s: TestSidecar,
    method: 'GET' | 'POST',
    headers: Record<string, string | string[]>,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
    const res = await request(
      method === 'GET' ? `${hubUrl(s)}?match=orders` : hubUrl(s),
      method === 'GET'
        ? { headers }
        : {
            method,
            headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
            body: 'topic=orders&data=x',
          },
    );
    // A stream accepted by mistake never ends: drop it rather than wait for its end.
    if (res.statusCode === 200 && method === 'GET') res.body.destroy();
    else await res.body.dump();
    return { status: res.statusCode, headers: res.headers };
  }

  it.each<['GET' | 'POST']>([['GET'], ['POST']])(
    '400 invalid_request for a malformed presentation (%s)',
    async (method) => {
      const s = await hub({ 'mercure.max_token_size': '1KiB' });
      const token = await publisherToken(s);
      const cases: Array<Record<string, string | string[]>> = [
        { authorization: 'Bearer' },
        { authorization: 'Bearer ' },
        { authorization: [`Bearer ${token}`, `Bearer ${token}`] },
        { authorization: `Bearer ${'a'.repeat(2048)}` },
      ];
      for (const headers of cases) {
        const res = await raw(s, method, headers);
        expect(res.status, JSON.stringify(headers).slice(0, 80)).toBe(400);
        expect(bearerChallenge(res.headers)).toMatchObject({ error: 'invalid_request' });
      }
    },
  );

  it('the Bearer scheme name is case-insensitive', async () => {
    const s = await hub();
    const res = await request(hubUrl(s), {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `bearer ${await publisherToken(s)}`,
      },
      body: 'topic=orders&data=x',
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  });

  it('a token in the cookie named cookie_name is used', async () => {
    const s = await hub({ 'mercure.anonymous': false });
    const token = await hubToken(s, [detail(['subscribe'], [BOOK1])]);
    const st = await sub(s, [['match', BOOK1]], {
      cookie: `other=1; __Secure-mercure_access_token=${token}`,
    });
    expect(st.status).toBe(200);
    await publishOk(s, { topic: BOOK1, data: 'secret', private: 'on' });
    await st.update('secret');
    const renamed = await hub({ 'mercure.anonymous': false, 'mercure.cookie_name': 'hub_token' });
    const t2 = await hubToken(renamed, [detail(['subscribe'], [BOOK1])]);
    expect((await sub(renamed, [['match', BOOK1]], { cookie: `hub_token=${t2}` })).status).toBe(
      200,
    );
    expect(
      (await sub(renamed, [['match', BOOK1]], { cookie: `__Secure-mercure_access_token=${t2}` }))
        .status,
    ).toBe(401);
  });

  it('the Authorization header wins over the cookie', async () => {
    const s = await hub({ 'mercure.anonymous': false });
    const granted = await hubToken(s, [detail(['subscribe'], [BOOK1])]);
    const invalid = await hubToken(s, [], { key: 'another-secret-0123456789abcdefghij' });
    // An invalid header token is not rescued by a valid cookie.
    const refused = await sub(s, [['match', BOOK1]], {
      token: invalid,
      cookie: `__Secure-mercure_access_token=${granted}`,
    });
    expectInvalidToken(refused);
    // A valid header token is used even when the cookie is invalid, and grants only its own rights.
    const st = await sub(s, [['match', BOOK1]], {
      token: await hubToken(s, []),
      cookie: `__Secure-mercure_access_token=${granted}`,
    });
    expect(st.status).toBe(200);
    const withBadCookie = await sub(s, [['match', BOOK1]], {
      token: granted,
      cookie: `__Secure-mercure_access_token=${invalid}`,
    });
    expect(withBadCookie.status).toBe(200);
    await publishOk(s, { topic: BOOK1, data: 'secret', private: 'on' });
    await publishOk(s, { topic: BOOK1, data: 'public' });
    await st.update('public');
    expect(datas(st)).toEqual(['public']);
    await withBadCookie.update('public');
    expect(datas(withBadCookie)).toEqual(['secret', 'public']);
  });

  it("a subscriber's stream is closed at its token's exp", async () => {
    const s = await hub({ 'sse.heartbeat_interval': '500ms' });
    const token = await hubToken(s, [detail(['subscribe'], [BOOK1])], { exp: nowSeconds() + 3 });
    const st = await sub(s, [['match', BOOK1]], { token });
    expect(st.status).toBe(200);
    const lasting = await sub(s, [['match', BOOK1]], {
      token: await hubToken(s, [detail(['subscribe'], [BOOK1])]),
    });
    await endsWithin(st, 20_000);
    // The stream ended on its own (not through close()); the other one is still served.
    await publishOk(s, { topic: BOOK1, data: 'after exp' });
    await lasting.update('after exp');
    expect(datas(st)).not.toContain('after exp');
  });

  it.each<['RS256' | 'ES256']>([['RS256'], ['ES256']])(
    '%s: a PEM public key verifies tokens signed with its private key',
    async (alg) => {
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
      const pem = await exportSPKI(publicKey);
      const s = await hub({ 'mercure.jwt_key': pem });
      const sign = (details: unknown[], key: CryptoKey | string = privateKey, a: string = alg) =>
        mintToken({ key, alg: a, iss: ISSUER, aud: hubUrl(s), details });
      const st = await sub(s, [['match', BOOK1]], {
        token: await sign([detail(['subscribe'], [BOOK1])]),
      });
      expect(st.status).toBe(200);
      const res = await publish(
        s,
        { topic: BOOK1, data: `signed with ${alg}`, private: 'on' },
        { token: await sign([detail(['publish'], ['*'])]) },
      );
      expect(res.status).toBe(200);
      await st.update(`signed with ${alg}`);
      // Algorithm confusion: an HMAC token keyed with the public key's PEM text is refused.
      const confused = await sign([detail(['publish'], ['*'])], pem, 'HS256');
      expectInvalidToken(await publish(s, { topic: BOOK1, data: 'x' }, { token: confused }));
      // A key pair the hub does not know is refused.
      const stranger = await generateKeyPair(alg);
      const foreign = await sign([detail(['publish'], ['*'])], stranger.privateKey);
      expectInvalidToken(await publish(s, { topic: BOOK1, data: 'x' }, { token: foreign }));
    },
  );

  it('publisher_jwt_key and subscriber_jwt_key each verify their own role', async () => {
    const pubKey = 'publisher-secret-0123456789abcdefghijkl';
    const subKey = 'subscriber-secret-0123456789abcdefghijk';
    const s = await hub({
      'mercure.jwt_key': '',
      'mercure.publisher_jwt_key': pubKey,
      'mercure.subscriber_jwt_key': subKey,
    });
    const all = [detail(['publish', 'subscribe'], ['*'])];
    const byPublisherKey = await hubToken(s, all, { key: pubKey });
    const bySubscriberKey = await hubToken(s, all, { key: subKey });
    expect((await publish(s, { topic: 'orders' }, { token: byPublisherKey })).status).toBe(200);
    expectInvalidToken(await publish(s, { topic: 'orders' }, { token: bySubscriberKey }));
    expect((await sub(s, [['match', 'orders']], { token: bySubscriberKey })).status).toBe(200);
    expectInvalidToken(await sub(s, [['match', 'orders']], { token: byPublisherKey }));
  });
});

describe('active subscriptions', () => {
  const SUBS = `${HUB_PATH}/subscriptions`;
  const enc = encodeURIComponent;
  interface SubscriptionDoc {
    id: string;
    type: string;
    match_type: string;
    match: string;
    subscriber: string;
    active: boolean;
    payload?: unknown;
  }

  /** A subscriber to BOOK1 and BOOK2 whose token has a payload for BOOK1 and a default one. */
  async function payloadSubscriber(s: TestSidecar): Promise<MercureStream> {
    const token = await hubToken(s, [
      detail(['subscribe'], [BOOK1], { shelf: 'first' }),
      detail(['subscribe'], ['*'], { shelf: 'default' }),
    ]);
    return sub(
      s,
      [
        ['match', BOOK1],
        ['match_urlpattern', 'https://example.com/books/:id'],
      ],
      { token },
    );
  }

  it('subscribe and unsubscribe publish private event: mercure updates with the subscription document', async () => {
    const s = await hub({ 'mercure.subscriptions': true });
    const observerToken = await hubToken(s, [detail(['subscribe'], [urlpattern(`${SUBS}/*`)])]);
    const observer = await sub(s, [['match_urlpattern', `${SUBS}/:type/:match/:subscriber`]], {
      token: observerToken,
    });
    // Subscription events are private: an anonymous subscriber to the same pattern gets none.
    const anonymous = await sub(s, [
      ['match_urlpattern', `${SUBS}/:type/:match/:subscriber`],
      ['match', 'marker'],
    ]);
    const subscriber = await payloadSubscriber(s);

    const docs = (): SubscriptionDoc[] =>
      observer
        .updates()
        .filter((f) => f.event === 'mercure')
        .map((f) => JSON.parse(f.data ?? '{}') as SubscriptionDoc)
        .filter((d) => d.match === BOOK1 || d.match === 'https://example.com/books/:id');
    await observer.waitFor(() => docs().filter((d) => d.active).length === 2);
    const started = docs();
    const exact = started.find((d) => d.match_type === 'exact');
    const pattern = started.find((d) => d.match_type === 'urlpattern');
    expect(exact?.subscriber).toMatch(/^urn:uuid:[0-9a-f-]{36}$/);
    expect(pattern?.subscriber).toBe(exact?.subscriber);
    const subscriberId = exact?.subscriber ?? '';
    expect(exact).toEqual({
      id: `${SUBS}/exact/${enc(BOOK1)}/${enc(subscriberId)}`,
      type: 'subscription',
      match_type: 'exact',
      match: BOOK1,
      subscriber: subscriberId,
      active: true,
      payload: { shelf: 'first' },
    });
    expect(pattern).toEqual({
      id: `${SUBS}/urlpattern/${enc('https://example.com/books/:id')}/${enc(subscriberId)}`,
      type: 'subscription',
      match_type: 'urlpattern',
      match: 'https://example.com/books/:id',
      subscriber: subscriberId,
      active: true,
      payload: { shelf: 'default' },
    });

    subscriber.close();
    await observer.waitFor(() => docs().filter((d) => !d.active).length === 2);
    const ended = docs().filter((d) => !d.active);
    expect(ended.map((d) => d.id).sort()).toEqual([exact?.id, pattern?.id].sort());
    expect(ended.find((d) => d.match_type === 'exact')).toEqual({ ...exact, active: false });

    await publishOk(s, { topic: 'marker', data: 'marker' });
    await anonymous.update('marker');
    expect(anonymous.updates().filter((f) => f.event === 'mercure')).toEqual([]);
  });

  it('the subscriptions API: collection, per-matcher collection, single subscription, 404, Link', async () => {
    const s = await hub({ 'mercure.subscriptions': true });
    const subscriber = await payloadSubscriber(s);
    expect(subscriber.status).toBe(200);
    const cursor = await publishOk(s, { topic: 'orders', data: 'x' });
    const auth = {
      authorization: `Bearer ${await hubToken(s, [
        detail(['subscribe'], [urlpattern(`${SUBS}{/*}?`)]),
      ])}`,
    };
    const expectLink = (headers: Record<string, string | string[] | undefined>): void => {
      const link = [headers['link'] ?? []].flat().join(', ');
      expect(link).toContain(`<${hubUrl(s)}>`);
      expect(link).toContain('rel="mercure"');
      expect(link).toContain(`last-event-id="${cursor}"`);
      expect(link).toContain('type="mercure"');
      expect(link).toContain('content-type="application/json"');
    };

    const all = await get(s, SUBS, auth);
    expect(all.status).toBe(200);
    expect(all.headers['content-type']).toMatch(/^application\/json\b/);
    expectLink(all.headers);
    const collection = JSON.parse(all.body) as {
      id: string;
      type: string;
      subscriptions: SubscriptionDoc[];
    };
    expect(collection.id).toBe(SUBS);
    expect(collection.type).toBe('subscriptions');
    const mine = collection.subscriptions.filter((d) => d.match === BOOK1);
    expect(mine).toHaveLength(1);
    const doc = mine[0];
    const subscriberId = doc?.subscriber ?? '';
    expect(doc).toEqual({
      id: `${SUBS}/exact/${enc(BOOK1)}/${enc(subscriberId)}`,
      type: 'subscription',
      match_type: 'exact',
      match: BOOK1,
      subscriber: subscriberId,
      active: true,
      payload: { shelf: 'first' },
    });
    expect(collection.subscriptions.some((d) => d.match_type === 'urlpattern')).toBe(true);

    const perMatcherPath = `${SUBS}/exact/${enc(BOOK1)}`;
    const perMatcher = await get(s, perMatcherPath, auth);
    expect(perMatcher.status).toBe(200);
    expect(perMatcher.headers['content-type']).toMatch(/^application\/json\b/);
    expectLink(perMatcher.headers);
    expect(JSON.parse(perMatcher.body)).toEqual({
      id: perMatcherPath,
      type: 'subscriptions',
      subscriptions: [doc],
    });

    const single = await get(s, doc?.id ?? '', auth);
    expect(single.status).toBe(200);
    expect(single.headers['content-type']).toMatch(/^application\/json\b/);
    expectLink(single.headers);
    expect(JSON.parse(single.body)).toEqual(doc);

    const unknown = await get(
      s,
      `${perMatcherPath}/${enc('urn:uuid:00000000-0000-4000-8000-000000000000')}`,
      auth,
    );
    expect(unknown.status).toBe(404);
  });

  it('the subscriptions API Link: last-event-id is earliest, then the id of the last update', async () => {
    const s = await hub({ 'mercure.subscriptions': true });
    const auth = {
      authorization: `Bearer ${await hubToken(s, [detail(['subscribe'], ['*'])])}`,
    };
    const cursorOf = async (): Promise<string | undefined> => {
      const res = await get(s, SUBS, auth);
      expect(res.status).toBe(200);
      return /last-event-id="([^"]*)"/.exec([res.headers['link'] ?? []].flat().join(', '))?.[1];
    };
    expect(await cursorOf()).toBe('earliest');
    const generated = await publishOk(s, { topic: 'orders', data: 'a' });
    expect(await cursorOf()).toBe(generated);
    // The cursor is the update's identifier: the id subscribers receive and the publisher got back.
    const chosen = await publishOk(s, { topic: 'orders', data: 'b', id: 'urn:example:cursor' });
    expect(chosen).toBe('urn:example:cursor');
    expect(await cursorOf()).toBe('urn:example:cursor');
  });

  it('the subscriptions API needs a token granting subscribe on its path', async () => {
    const s = await hub({ 'mercure.subscriptions': true });
    const none = await get(s, SUBS);
    expect(none.status).toBe(401);
    expect(bearerChallenge(none.headers)).not.toHaveProperty('error');
    for (const details of [
      [detail(['subscribe'], [BOOK1])],
      [detail(['publish'], ['*'])],
      [detail(['subscribe'], [urlpattern(`${SUBS}/exact/*`)])],
    ]) {
      const res = await get(s, SUBS, {
        authorization: `Bearer ${await hubToken(s, details)}`,
      });
      expect(res.status).toBe(403);
      expect(bearerChallenge(res.headers)).toMatchObject({ error: 'insufficient_scope' });
    }
    const wildcard = await get(s, SUBS, {
      authorization: `Bearer ${await hubToken(s, [detail(['subscribe'], ['*'])])}`,
    });
    expect(wildcard.status).toBe(200);
    const exactPath = await get(s, SUBS, {
      authorization: `Bearer ${await hubToken(s, [detail(['subscribe'], [SUBS])])}`,
    });
    expect(exactPath.status).toBe(200);
  });

  it('no subscription events and no API when subscriptions=false', async () => {
    const s = await hub();
    const token = await hubToken(s, [detail(['subscribe'], ['*'])]);
    const observer = await sub(s, [['match', '*']], { token });
    const other = await sub(s, [['match', BOOK1]]);
    expect(other.status).toBe(200);
    other.close();
    await publishOk(s, { topic: 'orders', data: 'after' });
    await observer.update('after');
    expect(observer.updates().filter((f) => f.event === 'mercure')).toEqual([]);
    const api = await get(s, SUBS, { authorization: `Bearer ${token}` });
    expect(api.status).toBe(404);
  });
});

describe('discovery, metadata and CORS', () => {
  it('serves the protected resource metadata document', async () => {
    const s = await hub({ 'mercure.subscriptions': true, 'mercure.cookie_name': 'hub_token' });
    const res = await request(resourceMetadataUrl(s));
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json\b/);
    expect(await res.body.json()).toMatchObject({
      resource: hubUrl(s),
      bearer_methods_supported: ['header'],
      authorization_details_types_supported: ['https://mercure.rocks/authorization-detail'],
      mercure_cookie: 'hub_token',
      mercure_subscriptions: true,
    });
    const plain = await startTestSidecar({
      ...MERCURE_BASE,
      'mercure.audience': 'https://hub.example/.well-known/mercure',
    });
    cleanups.push(() => plain.close());
    const doc = (await (await request(resourceMetadataUrl(plain))).body.json()) as Record<
      string,
      unknown
    >;
    expect(doc['resource']).toBe('https://hub.example/.well-known/mercure');
    expect(doc['mercure_subscriptions']).not.toBe(true);
  });

  it('CORS: a listed origin is reflected with credentials, others are not, preflight answered', async () => {
    const s = await hub({ 'mercure.cors_origins': ['https://app.example'] });
    const listed = await sub(s, [['match', BOOK1]], { headers: { origin: 'https://app.example' } });
    expect(listed.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(listed.headers['access-control-allow-credentials']).toBe('true');
    const other = await sub(s, [['match', BOOK1]], { headers: { origin: 'https://evil.example' } });
    expect(other.status).toBe(200);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    expect(other.headers['access-control-allow-credentials']).toBeUndefined();

    const preflight = await request(`${hubUrl(s)}?match=x`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization, last-event-id',
      },
    });
    await preflight.body.dump();
    expect([200, 204]).toContain(preflight.statusCode);
    expect(preflight.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(preflight.headers['access-control-allow-credentials']).toBe('true');
    expect(String(preflight.headers['access-control-allow-methods'])).toMatch(/\bGET\b/);
    const allowed = String(preflight.headers['access-control-allow-headers']).toLowerCase();
    expect(allowed).toContain('authorization');
    expect(allowed).toContain('last-event-id');
  });

  it('discovery: PHP responses carry Link: <path>; rel="mercure" when discovery is on', async () => {
    const on = await hub({ 'mercure.discovery': true });
    const page = await get(on, '/status/200');
    expect(page.status).toBe(200);
    const link = [page.headers['link'] ?? []].flat().join(', ');
    expect(link).toMatch(/<\/\.well-known\/mercure>;\s*rel="?mercure"?/);
    const off = await hub();
    const plain = await get(off, '/status/200');
    expect([plain.headers['link'] ?? []].flat().join(', ')).not.toContain('rel="mercure"');
  });

  it('the hub is off unless enabled', async () => {
    const s = await startTestSidecar({});
    cleanups.push(() => s.close());
    const res = await get(s, `${HUB_PATH}?match=x`);
    expect(res.headers['content-type'] ?? '').not.toMatch(/event-stream/);
  });

  it('mercure.path moves the hub, its reserved namespace and its metadata', async () => {
    const s = await hub({ 'mercure.path': '/hub' });
    const st = await sub(s, [['match', BOOK1]], { path: '/hub' });
    expect(st.status).toBe(200);
    const token = await hubToken(s, [detail(['publish'], ['*'])], { aud: hubUrl(s, '/hub') });
    const res = await publish(s, { topic: BOOK1, data: 'via /hub' }, { token, path: '/hub' });
    expect(res.status).toBe(200);
    await st.update('via /hub');
    expect((await publish(s, { topic: '/hub/x' }, { token, path: '/hub' })).status).toBe(400);
    const meta = await request(resourceMetadataUrl(s, '/hub'));
    expect(meta.statusCode).toBe(200);
    expect(await meta.body.json()).toMatchObject({ resource: hubUrl(s, '/hub') });
  });
});
