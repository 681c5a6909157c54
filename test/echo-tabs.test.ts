/**
 * One stream for all the tabs of an origin (issue 12): ten pages of one browser context, each with
 * its own `window.Echo`, hold ONE stream to the sidecar (a leader tab elected with Web Locks; the
 * others get the frames over a BroadcastChannel), so they stay live under HTTP/1.1's six
 * connections per host. When the leader tab closes, another tab takes the stream over from the
 * last id it saw: no event lost, none twice. A recurrence shows as ten streams in
 * askr_sse_connections, or as a tab missing or repeating an event published during the handover.
 */
import type { Browser, BrowserContext, Page, Request } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './helpers/chromium.ts';
import {
  metric,
  newUserContext,
  openEchoPage,
  phpRequests,
  publishProbe,
  startEchoApp,
  type EchoApp,
} from './helpers/echo-app.ts';
import { logOf, waitLog } from './helpers/echo-suite.ts';

const EVENTS_STREAMS = 'askr_sse_connections{kind="events"}';

let app: EchoApp | undefined;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
let tabs: Page[] = [];
const pageErrors: string[] = [];
/** The stream requests of the tabs not ended yet (a closed page's end with it). */
const streams = new Set<Request>();

beforeAll(async () => {
  app = await startEchoApp();
  browser = await launchChromium();
  context = await newUserContext(browser, app, 'alice', 'session', pageErrors);
  context.on('request', (req) => {
    if (req.url().includes('/askr/events')) streams.add(req);
  });
  context.on('requestfailed', (req) => streams.delete(req));
  context.on('requestfinished', (req) => streams.delete(req));
});

/** The channels of the open streams. */
function streamChannels(): string[][] {
  return [...streams]
    .filter((req) => !req.frame().page().isClosed())
    .map((req) => new URL(req.url()).searchParams.getAll('channel').sort());
}

async function authRequests(): Promise<number> {
  return (await phpRequests(echoApp())).filter((r) => r === 'POST /broadcasting/auth').length;
}

afterAll(async () => {
  await browser?.close();
  await app?.close();
});

function echoApp(): EchoApp {
  if (app === undefined) throw new Error('the app did not start');
  return app;
}

async function roleOf(page: Page): Promise<string> {
  return page.evaluate<string>('Echo.connector.client.role');
}

describe('tabs share one stream', () => {
  it('ten tabs of one browser hold ONE stream, and every tab gets each event', async () => {
    if (context === undefined) throw new Error('no browser context');
    for (let i = 0; i < 10; i++) {
      const page = await openEchoPage(context, echoApp(), 'alice', 'session');
      await page.evaluate(`
        Echo.channel('probe').listen('ProbeSent', record('probe')).subscribed(record('sub'));
        Echo.private('orders.1').listen('ProbeSent', record('orders')).subscribed(record('sub'));
      `);
      tabs.push(page);
    }
    for (const page of tabs) await waitLog(page, 'sub', 2);
    await expect.poll(() => metric(echoApp(), EVENTS_STREAMS)).toBe(1);
    const roles = await Promise.all(tabs.map(roleOf));
    expect(roles.filter((r) => r === 'leader')).toHaveLength(1);
    expect(roles.filter((r) => r === 'follower')).toHaveLength(9);

    await publishProbe(echoApp(), 'e1');
    for (const page of tabs) {
      await waitLog(page, 'probe');
      await waitLog(page, 'orders');
      expect(await logOf(page, 'probe')).toEqual([{ text: 'e1' }]);
      expect(await logOf(page, 'orders')).toEqual([{ text: 'e1' }]);
    }
    expect(await metric(echoApp(), EVENTS_STREAMS)).toBe(1);
  });

  it('the leader tab closing hands the stream over: no event lost, none twice', async () => {
    const roles = await Promise.all(tabs.map(roleOf));
    const leader = tabs[roles.indexOf('leader')];
    if (leader === undefined) throw new Error('no leader tab');
    tabs = tabs.filter((page) => page !== leader);
    const auths = await authRequests();
    await publishProbe(echoApp(), 'e2');
    const closing = leader.close();
    await publishProbe(echoApp(), 'e3');
    await closing;
    await publishProbe(echoApp(), 'e4');
    await publishProbe(echoApp(), 'e5');
    const expected = ['e1', 'e2', 'e3', 'e4', 'e5'].map((text) => ({ text }));
    for (const page of tabs) {
      await waitLog(page, 'probe', 5);
      await waitLog(page, 'orders', 5);
    }
    for (const page of tabs) {
      expect(await logOf(page, 'probe')).toEqual(expected);
      expect(await logOf(page, 'orders')).toEqual(expected);
    }
    const after = await Promise.all(tabs.map(roleOf));
    expect(after.filter((r) => r === 'leader')).toHaveLength(1);
    await expect.poll(() => metric(echoApp(), EVENTS_STREAMS)).toBe(1);
    // The new leader went on with the old leader's grant: no PHP authorization.
    expect(await authRequests()).toBe(auths);
  });

  it('a closed tab`s channels leave the stream', async () => {
    const roles = await Promise.all(tabs.map(roleOf));
    const follower = tabs[roles.indexOf('follower')];
    if (follower === undefined) throw new Error('no follower tab');
    await follower.evaluate(`Echo.channel('chat').subscribed(record('chat'))`);
    await waitLog(follower, 'chat');
    await expect.poll(streamChannels).toEqual([['chat', 'private-orders.1', 'probe']]);
    tabs = tabs.filter((page) => page !== follower);
    await follower.close();
    await expect.poll(streamChannels).toEqual([['private-orders.1', 'probe']]);
  });

  it('a whisper from one tab reaches the other tabs and other browsers, never the sender', async () => {
    if (browser === undefined) throw new Error('Chromium did not start');
    const [sender, sibling] = tabs;
    if (sender === undefined || sibling === undefined) throw new Error('tabs are missing');
    const bobContext = await newUserContext(browser, echoApp(), 'bob', 'session', pageErrors);
    const bob = await openEchoPage(bobContext, echoApp(), 'bob', 'session');
    for (const page of [sender, sibling, bob]) {
      await page.evaluate(`
        Echo.private('team.1').listenForWhisper('typing', record('typing')).subscribed(record('team'));
      `);
      await waitLog(page, 'team');
    }
    await sender.evaluate(`Echo.private('team.1').whisper('typing', { from: 'tab' })`);
    await waitLog(sibling, 'typing');
    await waitLog(bob, 'typing');
    expect(await logOf(sibling, 'typing')).toEqual([{ from: 'tab' }]);
    expect(await logOf(bob, 'typing')).toEqual([{ from: 'tab' }]);
    // Published after the whisper: when it arrived, a whisper to the sender would have too.
    await publishProbe(echoApp(), 'e6');
    await waitLog(sender, 'probe', 6);
    expect(await logOf(sender, 'typing')).toEqual([]);
    await bobContext.close();
  });

  it('no page raised an error', () => {
    expect(pageErrors).toEqual([]);
  });
});
