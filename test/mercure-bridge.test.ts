/**
 * One hub, many doors (issue 11): askr publishes (POST /askr/publish, askr_broadcast from PHP-FPM)
 * reach Mercure subscribers of the same topic; Mercure publishes reach /askr/events streams.
 * askr private-* and presence-* channels are private for Mercure; a Mercure private update reaches
 * askr streams only on private-* and presence-* channels, whose subscribers the app authorized (the
 * fixtures' /broadcasting/auth: private-user.{id} belongs to the user in the `user` cookie).
 * Metrics label the Mercure door ingress="mercure" and kind="mercure".
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { phpTempDir } from './helpers/php-temp.ts';
import { type TestSidecar } from './helpers/sidecar.ts';
import { connectedSocketId, dataFrames, openStream, type SseStream } from './helpers/sse-client.ts';
import { runCleanups, until, type Cleanups } from './helpers/wait.ts';
import {
  MERCURE_BASE,
  datas,
  detail,
  hubToken,
  publishOk,
  type Fields,
  mercureHarness,
} from './helpers/mercure.ts';

const TOKEN = 'bridge-publish-token';
const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

const { hub, sub } = mercureHarness(cleanups, { ...MERCURE_BASE, 'sse.publish_token': TOKEN });

/** An askr events stream, returned once the hub counts it. */
async function askrStream(
  s: TestSidecar,
  channels: string[],
  headers: Record<string, string> = {},
): Promise<SseStream> {
  const before = s.hub.stats().byKind.events;
  const qs = channels.map((c) => `channel=${encodeURIComponent(c)}`).join('&');
  const st = await openStream(`${s.url}/askr/events?${qs}`, headers);
  cleanups.push(() => st.close());
  if (st.status === 200) {
    await until(() => s.hub.stats().byKind.events > before, 5000, 'the askr stream to be held');
  }
  return st;
}

