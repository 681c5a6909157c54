/**
 * The Laravel app in a real browser: Debian's Chromium (playwright-core) signs in through the
 * login form (session cookie, CSRF), opens the dashboard whose askr-echo.js helper (published by
 * `artisan vendor:publish --tag=askr-js`) holds one EventSource for a private, a public and a
 * presence channel. Broadcasts must arrive, toOthers() must skip the sender's page, presence must
 * track the pages, a denied channel must not break the others, and a sidecar restart (same port,
 * same socket, sse.state_file) must lose no event and deliver none twice.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './helpers/chromium.ts';
import { artisan, assertLaravelInstalled, makeLaravelApp } from './helpers/laravel-app.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

interface Received {
  channel: string;
  event: string;
  data: Record<string, unknown>;
}
interface AskrLog {
  events: Received[];
  sent: string[];
  lost: unknown[];
  states: string[];
  errors: Array<{ status: number; message: string }>;
  members: Array<Record<string, unknown>>;
}

let tmp = '';
let app = '';
let socket = '';
let stateFile = '';
let s: TestSidecar | undefined;
let browser: Browser | undefined;
const pageErrors: string[] = [];

async function startSidecar(listen = '127.0.0.1:0'): Promise<TestSidecar> {
  return startTestSidecar({
    'server.root': join(app, 'public'),
    'server.listen': listen,
    'broadcast.socket': socket,
    'sse.state_file': stateFile,
    // EventSource waits this long before it reconnects after the sidecar closed its stream.
    'sse.retry': '200ms',
  });
}

beforeAll(async () => {
  await assertLaravelInstalled();
  browser = await launchChromium();
  tmp = await phpTempDir('askr-laravel-browser-');
  socket = join(tmp, 'askr.sock');
  stateFile = join(tmp, 'sse-state.json');
  app = await makeLaravelApp(tmp, socket);
  s = await startSidecar();
});

afterAll(async () => {
  await browser?.close();
  await s?.close();
  if (tmp !== '') await rm(tmp, { recursive: true, force: true });
});

function sidecar(): TestSidecar {
  if (s === undefined) throw new Error('the sidecar did not start');
  return s;
}

/** Signs `name` in through the login form (its own browser context) and opens the dashboard. */
async function signIn(name: string): Promise<{ page: Page; context: BrowserContext }> {
  if (browser === undefined) throw new Error('Chromium did not start');
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  await page.goto(`${sidecar().url}/login`);
  await page.fill('input[name="email"]', `${name}@example.test`);
  await page.fill('input[name="password"]', 'secret');
  await page.click('#login button[type="submit"]');
  await page.waitForURL('**/dashboard');
  await page.locator('#state[data-state="connected"]').waitFor({ timeout: 10_000 });
  return { page, context };
}

async function logOf(page: Page): Promise<AskrLog> {
  return page.evaluate<AskrLog>('window.askrLog');
}

/** Waits until the page's log satisfies `predicate` (a JS expression over `log`). */
async function until(page: Page, predicate: string): Promise<void> {
  await page.waitForFunction(`((log) => ${predicate})(window.askrLog)`, undefined, {
    timeout: 15_000,
  });
}

