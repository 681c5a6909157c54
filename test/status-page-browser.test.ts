/**
 * The status page on the admin listener, in real Chromium: it connects over the sidecar's own
 * SSE and its numbers move as streams open and events are published.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { request } from 'undici';
import { launchChromium } from './helpers/chromium.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream, type SseStream } from './helpers/sse-client.ts';

let s: TestSidecar;
let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
  s = await startTestSidecar({
    'metrics.enabled': 'true',
    'metrics.listen': '127.0.0.1:0',
    'sse.publish_token': 't',
  });
});
afterAll(async () => {
  await browser.close();
  await s.close();
});

describe('status page', () => {
  it('shows live numbers that move with streams and publishes', async () => {
    const page = await browser.newPage();
    await page.goto(`${s.adminUrl ?? ''}/`);
    await expect.poll(() => page.textContent('#state'), { timeout: 10_000 }).toBe('live');
    await expect.poll(() => page.textContent('#events'), { timeout: 10_000 }).toBe('0');

    const streams: SseStream[] = [];
    for (let i = 0; i < 3; i++)
      streams.push(await openStream(`${s.url}/askr/events?channel=status-${i}`));
    await expect.poll(() => page.textContent('#events'), { timeout: 10_000 }).toBe('3');
    expect(await page.textContent('#channels')).toBe('3');

    // Publish steadily until the page reports a non-zero publish rate.
    let publishing = true;
    const publisher = (async () => {
      while (publishing) {
        const res = await request(`${s.url}/askr/publish?channel=status-0`, {
          method: 'POST',
          headers: { authorization: 'Bearer t' },
          body: 'tick',
        });
        await res.body.text();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await expect
      .poll(async () => Number(await page.textContent('#pubrate')), { timeout: 10_000 })
      .toBeGreaterThan(0);
    await expect
      .poll(async () => Number(await page.textContent('#delrate')), { timeout: 10_000 })
      .toBeGreaterThan(0);
    publishing = false;
    await publisher;
    for (const st of streams) st.close();
    await expect.poll(() => page.textContent('#events'), { timeout: 10_000 }).toBe('0');
    await page.close();
  });
});
