/**
 * The reconnect storm of bench:browser (issue 12: "a reconnect storm after a deploy costs no FPM
 * worker"). A fresh php-fpm pool and sidecar per measurement, the fixture app with its counting
 * auth route (fixtures-php/app/public/sse-grants-app.php). N clients (cookie user=ID) each hold
 * /askr/events with private-user.ID and private-chat.room; all are dropped at once and reconnect
 * at once with Last-Event-ID: `grants` with the grant of a batch POST /askr/auth in the URL (as an
 * EventSource sends it), `auth-route` the old way (the sidecar asks the app per channel). Then
 * one event on private-chat.room must reach all N. Stops what it started before returning.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { setTimeout as sleep } from 'node:timers/promises';
import { benchPayload } from '../sse/publisher.ts';
import { HOST, startFpm, startSidecar } from '../sse/servers.ts';
import type { StormVariant } from './settings.ts';
import { StreamSet } from './streams.ts';

const APP_ROOT = fileURLToPath(new URL('../../fixtures-php/app/public', import.meta.url));
const GRANT_SECRET = 'askr-bench-browser-grant-secret-0123456789';
const SHARED = 'private-chat.room';
/** A storm not over by then counts the streams still out as failed. */
const STORM_DEADLINE_MS = 60_000;

export interface StormMeasurement {
  variant: StormVariant;
  clients: number;
  round: number;
  opened: number;
  /** Requests the app's PHP served during the storm (its own counter). */
  fpmRequests: number;
  back: number;
  failed: number;
  allBackMs: number;
  p50Ms: number;
  p99Ms: number;
  /** Deliveries of the event published right after the storm, and their p99, ms. */
  delivered: number;
  deliveryP99Ms: number;
}

function quantile(values: readonly number[], q: number): number {
  const v = [...values].sort((a, b) => a - b);
  return v.length === 0 ? NaN : (v[Math.min(v.length - 1, Math.floor(q * v.length))] ?? NaN);
}

async function postJson(url: string, body: unknown, cookie: string): Promise<unknown> {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`POST ${url}: ${res.statusCode} ${text}`);
  return JSON.parse(text);
}

/** Grants of `ids` from the batch route, `parallel` requests at a time. */
async function fetchGrants(base: string, ids: number[], cookieOf: (id: number) => string) {
  const grants = new Map<number, string>();
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let id = ids[next++]; id !== undefined; id = ids[next++]) {
      const json = (await postJson(
        `${base}/askr/auth`,
        { channels: [`private-user.${id}`, SHARED] },
        cookieOf(id),
      )) as { grant: string };
      grants.set(id, json.grant);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return grants;
}

/** One measurement of `variant` with `clients` clients, on a fresh FPM pool and sidecar. */
export async function measureStorm(
  variant: StormVariant,
  clients: number,
  round: number,
  workers: number,
  log: (line: string) => void,
): Promise<StormMeasurement> {
  const fpm = await startFpm(workers);
  const s = await startSidecar({
    fpm: fpm.address,
    root: APP_ROOT,
    env: {
      ASKR_SERVER_INDEX: 'sse-grants-app.php',
      ASKR_SSE_GRANT_SECRET: GRANT_SECRET,
      ASKR_SSE_GRANT_TTL: '10m',
    },
  });
  const base = `http://${HOST}:${s.port}`;
  const counter = randomBytes(8).toString('hex');
  const cookieOf = (id: number): string => `user=${id}; counter=${counter}`;
  const count = async (): Promise<number> => {
    const res = await request(`${base}/count?id=${counter}`);
    return ((await res.body.json()) as { count: number }).count;
  };
  const set = new StreamSet(s.port, 'askr:connected');
  try {
    const ids = Array.from({ length: clients }, (_, i) => i + 1);
    const grants = variant === 'grants' ? await fetchGrants(base, ids, cookieOf) : new Map();
    for (const id of ids) {
      const grant = grants.get(id) as string | undefined;
      const query =
        `channel=private-user.${id}&channel=${SHARED}` +
        (grant === undefined ? '' : `&grant=${grant}`);
      set.add(
        (lastId) =>
          `GET /askr/events?${query} HTTP/1.1\r\nHost: ${HOST}:${s.port}\r\n` +
          `Accept: text/event-stream\r\nCookie: ${cookieOf(id)}\r\n` +
          (lastId === '' ? '' : `Last-Event-ID: ${lastId}\r\n`) +
          '\r\n',
      );
    }
    const open = await set.openAll(64, 100, STORM_DEADLINE_MS);
    await sleep(500);
    const before = await count();
    await set.dropAll();
    const storm = await set.openAll(Infinity, 100, STORM_DEADLINE_MS);
    const fpmRequests = (await count()) - before;
    const seq = 1;
    const pub = await request(`${base}/askr/publish?channel=${SHARED}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'text/plain' },
      body: benchPayload(seq),
    });
    await pub.body.text();
    const deadline = Date.now() + 5000;
    while (set.deliveries(seq).length < storm.ok && Date.now() < deadline) await sleep(20);
    const delivered = set.deliveries(seq);
    const m: StormMeasurement = {
      variant,
      clients,
      round,
      opened: open.ok,
      fpmRequests,
      back: storm.ok,
      failed: storm.failed,
      allBackMs: storm.allBackMs,
      p50Ms: quantile(storm.eachMs, 0.5),
      p99Ms: quantile(storm.eachMs, 0.99),
      delivered: delivered.length,
      deliveryP99Ms: quantile(delivered, 0.99),
    };
    log(
      `  ${variant}: ${open.ok}/${clients} open; storm: ${fpmRequests} FPM requests, ` +
        `${storm.ok} back (${storm.failed} failed) in ${storm.allBackMs.toFixed(0)} ms, ` +
        `p50 ${m.p50Ms.toFixed(1)} / p99 ${m.p99Ms.toFixed(1)} ms; event after: ` +
        `${delivered.length}/${storm.ok}, p99 ${m.deliveryP99Ms.toFixed(1)} ms`,
    );
    return m;
  } finally {
    await set.dropAll();
    await s.server.stop();
    await fpm.server.stop();
  }
}
