/**
 * Mercure 0.x compatibility (mercure.compatibility = true, issue 11): `topic=` selectors (strings,
 * `*`, URI Templates), the `mercure` and "https://mercure.rocks/" token claims without
 * typ/aud/exp/iss, the mercureAuthorization cookie, the `authorization` and `lastEventID` query
 * parameters and 0.x subscription events; then the same inputs refused with compatibility off.
 * "Not delivered" is asserted by a later update the subscriber must receive (delivery is in order).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type TestSidecar } from './helpers/sidecar.ts';
import { runCleanups, type Cleanups } from './helpers/wait.ts';
import {
  HUB_PATH,
  MERCURE_BASE,
  SECRET,
  bearerChallenge,
  datas,
  detail,
  hubToken,
  mintToken,
  nowSeconds,
  publish,
  publishOk,
  type MintOptions,
  mercureHarness,
} from './helpers/mercure.ts';

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

const COMPAT = { ...MERCURE_BASE, 'mercure.compatibility': true };

const { hub, sub } = mercureHarness(cleanups, COMPAT);

/** A 0.x token: the `mercure` claim, no typ, aud, exp or iss. */
function legacyToken(claim: unknown, overrides: Partial<MintOptions> = {}): Promise<string> {
  return mintToken({
    key: SECRET,
    typ: null,
    iss: null,
    aud: null,
    exp: null,
    mercureClaim: claim,
    ...overrides,
  });
}

const BOOK1 = 'https://example.com/books/1';
const BOOKS = 'https://example.com/books/{id}';

