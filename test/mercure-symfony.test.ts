/**
 * Symfony's Mercure component (Debian's php-symfony-mercure 0.6: Hub + Update over Symfony
 * HttpClient, run by fixtures-php/mercure/publish.php in PHP CLI) publishing to the sidecar's hub,
 * as a Symfony app would. What it sends (captured from the library): `POST <hub>`,
 * `Authorization: Bearer <jwt>`, `Content-Type: application/x-www-form-urlencoded`, body
 * `topic=<t1>&topic=<t2>&data=<d>&private=on&id=<id>&type=<type>&retry=<ms>` (PHP urlencode: space
 * as `+`; `topic` repeated; `data=` always, even empty; `private`, `id`, `type`, `retry` only when
 * set), and the reply body is returned as the id. A regression looks like: Symfony's publish
 * failing ("Failed to send an update."), an update missing or delivered to a subscriber without
 * the grant, the id Symfony returns differing from the one subscribers see, or a 0.x token
 * accepted with compatibility off.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  MERCURE_BASE,
  SECRET,
  bearerChallenge,
  datas,
  detail,
  hubToken,
  hubUrl,
  mintToken,
  publish,
  publisherToken,
  subscribe as hubSubscribe,
  urlpattern,
  type Fields,
  type MercureStream,
} from './helpers/mercure.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

const run = promisify(execFile);
const PUBLISH = fileURLToPath(new URL('../fixtures-php/mercure/publish.php', import.meta.url));
/** Ids the hub generates (contract: `urn:askr:<epoch>-<seq>`). */
const GENERATED_ID = /^urn:askr:[\w.-]+-\d+$/;

/** The update publish.php gives to Symfony's `new Update(...)`. */
interface SymfonyUpdate {
  topics: string[];
  data?: string;
  private?: boolean;
  id?: string;
  type?: string;
  retry?: number;
}

/** A Mercure 0.x token: the `mercure` claim only, no typ, aud, exp or iss (as 0.x apps mint). */
function token0x(mercureClaim: unknown): Promise<string> {
  return mintToken({ key: SECRET, typ: 'JWT', exp: null, mercureClaim });
}

/** Publishes with Symfony's Hub; resolves the id it returned (the hub's reply body). */
async function symfonyPublish(hub: string, jwt: string, update: SymfonyUpdate): Promise<string> {
  const { stdout } = await run('php', [PUBLISH, hub, jwt, JSON.stringify(update)]);
  return stdout;
}

/** Publishes with Symfony's Hub, which must fail; resolves its exit code and the exception chain. */
async function symfonyPublishFails(
  hub: string,
  jwt: string,
  update: SymfonyUpdate,
): Promise<{ code: unknown; stderr: string }> {
  let stdout: string;
  try {
    ({ stdout } = await run('php', [PUBLISH, hub, jwt, JSON.stringify(update)]));
  } catch (err) {
    const e = err as { code?: unknown; stderr?: string };
    if (e.stderr === undefined) throw err;
    return { code: e.code, stderr: e.stderr };
  }
  throw new Error(`Symfony's publish succeeded (id ${stdout}) but should have failed`);
}

const streams: MercureStream[] = [];

/** A subscription the hub counts already; closed after the test. */
async function subscribe(s: TestSidecar, query: Fields, token?: string): Promise<MercureStream> {
  const st = await hubSubscribe(s, query, token === undefined ? {} : { token });
  streams.push(st);
  expect(st.status, st.body).toBe(200);
  return st;
}

afterEach(() => {
  for (const st of streams.splice(0)) st.close();
});

