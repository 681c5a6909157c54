/**
 * The Mercure hub in a real browser: Debian's Chromium (playwright-core) opens
 * fixtures-php/app/public/mercure.html, served by the sidecar itself (same origin as the hub) or by
 * another origin, whose script holds EventSource subscriptions and records what arrives. Updates
 * are published over HTTP (form POST with a publisher token). Checked: match and match_urlpattern
 * (also relative), a private update reaching only the page that has the access-token cookie,
 * a stream ended by the sidecar (sse.max_lifetime) resumed by EventSource with Last-Event-ID
 * without losing the update published while it was disconnected, and withCredentials from another
 * origin allowed by mercure.cors_origins (refused from an unlisted one). A regression looks like an
 * update missing or twice in a page's log, a private update on the page without the cookie, or a
 * cross-origin EventSource that fails.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './helpers/chromium.ts';
import {
  HUB_PATH,
  MERCURE_BASE,
  detail,
  eventually,
  hubToken,
  hubUrl,
  mercureConnections,
  publishOk,
  urlpattern,
  type Fields,
} from './helpers/mercure.ts';
import { APP_ROOT, startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

/**
 * The spec's recommended `__Secure-mercure_access_token` is a `__Secure-` cookie: browsers store
 * and send it only over HTTPS (with the Secure attribute), and the test sidecar serves plain HTTP
 * on 127.0.0.1. So the hub is told to read an unprefixed name, as a plain-HTTP dev setup would.
 */
const COOKIE = 'mercure_access_token';
const PAGE = '/mercure.html';

/** What mercure.html records for one EventSource. */
interface PageLog {
  url: string;
  events: Array<{ type: string; id: string; data: string }>;
  opens: number;
  errors: number;
  /** EventSource.readyState at the last open/error: 0 connecting, 1 open, 2 closed. */
  readyState: number;
}

let browser: Browser | undefined;
const contexts: BrowserContext[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  browser = await launchChromium();
});
afterEach(async () => {
  // Closing the contexts ends their EventSources before the sidecars drain.
  await Promise.all(contexts.splice(0).map((c) => c.close()));
  expect(pageErrors.splice(0)).toEqual([]);
});
afterAll(async () => {
  await browser?.close();
});

