/**
 * The connector keeps its subscription grant fresh (issue 12): with sse.grant_ttl = 3s, it fetches
 * a new grant at ~80% of its life and reopens its stream with it and its last event id, before the
 * sidecar ends the stream at expiry. The page never shows a reconnect and misses nothing. A
 * recurrence looks like 'reconnecting' in the statuses (the stream ran into its expiry), a 401 loop
 * on the events endpoint, or an event missing or doubled around a refresh. The grant travels in
 * X-Askr-Grant, never in the URL (a recurrence: `grant=` in the events URL, so in access logs).
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './helpers/chromium.ts';
import {
  metric,
  newUserContext,
  openEchoPage,
  publishProbe,
  startEchoApp,
  until,
  type EchoApp,
} from './helpers/echo-app.ts';
import { logOf, waitLog } from './helpers/echo-suite.ts';

let app: EchoApp | undefined;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
const pageErrors: string[] = [];

beforeAll(async () => {
  app = await startEchoApp({ 'sse.grant_ttl': '3s' });
  browser = await launchChromium();
  context = await newUserContext(browser, app, 'alice', 'session', pageErrors);
});

afterAll(async () => {
  await browser?.close();
  await app?.close();
});

function echoApp(): EchoApp {
  if (app === undefined) throw new Error('the app did not start');
  return app;
}

describe('grant refresh', () => {
  it('refreshes the grant before it expires and reopens the stream with it, losing nothing', async () => {
    if (context === undefined) throw new Error('no browser context');
    const page: Page = await openEchoPage(context, echoApp(), 'alice', 'session');
    const grants: string[] = [];
    const streams: Array<{ status: number; grant: string | undefined; inUrl: boolean }> = [];
    page.on('response', (res) => {
      const url = new URL(res.url());
      if (url.pathname === '/askr/auth') grants.push(String(res.status()));
      if (url.pathname === '/askr/events') {
        streams.push({
          status: res.status(),
          grant: res.request().headers()['x-askr-grant'],
          inUrl: url.searchParams.has('grant'),
        });
      }
    });
    await page.evaluate(`
      Echo.channel('probe').listen('ProbeSent', record('probe'));
      Echo.private('orders.1').listen('ProbeSent', record('orders')).subscribed(record('sub'));
      Echo.connector.onLost(record('lost'));
    `);
    await waitLog(page, 'sub');
    await publishProbe(echoApp(), 'first grant');
    // Two refreshes: ~2.4 s each.
    await until(page, 'window.log.filter((e) => e.tag === "sub").length >= 3', 15_000);
    await publishProbe(echoApp(), 'third grant');
    await waitLog(page, 'orders', 2);
    await waitLog(page, 'probe', 2);

    expect(grants.length).toBeGreaterThanOrEqual(3);
    expect(grants.every((status) => status === '200')).toBe(true);
    // Every stream was accepted, each with a new grant.
    expect(streams.every((s) => s.status === 200)).toBe(true);
    expect(streams.every((s) => s.grant !== undefined && !s.inUrl)).toBe(true);
    expect(new Set(streams.map((s) => s.grant)).size).toBe(streams.length);
    expect(await page.evaluate('window.statuses')).toEqual(['connecting', 'connected']);
    const texts = [{ text: 'first grant' }, { text: 'third grant' }];
    expect(await logOf(page, 'orders')).toEqual(texts);
    expect(await logOf(page, 'probe')).toEqual(texts);
    expect(await logOf(page, 'lost')).toEqual([]);
    await expect.poll(() => metric(echoApp(), 'askr_sse_connections{kind="events"}')).toBe(1);
  });

  it('no page raised an error', () => {
    expect(pageErrors).toEqual([]);
  });
});