/** POST /askr/publish with a JSON body; expects 202. */
async function askrPublish(s: TestSidecar, body: Record<string, unknown>): Promise<void> {
  const res = await request(`${s.url}/askr/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode !== 202) throw new Error(`askr publish answered ${res.statusCode}: ${text}`);
}

/** The data of an askr stream's frames, less the askr:connected frame it opens with. */
function askrDatas(st: SseStream): Array<string | undefined> {
  return dataFrames(st.frames).map((f) => f.data);
}

describe('askr -> Mercure', () => {
  it('POST /askr/publish reaches Mercure subscribers of the topic', async () => {
    const s = await hub();
    const st = await sub(s, [['match', 'orders']]);
    const other = await sub(s, [['match', 'invoices']]);
    await askrPublish(s, { channel: 'orders', data: 'line 1\nline 2', event: 'shipped' });
    await askrPublish(s, { channel: 'invoices', data: 'invoice' });
    const f = await st.waitFor((x) => x.event === 'shipped');
    expect(f.data).toBe('line 1\nline 2');
    expect(f.id ?? '').not.toBe('');
    await other.update('invoice');
    expect(datas(other)).toEqual(['invoice']);
  });

  it('askr_broadcast from PHP-FPM reaches Mercure subscribers (URL pattern and * too)', async () => {
    const socket = join(await phpTempDir('askr-mercure-'), 'askr.sock');
    const s = await hub({ 'broadcast.socket': socket });
    const exact = await sub(s, [['match', 'fpm-orders']]);
    const wildcard = await sub(s, [['match', '*']]);
    const res = await request(`${s.url}/publish?channel=fpm-orders&data=from%20php&event=created`);
    expect(await res.body.json()).toEqual({ ok: true, error: null });
    for (const st of [exact, wildcard]) {
      expect(await st.waitFor((x) => x.event === 'created')).toMatchObject({ data: 'from php' });
    }
  });

  it('private-* and presence-* channels are private for Mercure', async () => {
    const s = await hub();
    const query: Fields = [
      ['match', 'private-user.42'],
      ['match', 'presence-room.1'],
      ['match', 'marker'],
    ];
    const anonymous = await sub(s, query);
    const wrongGrant = await sub(s, query, {
      token: await hubToken(s, [detail(['subscribe'], ['private-user.7'])]),
    });
    const granted = await sub(s, query, {
      token: await hubToken(s, [detail(['subscribe'], ['private-user.42', 'presence-room.1'])]),
    });
    await askrPublish(s, { channel: 'private-user.42', data: 'for user 42' });
    await askrPublish(s, { channel: 'presence-room.1', data: 'for room 1' });
    await publishOk(s, { topic: 'marker', data: 'marker' });
    for (const st of [anonymous, wrongGrant, granted]) await st.update('marker');
    expect(datas(anonymous)).toEqual(['marker']);
    expect(datas(wrongGrant)).toEqual(['marker']);
    expect(datas(granted)).toEqual(['for user 42', 'for room 1', 'marker']);
  });

  it('a public Mercure publish on a private-* topic is private for Mercure subscribers too', async () => {
    const s = await hub();
    const query: Fields = [
      ['match', 'private-user.42'],
      ['match', 'marker'],
    ];
    const anonymous = await sub(s, query);
    const granted = await sub(s, query, {
      token: await hubToken(s, [detail(['subscribe'], ['private-user.42'])]),
    });
    await publishOk(s, { topic: 'private-user.42', data: 'no private field' });
    await publishOk(s, { topic: 'marker', data: 'marker' });
    await anonymous.update('marker');
    await granted.update('marker');
    expect(datas(anonymous)).toEqual(['marker']);
    expect(datas(granted)).toEqual(['no private field', 'marker']);
  });
});

describe('Mercure -> askr', () => {
  it('a Mercure publish reaches /askr/events?channel= (canonical and alternate topics)', async () => {
    const s = await hub();
    const orders = await askrStream(s, ['orders']);
    const invoices = await askrStream(s, ['invoices']);
    await publishOk(s, {
      topic: ['orders', 'invoices'],
      data: 'from mercure\nsecond line',
      type: 'shipped',
    });
    for (const st of [orders, invoices]) {
      const f = await st.waitFor((x) => x.event === 'shipped');
      expect(f.data).toBe('from mercure\nsecond line');
    }
  });

  it('a Mercure private update does not reach a public askr channel', async () => {
    const s = await hub();
    const st = await askrStream(s, ['orders']);
    await publishOk(s, { topic: 'orders', data: 'secret', private: 'on' });
    await publishOk(s, { topic: 'orders', data: 'public' });
    await st.waitFor((f) => f.data === 'public');
    expect(connectedSocketId(st.frames)).toMatch(/^\d+\.\d+$/);
    expect(askrDatas(st)).toEqual(['public']);
  });

  it('a Mercure private update reaches a private-* askr stream the app authorized', async () => {
    const s = await hub();
    const refused = await request(`${s.url}/askr/events?channel=private-user.42`, {
      headers: { cookie: 'user=7' },
    });
    expect(refused.statusCode).toBe(403);
    await refused.body.dump();
    const owner = await askrStream(s, ['private-user.42'], { cookie: 'user=42' });
    expect(owner.status).toBe(200);
    await publishOk(s, { topic: 'private-user.42', data: 'secret for 42', private: 'on' });
    await owner.waitFor((f) => f.data === 'secret for 42');
  });
});

describe('metrics', () => {
  async function scrape(s: TestSidecar): Promise<string> {
    const res = await request(`${s.adminUrl ?? ''}/metrics`);
    expect(res.statusCode).toBe(200);
    return res.body.text();
  }

  function value(text: string, series: string): number {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  }

  it('counts Mercure publishes as ingress="mercure" and Mercure streams as kind="mercure"', async () => {
    const s = await hub({ 'metrics.enabled': 'true', 'metrics.listen': '127.0.0.1:0' });
    const before = await scrape(s);
    const streams = [await sub(s, [['match', 'orders']]), await sub(s, [['match', '*']])];
    await publishOk(s, { topic: 'orders', data: 'one' });
    await publishOk(s, { topic: 'orders', data: 'two' });
    await askrPublish(s, { channel: 'orders', data: 'three' });
    for (const st of streams) await st.update('three');
    const during = await scrape(s);
    const mercure = 'askr_events_published_total{ingress="mercure"}';
    const http = 'askr_events_published_total{ingress="http"}';
    expect(value(during, mercure) - value(before, mercure)).toBe(2);
    expect(value(during, http) - value(before, http)).toBe(1);
    expect(value(during, 'askr_sse_connections{kind="mercure"}')).toBe(2);
    expect(value(during, 'askr_sse_connections{kind="events"}')).toBe(0);
    for (const st of streams) st.close();
    await until(() => s.hub.stats().byKind.mercure === 0, 5000, 'the Mercure streams to close');
    expect(value(await scrape(s), 'askr_sse_connections{kind="mercure"}')).toBe(0);
  });
});