/** A page of mercure.html at `origin` in a new browser context (another visitor). */
async function openPage(origin: string, setup?: (c: BrowserContext) => Promise<void>) {
  if (browser === undefined) throw new Error('Chromium did not start');
  const context = await browser.newContext();
  contexts.push(context);
  await setup?.(context);
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${origin}: ${err.message}`));
  await page.goto(`${origin}${PAGE}`);
  return { context, page };
}

/** The access-token cookie for the hub of `s`, as a server would set it (HttpOnly, Strict, Path). */
async function addTokenCookie(context: BrowserContext, token: string): Promise<void> {
  await context.addCookies([
    {
      name: COOKIE,
      value: token,
      domain: '127.0.0.1',
      path: HUB_PATH,
      httpOnly: true,
      sameSite: 'Strict',
    },
  ]);
}

function logOf(page: Page, index: number): Promise<PageLog> {
  return page.evaluate<PageLog>(`window.mercureLogs[${index}]`);
}

/**
 * Opens an EventSource in `page` on the hub of `s` with the matchers; resolves its log index once
 * it is open and the hub counts it (so a publish that follows reaches it).
 */
async function subscribeIn(
  s: TestSidecar,
  page: Page,
  matchers: Array<[string, string]>,
  options: { types?: string[]; withCredentials?: boolean } = {},
): Promise<number> {
  const before = await mercureConnections(s);
  const args = [hubUrl(s), matchers, options.types ?? [], options.withCredentials ?? false];
  const index = await page.evaluate<number>(`window.mercureSubscribe(...${JSON.stringify(args)})`);
  await page.waitForFunction(`window.mercureLogs[${index}].opens >= 1`, undefined, {
    timeout: 10_000,
  });
  await eventually(
    async () => (await mercureConnections(s)) > before,
    5000,
    'the hub to count the browser stream',
  );
  return index;
}

/** Waits until the page's subscription `index` received an update whose data is `data`. */
async function received(page: Page, index: number, data: string): Promise<void> {
  await page.waitForFunction(
    `window.mercureLogs[${index}].events.some((e) => e.data === ${JSON.stringify(data)})`,
    undefined,
    { timeout: 10_000 },
  );
}

async function dataOf(page: Page, index: number): Promise<string[]> {
  return (await logOf(page, index)).events.map((e) => e.data);
}

describe('Mercure in Chromium: a page served by the sidecar subscribes to its hub', () => {
  let s: TestSidecar | undefined;
  /** Servers of mercure.html on other ports: other origins of the same site (127.0.0.1). */
  let allowed: Server | undefined;
  let denied: Server | undefined;
  let allowedOrigin = '';
  let deniedOrigin = '';

  async function serveElsewhere(): Promise<{ server: Server; origin: string }> {
    const html = await readFile(join(APP_ROOT, 'mercure.html'));
    const server = createServer((req, res) => {
      if (req.url === PAGE) res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      else res.writeHead(404);
      res.end(req.url === PAGE ? html : undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  beforeAll(async () => {
    ({ server: allowed, origin: allowedOrigin } = await serveElsewhere());
    ({ server: denied, origin: deniedOrigin } = await serveElsewhere());
    s = await startTestSidecar({
      ...MERCURE_BASE,
      'mercure.cookie_name': COOKIE,
      'mercure.cors_origins': [allowedOrigin],
      'log.access_log': false,
    });
  });
  afterAll(async () => {
    await s?.close();
    allowed?.close();
    denied?.close();
  });

  function sidecar(): TestSidecar {
    if (s === undefined) throw new Error('the sidecar did not start');
    return s;
  }

  const publish = (fields: Fields): Promise<string> => publishOk(sidecar(), fields);

  it('receives updates selected by match and match_urlpattern, absolute and relative', async () => {
    const { page } = await openPage(sidecar().url);
    const index = await subscribeIn(
      sidecar(),
      page,
      [
        ['match', 'https://example.com/books/1'],
        ['match_urlpattern', 'https://example.com/authors/:id'],
        // Relative: resolved against the hub URL, like the relative topic published below.
        ['match_urlpattern', '/shelves/:id'],
      ],
      { types: ['author'] },
    );
    const book = await publish({ topic: 'https://example.com/books/1', data: 'book one' });
    const author = await publish({
      topic: 'https://example.com/authors/9',
      data: 'author nine',
      type: 'author',
    });
    await publish({ topic: 'https://example.com/books/2', data: 'not selected' });
    const shelf = await publish({ topic: '/shelves/3', data: 'shelf three' });
    await received(page, index, 'shelf three');
    expect((await logOf(page, index)).events).toEqual([
      { type: 'message', id: book, data: 'book one' },
      { type: 'author', id: author, data: 'author nine' },
      { type: 'message', id: shelf, data: 'shelf three' },
    ]);
  });

  it('a private update reaches the page with the access-token cookie, not the page without', async () => {
    const topic = 'https://example.com/users/42/inbox';
    const token = await hubToken(sidecar(), [
      detail(['subscribe'], [urlpattern('https://example.com/users/42/*')]),
    ]);
    const withCookie = await openPage(sidecar().url, (c) => addTokenCookie(c, token));
    const without = await openPage(sidecar().url);
    // HttpOnly: the page's script cannot read the token.
    expect(await withCookie.page.evaluate<string>('document.cookie')).toBe('');
    const a = await subscribeIn(sidecar(), withCookie.page, [['match', topic]]);
    const b = await subscribeIn(sidecar(), without.page, [['match', topic]]);

    await publish({ topic, data: 'secret', private: 'on' });
    await publish({ topic, data: 'public' });
    await received(withCookie.page, a, 'public');
    await received(without.page, b, 'public');
    expect(await dataOf(withCookie.page, a)).toEqual(['secret', 'public']);
    expect(await dataOf(without.page, b)).toEqual(['public']);
  });

  it('withCredentials from another origin listed in cors_origins carries the cookie; an unlisted origin is refused', async () => {
    const topic = 'https://example.com/users/43/inbox';
    const token = await hubToken(sidecar(), [detail(['subscribe'], [topic])]);
    // Another port of 127.0.0.1: another origin but the same site, so the Strict cookie of the
    // hub's host goes with a credentialed EventSource.
    const other = await openPage(allowedOrigin, (c) => addTokenCookie(c, token));
    const index = await subscribeIn(sidecar(), other.page, [['match', topic]], {
      withCredentials: true,
    });
    await publish({ topic, data: 'cross-origin secret', private: 'on' });
    await publish({ topic, data: 'cross-origin public' });
    await received(other.page, index, 'cross-origin public');
    expect(await dataOf(other.page, index)).toEqual(['cross-origin secret', 'cross-origin public']);

    // The unlisted origin: the CORS check fails the EventSource for good (readyState CLOSED).
    const refused = await openPage(deniedOrigin, (c) => addTokenCookie(c, token));
    const args = [hubUrl(sidecar()), [['match', topic]], [], true];
    const refusedIndex = await refused.page.evaluate<number>(
      `window.mercureSubscribe(...${JSON.stringify(args)})`,
    );
    await refused.page.waitForFunction(
      `window.mercureLogs[${refusedIndex}].readyState === 2`,
      undefined,
      { timeout: 10_000 },
    );
    expect(await logOf(refused.page, refusedIndex)).toMatchObject({ opens: 0, events: [] });
  });
});

describe('Mercure in Chromium: EventSource resumes after the sidecar ends its stream', () => {
  let s: TestSidecar | undefined;

  beforeAll(async () => {
    s = await startTestSidecar({
      ...MERCURE_BASE,
      // Streams end after a second; EventSource comes back after the retry: hint.
      'sse.max_lifetime': '1s',
      'sse.retry': '200ms',
      'log.access_log': false,
    });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('reconnects with Last-Event-ID and gets the update published while it was disconnected, once', async () => {
    if (s === undefined) throw new Error('the sidecar did not start');
    const sidecar = s;
    const topic = 'https://example.com/books/resume';
    const { page } = await openPage(sidecar.url);

    // The reconnection request is held until an update has been published: that update can only
    // reach the page by the replay of the resume (the page's URL has no last_event_id, so only
    // the Last-Event-ID header EventSource adds can ask for it). Chromium adds that header below
    // the interception layer, so the route does not see it.
    let requests = 0;
    let during: Promise<string> | undefined;
    await page.route(`${hubUrl(sidecar)}?**`, async (route) => {
      requests += 1;
      if (requests > 1) {
        during ??= publishOk(sidecar, { topic, data: 'during' });
        await during;
      }
      await route.continue();
    });

    const index = await subscribeIn(sidecar, page, [['match', topic]]);
    const before = await publishOk(sidecar, { topic, data: 'before' });
    await received(page, index, 'before');
    await received(page, index, 'during');
    await page.waitForFunction(`window.mercureLogs[${index}].opens >= 2`, undefined, {
      timeout: 10_000,
    });
    const after = await publishOk(sidecar, { topic, data: 'after' });
    await received(page, index, 'after');

    expect(requests).toBeGreaterThanOrEqual(2);
    const log = await logOf(page, index);
    expect(log.errors).toBeGreaterThanOrEqual(1);
    expect(log.events).toEqual([
      { type: 'message', id: before, data: 'before' },
      { type: 'message', id: await during, data: 'during' },
      { type: 'message', id: after, data: 'after' },
    ]);
  });
});
