/**
 * Metrics of a running sidecar move as traffic flows: PHP and static requests, the FastCGI pool,
 * streams and publishes, rejections; the managed php-fpm's status appears; /readyz reflects FPM.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { phpTempDir } from './helpers/php-temp.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream } from './helpers/sse-client.ts';

let s: TestSidecar;
beforeAll(async () => {
  const dir = await phpTempDir('askr-metrics-');
  s = await startTestSidecar({
    'metrics.enabled': 'true',
    'metrics.listen': '127.0.0.1:0',
    'broadcast.socket': join(dir, 'askr.sock'),
    'sse.publish_token': 't',
    // Keep-alive (the shared test FPM has 8 workers), so idle kept connections show in the gauge.
    'fastcgi.pool_size': '8',
    'fastcgi.idle_timeout': '60s',
  });
});
afterAll(async () => {
  await s.close();
});

async function scrape(): Promise<string> {
  const res = await request(`${s.adminUrl ?? ''}/metrics`);
  expect(res.statusCode).toBe(200);
  return res.body.text();
}

/** The value of one series, e.g. value(text, 'askr_http_requests_total{kind="php",status_class="2xx"}'). */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

describe('metrics move with traffic', () => {
  it('counts requests, pool use, streams, publishes and rejections', async () => {
    const before = await scrape();
    for (let i = 0; i < 3; i++) await (await request(`${s.url}/status/200`)).body.text();
    await (await request(`${s.url}/assets/style.css`)).body.text();
    await (await request(`${s.url}/askr/events`)).body.text(); // 400: no channel
    const st = await openStream(`${s.url}/askr/events?channel=m`);
    const pub = await request(`${s.url}/askr/publish?channel=m`, {
      method: 'POST',
      headers: { authorization: 'Bearer t' },
      body: 'x',
    });
    await pub.body.text();
    await st.waitFor((f) => f.data === 'x');
    const during = await scrape();
    st.close();

    const php = 'askr_http_requests_total{kind="php",status_class="2xx"}';
    expect(value(during, php) - value(before, php)).toBe(3);
    const stat = 'askr_http_requests_total{kind="static",status_class="2xx"}';
    expect(value(during, stat) - value(before, stat)).toBe(1);
    expect(
      value(during, 'askr_rejected_requests_total{reason="bad_channel"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(value(during, 'askr_sse_connections{kind="events"}')).toBe(1);
    expect(value(during, 'askr_sse_channels')).toBeGreaterThanOrEqual(1);
    expect(value(during, 'askr_events_published_total{ingress="http"}')).toBe(1);
    expect(value(during, 'askr_events_delivered_total')).toBeGreaterThanOrEqual(1);
    expect(value(during, 'askr_fastcgi_queue_wait_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(value(during, 'askr_fastcgi_upstream_duration_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(value(during, 'askr_fastcgi_connections{state="idle"}')).toBeGreaterThanOrEqual(1);
  });

  it('the scrape passes promtool check metrics', async () => {
    const text = await scrape();
    const child = execFile('promtool', ['check', 'metrics']);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.stdin?.end(text);
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(out.split('\n').filter((l) => l.trim() !== '')).toEqual([]);
    expect(code).toBe(0);
  });

  it('/readyz reports FPM and the datagram socket', async () => {
    const res = await request(`${s.adminUrl ?? ''}/readyz`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toMatchObject({
      ready: true,
      checks: { fpm: { ok: true }, datagram_socket: { ok: true } },
    });
  });
});
