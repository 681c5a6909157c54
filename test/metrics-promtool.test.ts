/**
 * The /metrics of a real sidecar in front of a real php-fpm, after PHP, static, SSE and publish
 * traffic, passes `promtool check metrics` with exit 0 and no finding (issue 14: it exited 3 on
 * prom-client's gauges named *_total); every askr_* family it shows is documented in
 * docs/metrics.md; the askr_fpm_* status series are absent (not 0) while the status scrape
 * fails; askr_build_info names what runs; askr_http_client_connections follows open connections.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startFpmPool, type FpmPool } from './helpers/fpm-pool.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream } from './helpers/sse-client.ts';
import { runCleanups, type Cleanups } from './helpers/wait.ts';

const ROOT = new URL('../', import.meta.url);
const PROMTOOL = '/usr/bin/promtool';
/** The askr_fpm_* series that mirror FPM's status page (status_up and scrape errors aside). */
const FPM_STATUS_SERIES = [
  'askr_fpm_processes',
  'askr_fpm_listen_queue',
  'askr_fpm_max_listen_queue',
  'askr_fpm_max_children_reached_total',
  'askr_fpm_slow_requests_total',
  'askr_fpm_accepted_connections_total',
];

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

async function fpmPool(): Promise<FpmPool> {
  const fpm = await startFpmPool({ pm: 'static', maxChildren: 2 });
  cleanups.push(() => fpm.stop());
  return fpm;
}

async function sidecar(overrides: Record<string, string>): Promise<TestSidecar> {
  const s = await startTestSidecar({
    'metrics.enabled': 'true',
    'metrics.listen': '127.0.0.1:0',
    ...overrides,
  });
  cleanups.push(() => s.close());
  return s;
}

async function scrape(s: TestSidecar): Promise<string> {
  const res = await request(`${s.adminUrl ?? ''}/metrics`);
  expect(res.statusCode).toBe(200);
  return res.body.text();
}

/**
 * Scrapes until `check` holds (the FPM status poller and socket closes have no event a test can
 * await); rejects after `timeoutMs` with the last scrape.
 */
async function scrapeUntil(
  s: TestSidecar,
  check: (text: string) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const text = await scrape(s);
    if (check(text)) return text;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last scrape:\n${text}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The value of one series (`name` or `name{labels}` exactly as exposed); NaN when absent. */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

/** Metric families with samples in the scrape (names of `# TYPE` lines followed by a sample). */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)\n(?!#)/gm)) out.set(m[1] ?? '', m[2] ?? '');
  return out;
}

function promtool(text: string): { status: number | null; output: string } {
  if (!existsSync(PROMTOOL)) {
    throw new Error(
      `${PROMTOOL} is missing (Debian's prometheus package): run "node scripts/ensure-system.mjs test"`,
    );
  }
  const run = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: run.status, output: `${run.stdout}${run.stderr}`.trim() };
}

describe('promtool check metrics on a real sidecar', () => {
  it('exits 0 with no finding after PHP, static, SSE and publish traffic, FPM status included', async () => {
    const fpm = await fpmPool();
    const dir = await mkdtemp(join(tmpdir(), 'askr-promtool-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const s = await sidecar({
      'fastcgi.address': fpm.address,
      'fpm.status_path': fpm.statusPath,
      'metrics.fpm_status_interval': '100ms',
      'broadcast.socket': join(dir, 'askr.sock'),
      'sse.publish_token': 't',
    });

    for (let i = 0; i < 3; i++) await (await request(`${s.url}/status/200`)).body.text();
    await (await request(`${s.url}/assets/style.css`)).body.text();
    const stream = await openStream(`${s.url}/askr/events?channel=m`);
    cleanups.push(() => stream.close());
    const publish = await request(`${s.url}/askr/publish?channel=m`, {
      method: 'POST',
      headers: { authorization: 'Bearer t' },
      body: 'x',
    });
    expect(publish.statusCode).toBeLessThan(300);
    await publish.body.text();
    await stream.waitFor((f) => f.data === 'x');
    // The three PHP requests (and the status scrapes) reached FPM; wait for a scrape that shows them.
    const text = await scrapeUntil(
      s,
      (t) => value(t, 'askr_fpm_accepted_connections_total') >= 3,
      'the FPM status counters',
    );

    const { status, output } = promtool(text);
    expect(output).toBe('');
    expect(status).toBe(0);

    // What promtool saw: the families this traffic moves, FPM's cumulative numbers as counters.
    const seen = families(text);
    expect(seen.get('askr_fpm_accepted_connections_total')).toBe('counter');
    expect(seen.get('askr_fpm_max_children_reached_total')).toBe('counter');
    expect(seen.get('askr_fpm_slow_requests_total')).toBe('counter');
    expect(seen.get('askr_fpm_processes')).toBe('gauge');
    expect(seen.get('askr_build_info')).toBe('gauge');
    expect(seen.get('askr_http_client_connections')).toBe('gauge');
    expect(value(text, 'askr_http_requests_total{kind="php",status_class="2xx"}')).toBe(3);
    expect(value(text, 'askr_http_requests_total{kind="static",status_class="2xx"}')).toBe(1);
    expect(value(text, 'askr_sse_connections{kind="events"}')).toBe(1);
    expect(value(text, 'askr_events_published_total{ingress="http"}')).toBe(1);
    expect(seen.get('nodejs_active_handles')).toBe('gauge');
    expect([...seen.keys()].filter((n) => /^nodejs_active_\w+_total$/.test(n))).toEqual([]);

    // Every askr_* family here has its row in docs/metrics.md (renames keep the doc in step).
    const doc = readFileSync(new URL('docs/metrics.md', ROOT), 'utf8');
    const undocumented = [...seen.keys()].filter(
      (n) => n.startsWith('askr_') && !doc.includes(`\`${n}\``),
    );
    expect(undocumented).toEqual([]);
  });
});