describe('Symfony Mercure 0.6 publishing to a Mercure 1.0 hub', () => {
  let s: TestSidecar | undefined;
  let hub = '';
  let publisher = '';

  beforeAll(async () => {
    s = await startTestSidecar({ ...MERCURE_BASE, 'log.access_log': false });
    // The default audience is the hub URL as requested; Symfony sends Host 127.0.0.1:PORT.
    hub = hubUrl(s);
    publisher = await publisherToken(s);
  });
  afterAll(async () => {
    await s?.close();
  });

  function sidecar(): TestSidecar {
    if (s === undefined) throw new Error('the sidecar did not start');
    return s;
  }

  it('a public update reaches an anonymous subscriber, with the id Symfony returned', async () => {
    const topic = 'https://example.com/books/1';
    const st = await subscribe(sidecar(), { match: topic });
    const id = await symfonyPublish(hub, publisher, {
      topics: [topic],
      data: '{"title": "Dune"}',
    });
    expect(id).toMatch(GENERATED_ID);
    const got = await st.update('{"title": "Dune"}');
    expect(got.id).toBe(id);
    expect(got.event).toBeUndefined();
  });

  it('form encoding round-trips: spaces as "+", "&", "=", "%", "+" itself, newlines and UTF-8', async () => {
    const topic = 'https://example.com/books/a b&c=d+e';
    const data = 'a b&c=d+e%20f\nsecond line é 🚀\n\nafter an empty line';
    const st = await subscribe(sidecar(), { match: topic });
    const id = await symfonyPublish(hub, publisher, { topics: [topic], data });
    expect((await st.update(data)).id).toBe(id);
  });

  it('an update without data (Symfony sends "data=") keeps its data line', async () => {
    // An event without any data line is never dispatched by EventSource (HTML, "dispatch the
    // event": empty data buffer): a bare "something changed" update must still carry `data:`.
    const topic = 'https://example.com/books/empty';
    const st = await subscribe(sidecar(), { match: topic });
    const id = await symfonyPublish(hub, publisher, { topics: [topic], type: 'touched' });
    const got = await st.waitFor((f) => f.event === 'touched');
    expect(got).toMatchObject({ id, data: '' });
  });

  it('an update with several topics reaches the subscribers of each, once', async () => {
    const topics = ['https://example.com/books/2', 'https://example.com/authors/7', 'orders'];
    const subscribers = [
      await subscribe(sidecar(), { match: 'https://example.com/authors/7' }),
      await subscribe(sidecar(), { match_urlpattern: 'https://example.com/books/:id' }),
      await subscribe(sidecar(), { match: 'orders' }),
      await subscribe(sidecar(), { match: topics }),
    ];
    const id = await symfonyPublish(hub, publisher, { topics, data: 'multi' });
    // A second update on the same topics: anything delivered twice would have come before it.
    const end = await symfonyPublish(hub, publisher, { topics, data: 'end' });
    for (const st of subscribers) {
      await st.update('end');
      expect(st.updates().map((f) => [f.id, f.data])).toEqual([
        [id, 'multi'],
        [end, 'end'],
      ]);
    }
  });

  it('a private update reaches only the subscribers whose token grants one of its topics', async () => {
    const topic = 'https://example.com/users/42/inbox';
    const alternate = 'https://example.com/mailboxes/42';
    const grant = (topics: unknown[]): Promise<string> =>
      hubToken(sidecar(), [detail(['subscribe'], topics)]);
    const granted = await subscribe(
      sidecar(),
      { match: topic },
      await grant([urlpattern('https://example.com/users/42/*')]),
    );
    // Granted on the alternate topic only: private-read is evaluated on the set of topics.
    const viaAlternate = await subscribe(sidecar(), { match: topic }, await grant([alternate]));
    const otherGrant = await subscribe(
      sidecar(),
      { match: topic },
      await grant(['https://example.com/users/7/inbox']),
    );
    const anonymous = await subscribe(sidecar(), { match: topic });

    const secret = await symfonyPublish(hub, publisher, {
      topics: [topic, alternate],
      data: 'secret',
      private: true,
    });
    await symfonyPublish(hub, publisher, { topics: [topic], data: 'public' });

    for (const st of [granted, viaAlternate]) {
      await st.update('public');
      expect(datas(st)).toEqual(['secret', 'public']);
      expect(st.updates()[0]?.id).toBe(secret);
    }
    for (const st of [otherGrant, anonymous]) {
      await st.update('public');
      expect(datas(st)).toEqual(['public']);
    }
  });

  it('a custom id is honoured (Symfony returns it) and type and retry reach the stream', async () => {
    const topic = 'https://example.com/books/3';
    const st = await subscribe(sidecar(), { match: topic });
    const custom = `urn:uuid:${randomUUID()}`;
    const id = await symfonyPublish(hub, publisher, {
      topics: [topic],
      data: 'typed',
      id: custom,
      type: 'book.updated',
      retry: 1234,
    });
    expect(id).toBe(custom);
    expect(await st.update('typed')).toEqual({
      id: custom,
      event: 'book.updated',
      retry: 1234,
      data: 'typed',
      comments: [],
    });
  });

  it('a subscriber resumes after an id Symfony returned (Last-Event-ID)', async () => {
    const topic = 'https://example.com/books/4';
    const first = await symfonyPublish(hub, publisher, { topics: [topic], data: 'one' });
    await symfonyPublish(hub, publisher, { topics: [topic], data: 'two' });
    const st = await hubSubscribe(
      sidecar(),
      { match: topic },
      { headers: { 'last-event-id': first } },
    );
    streams.push(st);
    expect(st.status).toBe(200);
    expect(st.headers['mercure-last-event-id']).toBe(first);
    await st.update('two');
    expect(datas(st)).toEqual(['two']);
  });

  it('refuses a 0.x token with compatibility off: Symfony reports the 401 as "Failed to send an update."', async () => {
    const topic = 'https://example.com/books/5';
    const st = await subscribe(sidecar(), { match: topic });
    const legacy = await token0x({ publish: ['*'] });
    const failed = await symfonyPublishFails(hub, legacy, { topics: [topic], data: 'legacy' });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toBe(
      'Symfony\\Component\\Mercure\\Exception\\RuntimeException: Failed to send an update.\n' +
        `Symfony\\Component\\HttpClient\\Exception\\ClientException: HTTP/1.1 401 Unauthorized returned for "${hub}".\n`,
    );
    // Symfony hides the challenge; the same request over HTTP shows it is an invalid token.
    const res = await publish(sidecar(), { topic, data: 'legacy' }, { token: legacy });
    expect(res.status).toBe(401);
    expect(bearerChallenge(res.headers)?.['error']).toBe('invalid_token');

    // A valid token without the grant for this topic: 403, reported the same way.
    const narrow = await hubToken(sidecar(), [detail(['publish'], ['https://example.com/other'])]);
    const forbidden = await symfonyPublishFails(hub, narrow, { topics: [topic], data: 'narrow' });
    expect(forbidden.stderr).toContain(
      `ClientException: HTTP/1.1 403 Forbidden returned for "${hub}".`,
    );

    // Nothing of the refused publishes reached the subscriber.
    await symfonyPublish(hub, publisher, { topics: [topic], data: 'accepted' });
    await st.update('accepted');
    expect(datas(st)).toEqual(['accepted']);
  });
});

