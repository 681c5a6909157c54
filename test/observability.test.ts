/**
 * Integration tests of src/observability: the admin listener serves /metrics that promtool accepts,
 * /healthz, and /readyz driven by real checks (the shared php-fpm, a missing socket); the FPM
 * status poller scrapes a real php-fpm started with pm.status_path and reports its 2 workers, and
 * reports (never throws) when the status page is absent or FPM is unreachable.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { FcgiPool } from '../src/fastcgi/pool.ts';
import {
  fpmReachable,
  startAdminServer,
  unixSocketPresent,
  type AdminServer,
  type ReadinessCheck,
} from '../src/observability/admin-server.ts';
import { startFpmStatusPoller } from '../src/observability/fpm-status.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { startTestFpm } from './helpers/fpm.ts';

const PROMTOOL = '/usr/bin/promtool';

const logger = pino({ level: 'silent' });
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function poolFor(address: string): FcgiPool {
  const pool = new FcgiPool({
    address,
    keepAlive: true,
    maxConnections: 2,
    queueSize: 8,
    queueTimeoutMs: 2000,
    connectTimeoutMs: 1000,
    idleTimeoutMs: 5000,
  });
  cleanups.push(() => pool.close());
  return pool;
}

async function admin(
  registry: Registry,
  checks: Record<string, ReadinessCheck> = {},
): Promise<AdminServer> {
  const server = await startAdminServer({
    listen: '127.0.0.1:0',
    registry,
    checks,
    logger,
    checkTimeoutMs: 500,
  });
  cleanups.push(() => server.close());
  return server;
}

/** Runs `promtool check metrics` on the text; returns its exit status and every line it printed. */
function promtoolProblems(text: string): { status: number | null; problems: string[] } {
  if (!fs.existsSync(PROMTOOL)) {
    throw new Error(
      `${PROMTOOL} is missing (Debian's prometheus package): run "node scripts/ensure-system.mjs test"`,
    );
  }
  const run = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  const problems = `${run.stdout}\n${run.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return { status: run.status, problems };
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return { status: res.status, body: await res.json() };
}

describe('admin server', () => {
  it('serves /metrics that promtool accepts, with every askr_ family', async () => {
    const registry = new Registry();
    const metrics = createMetrics(registry);
    metrics.bindSources({
      pool: () => ({ open: 2, busy: 1, idle: 1, queued: 0 }),
      hub: () => ({ connections: 1, channels: 1, byKind: { hold: 1, events: 0, mercure: 0 } }),
    });
    metrics.onRequestDone('php', 200, 12);
    metrics.onRequestDone('sse', 499, 60_000);
    metrics.observeUpstream(8);
    metrics.poolHooks().onQueueWait?.(0);
    metrics.hubHooks().onDeliver?.(3, 0.2);
    const server = await admin(registry);

    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(registry.contentType);
    const text = await res.text();
    expect(text).toContain('askr_http_requests_total{kind="php",status_class="2xx"} 1');
    expect(text).toContain('askr_fastcgi_connections{state="busy"} 1');
    expect(text).toContain('askr_sse_connections{kind="hold"} 1');
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);

    const { status, problems } = promtoolProblems(text);
    expect(problems).toEqual([]);
    expect(status).toBe(0);
  });

  it('answers /healthz with the process uptime, 404 elsewhere, 405 for other methods', async () => {
    const server = await admin(new Registry());
    const health = await getJson(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok', uptimeSeconds: expect.any(Number) as number });
    expect((health.body as { uptimeSeconds: number }).uptimeSeconds).toBeGreaterThan(0);
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    const post = await fetch(`${server.url}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('is ready when the real php-fpm accepts connections', async () => {
    const address = inject('fpmAddress');
    const server = await admin(new Registry(), { fpm: () => fpmReachable(address) });
    const ready = await getJson(`${server.url}/readyz`);
    expect(ready).toEqual({
      status: 200,
      body: { ready: true, status: 'ok', checks: { fpm: { ok: true } } },
    });
  });

  it('is not ready (503) and names each failing check', async () => {
    const dir = tempDir('askr-obs-');
    const notSocket = path.join(dir, 'plain-file');
    fs.writeFileSync(notSocket, '');
    // A TCP port nobody listens on: bind one, note it, close it.
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const missing = path.join(dir, 'php-fpm.sock');
    const server = await admin(new Registry(), {
      fpm: () => fpmReachable(`unix:${missing}`),
      fpm_tcp: () => fpmReachable(`127.0.0.1:${port}`),
      datagram_socket: () => unixSocketPresent(notSocket),
      fpm_real: () => fpmReachable(inject('fpmAddress')),
      throws: () => Promise.reject(new Error('check exploded')),
      hangs: () => new Promise<string | null>(() => undefined),
    });
    const { status, body } = await getJson(`${server.url}/readyz`);
    expect(status).toBe(503);
    expect(body).toEqual({
      ready: false,
      status: 'not_ready',
      checks: {
        fpm: { ok: false, error: `php-fpm at unix:${missing} unreachable: ENOENT` },
        fpm_tcp: { ok: false, error: `php-fpm at 127.0.0.1:${port} unreachable: ECONNREFUSED` },
        datagram_socket: { ok: false, error: `${notSocket} is not a socket` },
        fpm_real: { ok: true },
        throws: { ok: false, error: 'check exploded' },
        hangs: { ok: false, error: 'timed out after 500 ms' },
      },
    });
  });

  it('fails to start with a ConfigError naming metrics.listen when the port is taken', async () => {
    const first = await admin(new Registry());
    await expect(
      startAdminServer({
        listen: first.url.replace('http://', ''),
        registry: new Registry(),
        checks: {},
        logger,
      }),
    ).rejects.toThrow(/metrics\.listen = .*EADDRINUSE/);
    await expect(
      startAdminServer({ listen: 'nowhere', registry: new Registry(), checks: {}, logger }),
    ).rejects.toThrow(/metrics\.listen = "nowhere"/);
  });
});