describe('compatibility on: 0.x clients', () => {
  it('topic= with a string is an exact, case-sensitive selector', async () => {
    const s = await hub();
    const st = await sub(s, { topic: 'orders' });
    expect(st.status).toBe(200);
    await publishOk(s, { topic: 'Orders', data: 'other case' });
    await publishOk(s, { topic: 'orders', data: 'same' });
    await st.update('same');
    expect(datas(st)).toEqual(['same']);
  });

  it('topic= with a URI Template matches the topics it expands to', async () => {
    const s = await hub();
    const st = await sub(s, { topic: BOOKS });
    await publishOk(s, { topic: BOOK1, data: 'book 1' });
    await publishOk(s, { topic: 'https://example.com/users/1', data: 'user' });
    await publishOk(s, { topic: 'https://example.com/books/2', data: 'book 2' });
    await st.update('book 2');
    expect(datas(st)).toEqual(['book 1', 'book 2']);
  });

  it('topic=* receives every topic', async () => {
    const s = await hub();
    const st = await sub(s, { topic: '*' });
    await publishOk(s, { topic: 'orders', data: 'a' });
    await publishOk(s, { topic: BOOK1, data: 'b' });
    await st.update('b');
    expect(datas(st)).toEqual(['a', 'b']);
  });

  it('1.0 clients keep working, and topic= and match= mix in one request', async () => {
    const s = await hub();
    const st = await sub(s, [
      ['topic', 'orders'],
      ['match_urlpattern', 'https://example.com/books/:id'],
    ]);
    await publishOk(s, { topic: 'orders', data: 'via topic' });
    await publishOk(s, { topic: BOOK1, data: 'via match' });
    await st.update('via match');
    expect(datas(st)).toEqual(['via topic', 'via match']);
  });

  it('a 0.x token (mercure claim, no typ/aud/exp/iss) publishes within its selectors', async () => {
    const s = await hub();
    const st = await sub(s, { topic: '*' });
    const token = await legacyToken({ publish: [BOOKS] });
    const ok = await publish(s, { topic: BOOK1, data: 'allowed' }, { token });
    expect(ok.status).toBe(200);
    const refused = await publish(
      s,
      { topic: 'https://example.com/users/1', data: 'refused' },
      { token },
    );
    expect(refused.status).toBe(403);
    await publishOk(s, { topic: 'orders', data: 'after' });
    await st.update('after');
    expect(datas(st)).toEqual(['allowed', 'after']);
  });

  it('the "https://mercure.rocks/" claim is read like the mercure claim', async () => {
    const s = await hub();
    const token = await mintToken({
      key: SECRET,
      typ: null,
      iss: null,
      aud: null,
      exp: null,
      claims: { 'https://mercure.rocks/': { publish: ['*'], subscribe: [BOOKS] } },
    });
    const st = await sub(s, { topic: BOOK1 }, { token });
    expect(
      (await publish(s, { topic: BOOK1, data: 'secret', private: 'on' }, { token })).status,
    ).toBe(200);
    await st.update('secret');
  });

  it('a 0.x token with an exp in the past is still refused', async () => {
    const s = await hub();
    const token = await legacyToken({ publish: ['*'] }, { exp: nowSeconds() - 120 });
    const res = await publish(s, { topic: 'orders', data: 'x' }, { token });
    expect(res.status).toBe(401);
    expect(bearerChallenge(res.headers)).toMatchObject({ error: 'invalid_token' });
  });

  it('private updates reach a 0.x subscriber whose subscribe selectors match', async () => {
    const s = await hub();
    const granted = await sub(
      s,
      { topic: BOOKS },
      { token: await legacyToken({ subscribe: [BOOKS] }) },
    );
    const other = await sub(
      s,
      { topic: BOOKS },
      { token: await legacyToken({ subscribe: ['https://example.com/users/{id}'] }) },
    );
    await publishOk(s, { topic: BOOK1, data: 'secret', private: 'on' });
    await publishOk(s, { topic: BOOK1, data: 'public' });
    await granted.update('public');
    await other.update('public');
    expect(datas(granted)).toEqual(['secret', 'public']);
    expect(datas(other)).toEqual(['public']);
  });

  it('the mercureAuthorization cookie presents a token', async () => {
    const s = await hub({ 'mercure.anonymous': false });
    const token = await legacyToken({ subscribe: [BOOK1] });
    const st = await sub(s, { topic: BOOK1 }, { cookie: `mercureAuthorization=${token}` });
    expect(st.status).toBe(200);
    await publishOk(s, { topic: BOOK1, data: 'secret', private: 'on' });
    await st.update('secret');
  });

  it('the authorization query parameter presents a token', async () => {
    const s = await hub({ 'mercure.anonymous': false });
    const token = await legacyToken({ subscribe: [BOOK1] });
    const st = await sub(s, { topic: BOOK1, authorization: token });
    expect(st.status).toBe(200);
    await publishOk(s, { topic: BOOK1, data: 'secret', private: 'on' });
    await st.update('secret');
  });

  it('the lastEventID query parameter resumes', async () => {
    const s = await hub();
    const first = await publishOk(s, { topic: BOOK1, data: 'a' });
    await publishOk(s, { topic: BOOK1, data: 'b' });
    const st = await sub(s, { topic: BOOK1, lastEventID: first });
    expect(st.headers['mercure-last-event-id']).toBe(first);
    await st.update('b');
    expect(datas(st)).toEqual(['b']);
  });

  it('a subscription made with topic= produces 0.x subscription events', async () => {
    const s = await hub({ 'mercure.subscriptions': true });
    const observer = await sub(
      s,
      { topic: '*' },
      { token: await legacyToken({ subscribe: ['*'] }) },
    );
    const subscriber = await sub(
      s,
      { topic: BOOKS },
      { token: await legacyToken({ subscribe: [BOOKS], payload: { user: 42 } }) },
    );
    interface LegacyDoc {
      '@context': string;
      id: string;
      type: string;
      topic: string;
      subscriber: string;
      active: boolean;
      payload?: unknown;
    }
    const docs = (): LegacyDoc[] =>
      observer
        .updates()
        .flatMap((f) => {
          try {
            return [JSON.parse(f.data ?? '') as LegacyDoc];
          } catch {
            return [];
          }
        })
        .filter((d) => d.topic === BOOKS);
    await observer.waitFor(() => docs().some((d) => d.active));
    const started = docs()[0];
    const subscriberId = started?.subscriber ?? '';
    expect(subscriberId).not.toBe('');
    expect(started).toEqual({
      '@context': 'https://mercure.rocks/',
      id: `${HUB_PATH}/subscriptions/${encodeURIComponent(BOOKS)}/${encodeURIComponent(subscriberId)}`,
      type: 'Subscription',
      topic: BOOKS,
      subscriber: subscriberId,
      active: true,
      payload: { user: 42 },
    });
    subscriber.close();
    await observer.waitFor(() => docs().some((d) => !d.active));
    expect(docs().find((d) => !d.active)).toEqual({ ...started, active: false });
  });
});

