/**
 * Reloads are all or nothing (issue 14), on a real sidecar in front of the shared php-fpm.
 * Regression: a reload whose config had an invalid [proxy] route logged "config reload failed;
 * keeping the running config" after it had already applied the new log level, Cache-Control and
 * a widened server.trusted_proxies (a client's X-Forwarded-For: 9.9.9.9 became REMOTE_ADDR),
 * while the hub kept its old limits. A recurrence shows here as any observed setting moving after
 * a failed reload. A valid reload must apply every changed reloadable key (the hub's, the
 * datagram ingress's and SERVER_SOFTWARE included) and log them with the keys needing a restart.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../src/config/load.ts';
import type { SidecarConfig } from '../src/config/schema.ts';
import { startSidecar, type Sidecar } from '../src/main.ts';
import { APP_ROOT, jsonLogSink } from './helpers/sidecar.ts';
import { openStream, type SseStream } from './helpers/sse-client.ts';
import { runCleanups, until, type Cleanups } from './helpers/wait.ts';

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

interface Started {
  sidecar: Sidecar;
  logger: Logger;
  logs: Array<Record<string, unknown>>;
  /** A config as the file would now say it: the start's keys plus `overrides`. */
  next(overrides?: Record<string, unknown>): SidecarConfig;
}

/** The settings every test starts from; each one is moved by the reloads below. */
const START = {
  'log.level': 'info',
  'static.cache_control': '',
  'server.trusted_proxies': [],
  'server.software': '',
  'sse.retry': '3s',
  'sse.max_connections_per_ip': '2',
  'broadcast.max_datagram_size': '64KiB',
};

/** Every reloadable key of START, moved. */
const MOVED = {
  'log.level': 'warn',
  'static.cache_control': 'max-age=600',
  'server.trusted_proxies': ['127.0.0.1'],
  'server.software': 'reloaded/1',
  'sse.retry': '7s',
  'sse.max_connections_per_ip': '1',
  'broadcast.max_datagram_size': '1KiB',
};

