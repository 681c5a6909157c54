/**
 * The Mercure hub's caches from outside (issue 13): verified access tokens (mercure.token_cache_size)
 * and compiled URL patterns (mercure.pattern_cache_size). A regression looks like a reused token
 * accepted after its exp, after a reload replaced the key, or under another Host (another default
 * audience) than the one it was verified for; or subscribers of one relative URL pattern under
 * different Host headers sharing one resolution. "Not delivered" is asserted without timing: a
 * later update every subscriber must receive is published after it, and the hub delivers in order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { runCleanups, until, type Cleanups } from './helpers/wait.ts';
import {
  bearerChallenge,
  datas,
  detail,
  eventually,
  hubToken,
  nowSeconds,
  publish,
  publisherToken,
  mercureHarness,
  type Fields,
  type HttpAnswer,
} from './helpers/mercure.ts';

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

const { hub, sub } = mercureHarness(cleanups);

function expectInvalidToken(res: HttpAnswer): void {
  expect(res.status).toBe(401);
  expect(bearerChallenge(res.headers)).toMatchObject({ error: 'invalid_token' });
}

/** The reasons logged for refused requests ("mercure: refused"), in order. */
function refusals(s: { logs: Array<Record<string, unknown>> }): unknown[] {
  return s.logs.filter((l) => l['msg'] === 'mercure: refused').map((l) => l['reason']);
}

describe('verified tokens (mercure.token_cache_size)', () => {
  it('a reused publisher token is refused once expired, as without the cache', async () => {
    const s = await hub();
    const exp = nowSeconds() + 3;
    const token = await hubToken(s, [detail(['publish'], ['*'])], { exp });
    expect((await publish(s, { topic: 'orders', data: '1' }, { token })).status).toBe(200);
    expect((await publish(s, { topic: 'orders', data: '2' }, { token })).status).toBe(200);
    await until(() => Date.now() >= exp * 1000, 5000, "the token's exp");
    expectInvalidToken(await publish(s, { topic: 'orders', data: '3' }, { token }));
    expect(refusals(s).at(-1)).toMatch(/ERR_JWT_EXPIRED/);
  });

  it('a reload with a new jwt_key refuses a token verified under the old one', async () => {
    const s = await hub();
    const token = await publisherToken(s);
    expect((await publish(s, { topic: 'orders' }, { token })).status).toBe(200);
    expect((await publish(s, { topic: 'orders' }, { token })).status).toBe(200);
    const rotated = 'rotated-secret-0123456789abcdefghijklmno';
    await s.reload({ ...s.config, mercure: { ...s.config.mercure, jwt_key: rotated } });
    const fresh = await hubToken(s, [detail(['publish'], ['*'])], { key: rotated });
    // The new keys are imported asynchronously: wait until they serve.
    await eventually(
      async () => (await publish(s, { topic: 'orders' }, { token: fresh })).status === 200,
      5000,
      'the rotated key to verify tokens',
    );
    expectInvalidToken(await publish(s, { topic: 'orders' }, { token }));
    expect(refusals(s).at(-1)).toMatch(/signature/);
  });

  it('a token verified for one Host is checked again under another (its audience)', async () => {
    const s = await hub();
    const token = await publisherToken(s); // aud: http://127.0.0.1:PORT/.well-known/mercure
    expect((await publish(s, { topic: 'orders' }, { token })).status).toBe(200);
    const elsewhere = { token, headers: { host: `localhost:${s.port}` } };
    expectInvalidToken(await publish(s, { topic: 'orders' }, elsewhere));
    expect(refusals(s).at(-1)).toMatch(/audience/);
    expect((await publish(s, { topic: 'orders' }, { token })).status).toBe(200);
  });

  it('with token_cache_size = 0 a reused token is verified every time and still accepted', async () => {
    const s = await hub({ 'mercure.token_cache_size': 0 });
    const token = await publisherToken(s);
    for (let i = 0; i < 3; i++) {
      expect((await publish(s, { topic: 'orders' }, { token })).status).toBe(200);
    }
  });
});

describe('compiled URL patterns (mercure.pattern_cache_size)', () => {
  it('subscribers of one relative pattern under different Hosts each resolve it against theirs', async () => {
    const s = await hub();
    const query: Fields = [
      ['match_urlpattern', '/books/:id'],
      ['match', 'last'],
    ];
    const onA = await sub(s, query, { headers: { host: 'a.test' } });
    const onB = await sub(s, query, { headers: { host: 'b.test' } });
    const onA2 = await sub(s, query, { headers: { host: 'a.test' } });
    const token = await publisherToken(s);
    for (const [topic, data] of [
      ['http://a.test/books/1', 'for a'],
      ['http://b.test/books/1', 'for b'],
      ['last', 'last'],
    ] as const) {
      expect((await publish(s, { topic, data }, { token })).status).toBe(200);
    }
    await Promise.all([onA.update('last'), onB.update('last'), onA2.update('last')]);
    expect(datas(onA)).toEqual(['for a', 'last']);
    expect(datas(onA2)).toEqual(['for a', 'last']);
    expect(datas(onB)).toEqual(['for b', 'last']);
  });
});