describe('FPM status poller', () => {
  it('mirrors the status page of a real php-fpm (pm.status_path) as askr_fpm_* series', async () => {
    const fpm = await startTestFpm(tempDir('askr-obs-fpm-'), {
      binary: process.env['ASKR_TEST_FPM_BINARY'] ?? '',
      statusPath: '/fpm-status',
      logger,
    });
    cleanups.push(() => fpm.stop(5000));
    const registry = new Registry();
    createMetrics(registry);
    const newPoller = (): ReturnType<typeof startFpmStatusPoller> =>
      startFpmStatusPoller({
        pool: poolFor(fpm.address),
        statusPath: '/fpm-status',
        intervalMs: 60_000,
        registry,
        logger,
      });
    const poller = newPoller();
    cleanups.push(() => poller.stop());

    expect(await poller.scrapeNow()).toBeNull();
    const server = await admin(registry);
    // php-fpm answers as soon as its first child runs; the second may start a moment later.
    let text = await (await fetch(`${server.url}/metrics`)).text();
    for (let i = 0; i < 50 && !text.includes('askr_fpm_processes{state="total"} 2'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await poller.scrapeNow()).toBeNull();
      text = await (await fetch(`${server.url}/metrics`)).text();
    }
    expect(text).toContain('askr_fpm_processes{state="total"} 2');
    expect(text).toMatch(/^askr_fpm_processes\{state="active"\} [12]$/m);
    expect(text).toContain('askr_fpm_status_up 1');
    expect(text).toContain('askr_fpm_listen_queue 0');
    expect(text).toMatch(/^askr_fpm_accepted_connections_total [1-9]\d*$/m);
    expect(text).toContain('askr_fpm_status_scrape_errors_total 0');
    expect(promtoolProblems(text).problems).toEqual([]);

    // stop() unregisters the gauges, so a new poller (after a reload) can register them again.
    poller.stop();
    expect(registry.getSingleMetric('askr_fpm_status_up')).toBeUndefined();
    const again = newPoller();
    cleanups.push(() => again.stop());
    expect(await again.scrapeNow()).toBeNull();
  });

  it('reports up 0 and why when php-fpm has no status page', async () => {
    // The shared php-fpm of the integration tests runs without pm.status_path.
    const registry = new Registry();
    const poller = startFpmStatusPoller({
      pool: poolFor(inject('fpmAddress')),
      statusPath: '/fpm-status',
      intervalMs: 60_000,
      registry,
      logger,
    });
    cleanups.push(() => poller.stop());
    const error = await poller.scrapeNow();
    expect(error).toMatch(/answered 404 .*pm\.status_path = \/fpm-status/);
    expect(poller.lastError()).toBe(error);
    const text = await registry.metrics();
    expect(text).toContain('askr_fpm_status_up 0');
    expect(text).toMatch(/^askr_fpm_status_scrape_errors_total [1-9]$/m);
  });

  it('reports up 0 when php-fpm is unreachable, and keeps polling', async () => {
    const missing = path.join(tempDir('askr-obs-'), 'php-fpm.sock');
    const registry = new Registry();
    const poller = startFpmStatusPoller({
      pool: poolFor(`unix:${missing}`),
      statusPath: '/fpm-status',
      intervalMs: 60_000,
      registry,
      logger,
    });
    cleanups.push(() => poller.stop());
    const first = await poller.scrapeNow();
    expect(first).not.toBeNull();
    expect(await poller.scrapeNow()).toBe(first);
    expect(await registry.metrics()).toContain('askr_fpm_status_up 0');
  });
});