describe('the dashboard in Chromium with askr-echo.js', () => {
  it('a session user gets a broadcast on their private channel (cookie auth via the sidecar)', async () => {
    const { page, context } = await signIn('alice');
    await page.click('button[data-ship="1"]');
    await page
      .locator('.status[data-order="1"]', { hasText: 'shipped (controller)' })
      .waitFor({ timeout: 10_000 });
    const log = await logOf(page);
    expect(log.events).toEqual([
      {
        channel: 'private-orders.1',
        event: 'OrderShipped',
        data: { id: 1, status: 'shipped', via: 'controller' },
      },
    ]);
    expect(log.lost).toEqual([]);
    expect(log.errors).toEqual([]);
    await context.close();
  });

  it('presence: here, joining and leaving follow the pages of other users', async () => {
    const alice = await signIn('alice');
    await until(alice.page, `log.members.some((m) => m.here?.some((u) => u.name === 'Alice'))`);
    const bob = await signIn('bob');
    await until(alice.page, `log.members.some((m) => m.joining?.name === 'Bob')`);
    await until(bob.page, `log.members.some((m) => m.here?.length === 2)`);
    expect(await bob.page.locator('#members li').allInnerTexts()).toEqual(['Alice', 'Bob']);
    await bob.context.close();
    await until(alice.page, `log.members.some((m) => m.leaving?.name === 'Bob')`);
    expect(await alice.page.locator('#members li').allInnerTexts()).toEqual(['Alice']);
    await alice.context.close();
  });

  it('toOthers(): the sender`s page skips its own message, the other page gets it', async () => {
    const alice = await signIn('alice');
    const bob = await signIn('bob');
    await alice.page.fill('#chat input[name="text"]', 'from alice');
    await alice.page.click('#chat button[type="submit"]');
    await until(bob.page, `log.events.some((e) => e.data.text === 'from alice')`);
    await bob.page.fill('#chat input[name="text"]', 'from bob');
    await bob.page.click('#chat button[type="submit"]');
    await until(alice.page, `log.events.some((e) => e.data.text === 'from bob')`);
    // Events arrive in publish order: had Alice's own message come, it would be there by now.
    const aliceChat = (await logOf(alice.page)).events.filter((e) => e.channel === 'chat');
    expect(aliceChat).toEqual([
      { channel: 'chat', event: 'message.posted', data: { user: 'Bob', text: 'from bob' } },
    ]);
    const bobChat = (await logOf(bob.page)).events.filter((e) => e.channel === 'chat');
    expect(bobChat.map((e) => e.data)).toEqual([{ user: 'Alice', text: 'from alice' }]);
    await alice.context.close();
    await bob.context.close();
  });

  it('a denied channel reports its error and the other channels keep working', async () => {
    const { page, context } = await signIn('alice');
    // Order 2 is Bob's: the whole stream is refused (403) until the helper drops that channel.
    await page.evaluate(`
      window.askrEcho.private('orders.2').error((e) => window.askrLog.errors.push(e));
    `);
    await until(page, `log.errors.length === 1`);
    expect((await logOf(page)).errors).toEqual([
      { status: 403, message: 'not authorized for channel "private-orders.2"' },
    ]);
    await page.locator('#state[data-state="connected"]').waitFor({ timeout: 10_000 });
    await artisan(app, ['chat:say', 'still here']);
    await until(page, `log.events.some((e) => e.data.text === 'still here')`);
    await context.close();
  });

  it('survives a sidecar restart: every event exactly once, no askr:lost', async () => {
    const { page, context } = await signIn('alice');
    await artisan(app, ['chat:say', 'before restart']);
    await until(page, `log.events.some((e) => e.data.text === 'before restart')`);

    const port = new URL(sidecar().url).port;
    await sidecar().close();
    s = undefined;
    await page.locator('#state[data-state="reconnecting"]').waitFor({ timeout: 10_000 });
    s = await startSidecar(`127.0.0.1:${port}`);
    // Published at once: the page may still be reconnecting, so it comes from the history.
    await artisan(app, ['chat:say', 'after restart']);
    // askr:lost (no state restored: a new epoch) would also end the wait, and fail below.
    await until(
      page,
      `log.lost.length > 0 || log.events.some((e) => e.data.text === 'after restart')`,
    );
    await page.locator('#state[data-state="connected"]').waitFor({ timeout: 10_000 });
    await artisan(app, ['orders:ship', '1']);
    await until(page, `log.events.some((e) => e.data.via === 'console')`);

    const log = await logOf(page);
    expect(log.events.map((e) => e.data['text'] ?? e.data['via'])).toEqual([
      'before restart',
      'after restart',
      'console',
    ]);
    expect(log.lost).toEqual([]);
    expect(log.states).toContain('reconnecting');
    await context.close();
  });

  it('no page raised an error', () => {
    expect(pageErrors).toEqual([]);
  });
});