describe('compatibility off: the same inputs are refused', () => {
  async function modern(overrides: Record<string, unknown> = {}): Promise<TestSidecar> {
    return hub({ 'mercure.compatibility': false, ...overrides });
  }

  it('topic= is not a matcher: 400', async () => {
    const s = await modern();
    expect((await sub(s, { topic: 'orders' })).status).toBe(400);
    expect((await sub(s, { topic: '*' })).status).toBe(400);
  });

  it('a URI Template given to match_urlpattern is a URL Pattern, not a 0.x template', async () => {
    const s = await modern();
    // `{id}` is a URL Pattern group holding the literal "id": it matches /books/id only.
    const st = await sub(s, [['match_urlpattern', BOOKS]]);
    expect(st.status).toBe(200);
    await publishOk(s, { topic: BOOK1, data: 'book 1' });
    await publishOk(s, { topic: 'https://example.com/books/id', data: 'literal' });
    await st.update('literal');
    expect(datas(st)).toEqual(['literal']);
  });

  it('0.x tokens are invalid tokens: 401 on publish and on subscribe', async () => {
    const s = await modern();
    const legacy = await legacyToken({ publish: ['*'], subscribe: ['*'] });
    const namespaced = await mintToken({
      key: SECRET,
      typ: null,
      iss: null,
      aud: null,
      exp: null,
      claims: { 'https://mercure.rocks/': { publish: ['*'], subscribe: ['*'] } },
    });
    for (const token of [legacy, namespaced]) {
      const pub = await publish(s, { topic: 'orders', data: 'x' }, { token });
      expect(pub.status).toBe(401);
      expect(bearerChallenge(pub.headers)).toMatchObject({ error: 'invalid_token' });
      const st = await sub(s, { match: 'orders' }, { token });
      expect(st.status).toBe(401);
      expect(bearerChallenge(st.headers)).toMatchObject({ error: 'invalid_token' });
    }
  });

  it('a 1.0-shaped token carrying a mercure claim instead of authorization_details grants nothing', async () => {
    const s = await modern();
    const token = await hubToken(s, [], { mercureClaim: { publish: ['*'] } });
    const res = await publish(s, { topic: 'orders', data: 'x' }, { token });
    expect(res.status).toBe(403);
    expect(bearerChallenge(res.headers)).toMatchObject({ error: 'insufficient_scope' });
  });

  it('the mercureAuthorization cookie is not read', async () => {
    const s = await modern({ 'mercure.anonymous': false });
    const token = await hubToken(s, [detail(['subscribe'], [BOOK1])]);
    const st = await sub(s, { match: BOOK1 }, { cookie: `mercureAuthorization=${token}` });
    expect(st.status).toBe(401);
    expect(bearerChallenge(st.headers)).not.toHaveProperty('error');
  });

  it('the authorization query parameter is not accepted', async () => {
    const s = await modern({ 'mercure.anonymous': false });
    const token = await hubToken(s, [detail(['subscribe'], [BOOK1])]);
    const st = await sub(s, { match: BOOK1, authorization: token });
    expect([400, 401]).toContain(st.status);
  });

  it('the authorization query parameter never grants private updates to an anonymous subscriber', async () => {
    const s = await modern();
    const token = await hubToken(s, [detail(['subscribe'], [BOOK1])]);
    const st = await sub(s, { match: BOOK1, authorization: token });
    if (st.status !== 200) {
      expect([400, 401]).toContain(st.status);
      return;
    }
    await publishOk(s, { topic: BOOK1, data: 'secret', private: 'on' });
    await publishOk(s, { topic: BOOK1, data: 'public' });
    await st.update('public');
    expect(datas(st)).toEqual(['public']);
  });

  it('lastEventID is not a resume input', async () => {
    const s = await modern();
    const first = await publishOk(s, { topic: BOOK1, data: 'a' });
    await publishOk(s, { topic: BOOK1, data: 'b' });
    const st = await sub(s, { match: BOOK1, lastEventID: first });
    expect(st.status).toBe(200);
    expect(st.headers['mercure-last-event-id']).toBeUndefined();
    await publishOk(s, { topic: BOOK1, data: 'live' });
    await st.update('live');
    expect(datas(st)).toEqual(['live']);
  });
});
