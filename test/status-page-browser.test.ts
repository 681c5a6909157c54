/**
 * The status page on the admin listener, in real Chromium: version, revision, uptime and the age
 * of FPM's figures are shown, and the charts of the last minutes move with traffic (PHP requests,
 * 5xx, static files, held and events streams, publishes): screenshots of the charts before and
 * after differ, and /status.json's new samples say why. The history samples every 500 ms here
 * (StartOptions.statusSampleMs); the test waits for new samples, never for a time. A recurrence
 * of the original complaint looks like identical screenshots or a page with no FPM age.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { Browser, Locator, Page } from 'playwright-core';
import { request } from 'undici';
import { loadConfig } from '../src/config/load.ts';
import type { ManagedFpm } from '../src/fpm/managed-fpm.ts';
import { startSidecar, type Sidecar } from '../src/main.ts';
import type { HistorySample } from '../src/observability/status-history.ts';
import type { StatusJson } from '../src/observability/status-page.ts';
import { VERSION } from '../src/version.ts';
import { launchChromium } from './helpers/chromium.ts';
import { startTestFpm } from './helpers/fpm.ts';
import { APP_ROOT } from './helpers/sidecar.ts';
import { openStream, type SseStream } from './helpers/sse-client.ts';

const SAMPLE_MS = 500;
const CHARTS = ['requests', 'latency', 'errors', 'streams', 'events', 'busy', 'queue'] as const;

let s: Sidecar;
let fpm: ManagedFpm;
let runDir: string;
let admin: string;
let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
  // Its own php-fpm: the shared one has no pm.status_path, and the page must show FPM's figures.
  runDir = mkdtempSync(join(tmpdir(), 'askr-status-fpm-'));
  fpm = await startTestFpm(runDir, {
    binary: process.env['ASKR_TEST_FPM_BINARY'] ?? '',
    statusPath: '/fpm-status',
    maxChildren: 4,
  });
  const config = loadConfig({
    env: {},
    overrides: {
      'server.listen': '127.0.0.1:0',
      'server.root': APP_ROOT,
      'fastcgi.address': fpm.address,
      'broadcast.socket': '',
      'metrics.enabled': 'true',
      'metrics.listen': '127.0.0.1:0',
      'fpm.status_path': '/fpm-status',
      'metrics.fpm_status_interval': '1s',
      'sse.publish_token': 't',
    },
  });
  const sink = new Writable({ write: (_chunk, _enc, cb) => cb() });
  s = await startSidecar(config, pino({ level: 'warn' }, sink), { statusSampleMs: SAMPLE_MS });
  admin = s.adminUrl ?? '';
});
afterAll(async () => {
  await browser.close();
  await s.close();
  await fpm.stop(5000);
  rmSync(runDir, { recursive: true, force: true });
});

async function status(): Promise<StatusJson> {
  const res = await request(`${admin}/status.json`);
  expect(res.statusCode).toBe(200);
  return (await res.body.json()) as StatusJson;
}

/** Resolves once the history holds a sample with seq >= `seq`; returns the JSON then. */
async function untilSeq(seq: number): Promise<StatusJson> {
  let json = await status();
  await expect
    .poll(
      async () => {
        json = await status();
        return json.seq;
      },
      { timeout: 30_000, interval: 100 },
    )
    .toBeGreaterThanOrEqual(seq);
  return json;
}

/** Resolves once the page has re-fetched a panel with a sample of seq >= `seq`. */
async function untilPageSeq(page: Page, seq: number): Promise<void> {
  // Read through the DOM, never with a string predicate: the page's CSP forbids eval.
  await expect
    .poll(async () => Number((await page.getAttribute('#panel', 'data-seq')) ?? 0), {
      timeout: 30_000,
      interval: 100,
    })
    .toBeGreaterThanOrEqual(seq);
}

/**
 * One screenshot per chart. The page swaps its panel every sample, so a locator can find its
 * element detached (no box): the box is read again until one is found (the layout is the same
 * across swaps), and the screenshot is a clip of the page, which Chromium takes from one frame.
 */
async function shots(page: Page): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const id of CHARTS) {
    let clip: Awaited<ReturnType<Locator['boundingBox']>> = null;
    await expect
      .poll(async () => (clip = await page.locator(`#chart-${id} svg`).boundingBox()), {
        timeout: 10_000,
        interval: 50,
      })
      .not.toBeNull();
    if (clip === null) throw new Error(`chart ${id} is not on the page`);
    out.set(id, await page.screenshot({ clip }));
  }
  return out;
}