describe('askr_fpm_* status series', () => {
  it('disappear (never read 0) once the status scrape fails, up 0 and the errors counted', async () => {
    const fpm = await fpmPool();
    const s = await sidecar({
      'fastcgi.address': fpm.address,
      'fpm.status_path': fpm.statusPath,
      'metrics.fpm_status_interval': '100ms',
    });
    const up = await scrapeUntil(s, (t) => value(t, 'askr_fpm_status_up') === 1, 'status up');
    for (const name of FPM_STATUS_SERIES) expect(families(up).has(name), name).toBe(true);

    await fpm.stop(); // the socket goes with it: every scrape from now on fails
    const down = await scrapeUntil(s, (t) => value(t, 'askr_fpm_status_up') === 0, 'status down');
    // A recurrence shows as askr_fpm_processes{state="total"} 2 (the last good values) or 0 here.
    for (const name of FPM_STATUS_SERIES) expect(down, name).not.toContain(`\n${name}`);
    expect(value(down, 'askr_fpm_status_scrape_errors_total')).toBeGreaterThanOrEqual(1);
    expect(promtool(down)).toEqual({ status: 0, output: '' });
  });

  it('are absent from the start when FPM has no status page', async () => {
    // The shared php-fpm of the integration tests runs without pm.status_path: it answers 404.
    const s = await sidecar({
      'fastcgi.address': inject('fpmAddress'),
      'fpm.status_path': '/fpm-status',
      'metrics.fpm_status_interval': '100ms',
    });
    const text = await scrapeUntil(
      s,
      (t) => value(t, 'askr_fpm_status_scrape_errors_total') >= 1,
      'a failed status scrape',
    );
    expect(value(text, 'askr_fpm_status_up')).toBe(0);
    for (const name of FPM_STATUS_SERIES) expect(text, name).not.toContain(`\n${name}`);
  });
});

describe('askr_build_info and askr_http_client_connections', () => {
  it('names the version, git revision and Node version', async () => {
    const s = await sidecar({ 'fastcgi.address': inject('fpmAddress') });
    const pkg = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as {
      version: string;
    };
    // git itself is the oracle for the revision the sidecar read from .git without it.
    const git = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' });
    const revision =
      process.env['ASKR_BUILD_COMMIT'] ?? (git.status === 0 ? git.stdout.trim() : 'unknown');
    const series = `askr_build_info{version="${pkg.version}",revision="${revision}",node_version="${process.version}"}`;
    expect(value(await scrape(s), series)).toBe(1);
  });

  it('counts each open client connection on the main listener until it closes', async () => {
    const s = await sidecar({ 'fastcgi.address': inject('fpmAddress') });
    const open = 'askr_http_client_connections';
    const accepted = 'askr_http_client_connections_accepted_total';
    // Scrapes go to the admin listener: they are no client connection of the main one.
    const before = await scrape(s);
    expect(value(before, open)).toBe(0);
    expect(value(before, accepted)).toBe(0);

    const port = Number(new URL(s.url).port);
    const connect = async (): Promise<net.Socket> => {
      const socket = net.connect(port, '127.0.0.1');
      cleanups.push(() => void socket.destroy());
      await once(socket, 'connect');
      return socket;
    };
    const sockets = await Promise.all([connect(), connect(), connect()]);
    // A held SSE stream is one more connection. Raw, like the others: an HTTP client library
    // may open a connection of its own after an abort, which would skew the accepted count.
    const stream = await connect();
    stream.write(
      'GET /askr/events?channel=c HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\n\r\n',
    );
    const [head] = (await once(stream, 'data')) as [Buffer];
    expect(head.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
    const during = await scrapeUntil(s, (t) => value(t, open) === 4, '4 open connections');
    expect(value(during, 'askr_sse_connections{kind="events"}')).toBe(1);
    expect(value(during, accepted)).toBe(4);

    for (const socket of [...sockets, stream]) socket.destroy();
    const after = await scrapeUntil(s, (t) => value(t, open) === 0, 'the connections closed');
    expect(value(after, accepted)).toBe(4);
  });
});