describe('Symfony Mercure 0.6 with a 0.x token, compatibility on', () => {
  let s: TestSidecar | undefined;
  let hub = '';

  beforeAll(async () => {
    s = await startTestSidecar({
      ...MERCURE_BASE,
      'mercure.compatibility': true,
      'log.access_log': false,
    });
    hub = hubUrl(s);
  });
  afterAll(async () => {
    await s?.close();
  });

  function sidecar(): TestSidecar {
    if (s === undefined) throw new Error('the sidecar did not start');
    return s;
  }

  it('a publish with `mercure: {publish: ["*"]}` reaches 0.x (topic=) and 1.0 (match=) subscribers', async () => {
    const topic = 'https://example.com/books/10';
    const legacy = await subscribe(sidecar(), { topic: 'https://example.com/books/{id}' });
    const modern = await subscribe(sidecar(), { match: topic });
    const id = await symfonyPublish(hub, await token0x({ publish: ['*'] }), {
      topics: [topic],
      data: 'from 0.x',
      type: 'book',
    });
    expect(id).toMatch(GENERATED_ID);
    for (const st of [legacy, modern]) {
      expect(await st.update('from 0.x')).toMatchObject({ id, event: 'book' });
    }
  });

  it('a private update reaches a 0.x subscriber whose `mercure.subscribe` URI template covers it', async () => {
    const topic = 'https://example.com/books/11';
    const template = 'https://example.com/books/{id}';
    const publisher = await token0x({ publish: [template] });
    const granted = await subscribe(sidecar(), { topic }, await token0x({ subscribe: [template] }));
    const anonymous = await subscribe(sidecar(), { topic });
    await symfonyPublish(hub, publisher, { topics: [topic], data: 'private', private: true });
    await symfonyPublish(hub, publisher, { topics: [topic], data: 'public' });
    await granted.update('public');
    await anonymous.update('public');
    expect(datas(granted)).toEqual(['private', 'public']);
    expect(datas(anonymous)).toEqual(['public']);
  });
});