async function start(): Promise<Started> {
  const dir = await mkdtemp(join(tmpdir(), 'askr-reload-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  // PHP workers (not root) reach the socket through this directory.
  await chmod(dir, 0o755);
  const base = {
    'server.listen': '127.0.0.1:0',
    'server.root': APP_ROOT,
    'fastcgi.address': inject('fpmAddress'),
    'metrics.enabled': 'false',
    'broadcast.socket': join(dir, 'askr.sock'),
  };
  const next = (overrides: Record<string, unknown> = {}): SidecarConfig =>
    loadConfig({ env: {}, overrides: { ...base, ...START, ...overrides } });
  const { logs, sink } = jsonLogSink();
  const config = next();
  const logger = pino({ level: config.log.level }, sink);
  const sidecar = await startSidecar(config, logger);
  cleanups.push(() => sidecar.close());
  return { sidecar, logger, logs, next };
}

/** What a client and PHP see of the settings in START. */
interface Observed {
  logLevel: string;
  cacheControl: string | undefined;
  remoteAddr: unknown;
  serverSoftware: unknown;
  retryMs: number | undefined;
  /** Status of a second stream from this address (sse.max_connections_per_ip). */
  secondStream: number;
  /** A 1500-byte publish from PHP over the datagram socket (broadcast.max_datagram_size). */
  datagram: 'delivered' | 'rejected';
}

let probe = 0;

async function observe(s: Started): Promise<Observed> {
  probe += 1;
  const { sidecar } = s;
  const asset = await request(`${sidecar.url}/assets/style.css`);
  await asset.body.dump();
  const dump = await request(`${sidecar.url}/dump`, { headers: { 'x-forwarded-for': '9.9.9.9' } });
  const server = ((await dump.body.json()) as { server: Record<string, unknown> }).server;

  const channel = `probe-${probe}`;
  const streams: SseStream[] = [];
  const open = async (): Promise<SseStream> => {
    const st = await openStream(`${sidecar.url}/askr/events?channel=${channel}`);
    streams.push(st);
    return st;
  };
  let observed: Observed;
  try {
    const first = await open();
    const hello = await first.frame(0);
    const second = await open();
    second.close();
    const rejectedBefore = await rejectedTooLarge(sidecar);
    const data = 'x'.repeat(1500);
    const publish = await request(`${sidecar.url}/publish?channel=${channel}&data=${data}`);
    expect(publish.statusCode, await publish.body.text()).toBe(200);
    // PHP's send succeeds either way: the sidecar delivers the datagram or rejects it (counted).
    let datagram: Observed['datagram'] | undefined;
    for (const end = Date.now() + 5000; datagram === undefined && Date.now() < end;) {
      if (first.frames.some((f) => f.data === data)) datagram = 'delivered';
      else if ((await rejectedTooLarge(sidecar)) > rejectedBefore) datagram = 'rejected';
      else await new Promise((r) => setTimeout(r, 10));
    }
    if (datagram === undefined) throw new Error('the datagram was neither delivered nor rejected');
    observed = {
      logLevel: s.logger.level,
      cacheControl: headerText(asset.headers['cache-control']),
      remoteAddr: server['REMOTE_ADDR'],
      serverSoftware: server['SERVER_SOFTWARE'],
      retryMs: hello.retry,
      secondStream: second.status,
      datagram,
    };
  } finally {
    for (const st of streams) st.close();
  }
  // Admission counts open streams: the next probe starts from none.
  await until(() => sidecar.hub.stats().connections === 0, 5000, 'the probe streams to close');
  return observed;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** askr_rejected_datagrams_total{reason="too_large"} of this sidecar. */
function rejectedTooLarge(sidecar: Sidecar): Promise<number> {
  const metric = sidecar.registry.getSingleMetric('askr_rejected_datagrams_total');
  if (metric === undefined) return Promise.resolve(0);
  return metric
    .get()
    .then((m) => m.values.find((v) => v.labels['reason'] === 'too_large')?.value ?? 0);
}

const AS_STARTED: Observed = {
  logLevel: 'info',
  cacheControl: undefined,
  remoteAddr: '127.0.0.1',
  serverSoftware: expect.stringMatching(/^askr-sidecar\//) as unknown,
  retryMs: 3000,
  secondStream: 200,
  datagram: 'delivered',
};

describe('config reload', () => {
  it('with an invalid [proxy] route changes nothing and logs what failed', async () => {
    const s = await start();
    expect(await observe(s)).toEqual(AS_STARTED);

    // One good route (nothing listens there: a 502 if it were installed) and one bad.
    const routes = { '/up/': 'http://127.0.0.1:1', '/app/': 'ftp://127.0.0.1:1' };
    const outcome = await s.sidecar.reload(s.next({ ...MOVED, 'proxy.routes': routes }));

    expect(outcome.ok).toBe(false);
    const failed = s.logs.filter(
      (l) => l['msg'] === 'config reload failed; keeping the running config',
    );
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 50, code: 'ASKR_ERR_CONFIG' });
    expect(failed[0]?.['err']).toContain('proxy.routes: "/app/" = "ftp://127.0.0.1:1"');
    expect(s.logs.some((l) => String(l['msg']).startsWith('config reloaded'))).toBe(false);
    // The X-Forwarded-For of an untrusted client stays ignored, and everything else stays too.
    expect(await observe(s)).toEqual(AS_STARTED);
    // No route was installed either: /up/ still runs PHP's front controller.
    const up = await request(`${s.sidecar.url}/up/x`);
    expect(up.statusCode).toBe(200);
    expect(await up.body.json()).toMatchObject({ route: 'front-controller', path: '/up/x' });
  });

  it('applies every changed reloadable key and logs them with the keys that need a restart', async () => {
    const s = await start();
    const outcome = await s.sidecar.reload(s.next({ ...MOVED, 'server.max_header_size': '32KiB' }));

    const applied = [
      'server.software',
      'server.trusted_proxies',
      'static.cache_control',
      'log.level',
      'sse.retry',
      'sse.max_connections_per_ip',
      'broadcast.max_datagram_size',
    ];
    expect(outcome).toEqual({ ok: true, applied, needRestart: ['server.max_header_size'] });
    // Logged although the new level (warn) is above the line's own.
    const line = s.logs.find((l) => String(l['msg']).startsWith('config reloaded'));
    expect(line).toMatchObject({
      msg: 'config reloaded; some keys need a restart',
      applied,
      needRestart: ['server.max_header_size'],
    });
    expect(await observe(s)).toEqual({
      logLevel: 'warn',
      cacheControl: 'max-age=600',
      remoteAddr: '9.9.9.9',
      serverSoftware: 'reloaded/1',
      retryMs: 7000,
      secondStream: 429,
      datagram: 'rejected',
    });

    // Back to the file as it was at start: the same keys move back, nothing is left to restart.
    expect(await s.sidecar.reload(s.next())).toEqual({ ok: true, applied, needRestart: [] });
    expect(await observe(s)).toEqual(AS_STARTED);
  });

  it('runs reloads one at a time in the order asked, and refuses them once closing', async () => {
    const s = await start();
    const [first, second] = await Promise.all([
      s.sidecar.reload(s.next({ 'sse.retry': '5s' })),
      s.sidecar.reload(() => s.next({ 'sse.retry': '6s' })),
    ]);
    expect(first).toEqual({ ok: true, applied: ['sse.retry'], needRestart: [] });
    expect(second).toEqual({ ok: true, applied: ['sse.retry'], needRestart: [] });
    expect((await observe(s)).retryMs).toBe(6000);

    // A config the SIGHUP handler cannot read is reported the same way, and changes nothing.
    const unreadable = await s.sidecar.reload(() => s.next({ 'server.max_body_size': 'lots' }));
    expect(unreadable.ok).toBe(false);
    expect(s.logs.at(-1)).toMatchObject({
      msg: 'config reload failed; keeping the running config',
      code: 'ASKR_ERR_CONFIG',
    });

    await s.sidecar.close();
    const late = await s.sidecar.reload(s.next({ 'sse.retry': '9s' }));
    expect(late).toMatchObject({ ok: false, error: { message: 'the sidecar is shutting down' } });
  });
});
