/**
 * The demo app (`npm start`) in a real browser: Debian's Chromium, driven by playwright-core,
 * subscribes with EventSource, publishes through PHP (fetch -> /publish -> askr_publish ->
 * datagram -> hub) and must see the event arrive over SSE on every open page. The page renders
 * only what arrives over the stream, so an item in its list proves the SSE path end to end.
 * Chromium missing is a failure naming the fix, never a skip.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './helpers/chromium.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { until } from './helpers/wait.ts';

const DEMO_ROOT = fileURLToPath(new URL('../fixtures-php/demo/public', import.meta.url));
const SHIM = fileURLToPath(new URL('../php/src/askr.php', import.meta.url));
/** The SSE id of an event received on the demo channel: `<epoch>-<seq>@demo`. */
const DEMO_ID = /^[A-Za-z0-9_.-]+-\d+@demo$/;
const run = promisify(execFile);

let s: TestSidecar | undefined;
let browser: Browser | undefined;
let tmp: string | undefined;
const contexts: BrowserContext[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  tmp = await phpTempDir('askr-demo-');
  s = await startTestSidecar({
    'server.root': DEMO_ROOT,
    'broadcast.socket': join(tmp, 'askr.sock'),
  });
});

afterAll(async () => {
  await s?.close();
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

function sidecar(): TestSidecar {
  if (s === undefined) throw new Error('the sidecar did not start');
  return s;
}

/** A page in its own browser context (another visitor), connected to the live stream. */
async function openLivePage(path = '/'): Promise<Page> {
  if (browser === undefined) throw new Error('Chromium did not start');
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${path}: ${err.message}`));
  await page.goto(`${sidecar().url}${path}`);
  await page.locator('#state[data-state="open"]').waitFor({ timeout: 10_000 });
  return page;
}

/** Waits for the list item of kind `kind` whose text contains `text`; returns its text and SSE id. */
async function received(
  page: Page,
  kind: string,
  text: string,
): Promise<{ text: string; id: string | null }> {
  const item = page.locator(`#messages li[data-kind="${kind}"]`).filter({ hasText: text });
  await item.waitFor({ timeout: 10_000 });
  return { text: await item.innerText(), id: await item.getAttribute('data-id') };
}

async function publishFromPage(
  page: Page,
  text: string,
  button: 'chat' | 'message',
): Promise<void> {
  await page.fill('#publish input[name="name"]', 'alice');
  await page.fill('#publish input[name="text"]', text);
  await page.click(`#publish button[value="${button}"]`);
}

describe('the demo page in Chromium', () => {
  beforeAll(async () => {
    browser = await launchChromium();
  });

  afterAll(async () => {
    // Runs before the file's afterAll: the browser's streams end before the sidecar drains.
    await browser?.close();
  });

  it('a message published through PHP reaches this page and a second one over SSE (fan-out)', async () => {
    const a = await openLivePage();
    const b = await openLivePage();
    expect(await a.locator('#state').innerText()).toBe('connected');
    expect(await a.locator('#messages li').count()).toBe(0);

    const message = 'hello <b>world</b> & "friends"';
    await publishFromPage(a, message, 'chat');

    for (const page of [a, b]) {
      const got = await received(page, 'chat', message);
      expect(got.text).toContain('alice');
      expect(got.text).toContain('chat');
      expect(got.id).toMatch(DEMO_ID);
      // Inserted as text: the markup shows literally and creates no element.
      expect(await page.locator('#messages b').count()).toBe(0);
      expect(await page.locator('#messages li').count()).toBe(1);
    }
    await a.locator('#publish-status', { hasText: 'Sent to the sidecar' }).waitFor();
    expect(await a.inputValue('#publish input[name="text"]')).toBe('');

    if (process.env['ASKR_DEMO_SCREENSHOT'] !== undefined) {
      await a.screenshot({ path: process.env['ASKR_DEMO_SCREENSHOT'], fullPage: true });
    }
  });

  it('a plain message (askr_broadcast, no event name) arrives through onmessage', async () => {
    const a = await openLivePage();
    await publishFromPage(a, 'plain and simple', 'message');
    expect((await received(a, 'message', 'plain and simple')).id).toMatch(DEMO_ID);
  });

  it('the PHP hold (/?source=hold) sends PHP first frame, then events published by PHP CLI', async () => {
    const page = await openLivePage('/?source=hold');
    const hello = await received(page, 'hello', 'stream held by the sidecar for PHP');
    expect(hello.text).toMatch(/PHP worker \d+/);
    // The hold released its worker: no FastCGI request stays in flight while the stream is open
    // (polled: the page's other requests may still be finishing; a pinned worker never would).
    await until(() => sidecar().pool.stats().busy === 0);

    // Published from outside the browser, so the item can only have come over the stream.
    const payload = JSON.stringify({ text: 'from the command line', name: 'cli', time: '' });
    const { stdout } = await run(
      'php',
      [
        '-r',
        `require '${SHIM}'; var_export(askr_publish('demo', $argv[1], 'chat'));`,
        '--',
        payload,
      ],
      { env: { ...process.env, ASKR_SOCKET: sidecar().config.broadcast.socket } },
    );
    expect(stdout).toBe('true');
    const got = await received(page, 'chat', 'from the command line');
    expect(got.text).toContain('cli');
    expect(got.id).toMatch(DEMO_ID);
  });

  it('raised no JavaScript error on any page', async () => {
    for (const context of contexts) await context.close();
    expect(pageErrors).toEqual([]);
  });
});

describe('the demo routes over HTTP', () => {
  it('/hello and the classic name form still work', async () => {
    const hello = await request(`${sidecar().url}/hello`);
    expect(hello.statusCode).toBe(200);
    expect(await hello.body.text()).toMatch(/^Hello from PHP 8\.\d+/);
    const form = await request(`${sidecar().url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'name=%3Cscript%3EBob',
    });
    expect(await form.body.text()).toContain('Hello, &lt;script&gt;Bob!');
  });

  it('/publish answers JSON errors (405 on GET, 400 on an empty message), 303 without JSON', async () => {
    const get = await request(`${sidecar().url}/publish`);
    expect(get.statusCode).toBe(405);
    expect(get.headers['allow']).toBe('POST');
    expect(await get.body.json()).toEqual({ ok: false, error: 'use POST' });
    const post = (body: string, accept: string) =>
      request(`${sidecar().url}/publish`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept },
        body,
      });
    const empty = await post('text=+', 'application/json');
    expect(empty.statusCode).toBe(400);
    expect(await empty.body.json()).toEqual({ ok: false, error: 'the message is empty' });
    const noJs = await post('text=hi', 'text/html');
    expect(noJs.statusCode).toBe(303);
    expect(noJs.headers['location']).toBe('/');
    await noJs.body.text();
  });
});