describe('status page', () => {
  it('shows version, revision, uptime and the age of FPM figures', async () => {
    const page = await browser.newPage();
    await page.goto(`${admin}/`);
    await expect.poll(() => page.textContent('#state'), { timeout: 10_000 }).toBe('live');
    expect(await page.textContent('#version')).toBe(VERSION);
    expect(await page.textContent('#revision')).toMatch(/^(?:[0-9a-f]{7,12}|unknown)$/);
    expect(await page.textContent('#uptime')).toMatch(/^\d+ (?:s|min)$|^\d+ h \d+ min$/);
    await expect
      .poll(() => page.textContent('#fpm-age'), { timeout: 15_000 })
      .toMatch(/^FPM figures as of \d+ s ago$/);
    const json = await status();
    expect(json.now.fpm).toMatchObject({ state: 'ok', ageSeconds: expect.any(Number) as number });
    for (const id of CHARTS) {
      const chart = page.locator(`#chart-${id}`);
      expect(await chart.locator('.title').textContent()).not.toBe('');
      expect(await chart.locator('svg text.ymax').textContent()).toMatch(/^\d/);
      expect(await chart.locator('svg title').textContent()).toContain('axis maximum');
    }
    await page.close();
  });

  it('charts move with traffic: screenshots differ and the new samples show it', async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1800 } });
    await page.goto(`${admin}/`);
    await expect.poll(() => page.textContent('#state'), { timeout: 10_000 }).toBe('live');
    // A quiet baseline: two samples with no traffic, shown by the page.
    const quiet = await untilSeq((await status()).seq + 2);
    await untilPageSeq(page, quiet.seq);
    const before = await shots(page);

    const streams: SseStream[] = [await openStream(`${s.url}/askr/events?channel=status-0`)];
    streams.push(await openStream(`${s.url}/hold?channels=status-1`));
    let driving = true;
    let iterations = 0;
    const get = async (path: string): Promise<number> => {
      const res = await request(`${s.url}${path}`);
      await res.body.text();
      return res.statusCode;
    };
    const traffic = (async () => {
      while (driving) {
        expect(await get('/slow?ms=20')).toBe(200);
        expect(await get('/assets/style.css')).toBe(200);
        expect(await get('/exit-code')).toBe(500);
        for (const channel of ['status-0', 'status-1']) {
          const res = await request(`${s.url}/askr/publish?channel=${channel}`, {
            method: 'POST',
            headers: { authorization: 'Bearer t' },
            body: 'tick',
          });
          await res.body.text();
          expect(res.statusCode).toBeLessThan(300);
        }
        iterations += 1;
      }
    })();
    // Samples taken after the traffic is known to run (no guess at how fast it starts).
    await expect.poll(() => iterations, { timeout: 10_000 }).toBeGreaterThan(0);
    const since = (await status()).seq;
    const moved = (x: HistorySample): boolean =>
      x.requestsPerS > 0 &&
      x.serverErrorsPerS > 0 &&
      x.publishesPerS > 0 &&
      x.deliveriesPerS > 0 &&
      x.p50Ms !== null;
    let busy = await status();
    // Wait for two new samples in which every figure moved (the traffic runs meanwhile).
    await expect
      .poll(
        async () => {
          busy = await status();
          return busy.samples.filter((x) => x.seq > since && moved(x)).length;
        },
        { timeout: 30_000, interval: 100 },
      )
      .toBeGreaterThanOrEqual(2);
    driving = false;
    await traffic;
    await untilPageSeq(page, busy.seq);
    const after = await shots(page);

    const fresh = busy.samples.filter((x) => x.seq > since);
    for (const x of fresh) {
      // The streams were open before `since`, and stay open.
      expect(x.streams).toBeGreaterThanOrEqual(2);
      expect(x.poolMax).toBeGreaterThan(0);
      if (x.p50Ms !== null) expect(x.p99Ms ?? 0).toBeGreaterThanOrEqual(x.p50Ms);
    }
    // A 20 ms PHP request in every iteration: the worst p99 is past the (5, 10] ms bucket.
    expect(Math.max(...fresh.map((x) => x.p99Ms ?? 0))).toBeGreaterThan(10);
    // The page's figures of now and its charts' newest values agree with the JSON.
    expect(await page.textContent('#chart-streams .now b')).toBe(
      String(busy.samples.at(-1)?.streams),
    );
    expect(Number(await page.textContent('#hold'))).toBe(1);
    expect(Number(await page.textContent('#events'))).toBe(1);

    for (const id of ['requests', 'latency', 'errors', 'streams', 'events'] as const) {
      const a = before.get(id);
      const b = after.get(id);
      expect(a, id).toBeDefined();
      expect(b?.equals(a ?? Buffer.alloc(0)), `chart ${id} did not change`).toBe(false);
    }
    for (const st of streams) st.close();
    await page.close();
  });

  it('works without JavaScript: the charts are in the HTML and a meta refresh renews them', async () => {
    const res = await request(`${admin}/`);
    const html = await res.body.text();
    expect(res.headers['content-security-policy']).toContain("script-src 'sha256-");
    expect(html).toMatch(/<noscript><meta http-equiv="refresh" content="\d+"><\/noscript>/);
    expect(html.match(/<figure class="chart"/g)).toHaveLength(CHARTS.length);
    // Chromium without JavaScript draws them (polled: the meta refresh reloads the page).
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(`${admin}/`);
    await expect
      .poll(() => page.locator('figure.chart svg path').count(), { timeout: 10_000 })
      .toBeGreaterThanOrEqual(CHARTS.length);
    // The meta refresh may replace the page mid-screenshot ("not attached to the DOM"): retried.
    const shotBytes = async (): Promise<number> =>
      page
        .locator('#chart-requests svg')
        .screenshot({ timeout: 2_000 })
        .then((shot) => shot.length)
        .catch(() => 0);
    await expect.poll(shotBytes, { timeout: 10_000 }).toBeGreaterThan(0);
    await context.close();
  });
});
