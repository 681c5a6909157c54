/**
 * The Laravel fixture with the real laravel-echo for the Echo tests (test/echo-*.test.ts): a private
 * copy of the app (test/helpers/laravel-app.ts), laravel-echo's ES module and script builds copied
 * from node_modules into its public/vendor/laravel-echo (never committed), and a sidecar with
 * metrics, a fixed grant secret and a state file, so a restart keeps ids and grants. Pages open
 * /echo (session guard, signed in through the login form) or /echo-token (token guard).
 */
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { assertLaravelInstalled, makeLaravelApp } from './laravel-app.ts';
import { phpTempDir } from './php-temp.ts';
import { startTestSidecar, type TestSidecar } from './sidecar.ts';

const ECHO_DIST = fileURLToPath(new URL('../../node_modules/laravel-echo/dist/', import.meta.url));

export type Guard = 'session' | 'token';
export type Build = 'esm' | 'iife';
export type User = 'alice' | 'bob' | 'carol';

export interface EchoApp {
  /** The app copy's directory. */
  readonly app: string;
  /** The running sidecar (a new one after restart()). */
  sidecar(): TestSidecar;
  /** "http://127.0.0.1:PORT", the same across restarts. */
  url(): string;
  /** Stops the sidecar and starts it again on the same port, socket and state file. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Makes the app copy and starts its sidecar; `settings` are more sidecar overrides. Rejects when
 * Laravel is missing (with the fix) or a step fails.
 */
export async function startEchoApp(settings: Record<string, string> = {}): Promise<EchoApp> {
  await assertLaravelInstalled();
  const tmp = await phpTempDir('askr-echo-');
  const socket = join(tmp, 'askr.sock');
  const app = await makeLaravelApp(tmp, socket);
  const vendor = join(app, 'public/vendor/laravel-echo');
  await mkdir(vendor, { recursive: true });
  for (const file of ['echo.js', 'echo.iife.js']) {
    await copyFile(join(ECHO_DIST, file), join(vendor, file));
  }
  const start = (listen: string): Promise<TestSidecar> =>
    startTestSidecar({
      'server.root': join(app, 'public'),
      'server.listen': listen,
      'broadcast.socket': socket,
      'sse.state_file': join(tmp, 'sse-state.json'),
      'sse.grant_secret': 'echo-tests-grant-secret-0123456789abcdef',
      // The client reconnects this long after the sidecar ended its stream.
      'sse.retry': '200ms',
      'metrics.enabled': 'true',
      'metrics.listen': '127.0.0.1:0',
      ...settings,
    });
  let sidecar: TestSidecar | undefined = await start('127.0.0.1:0');
  let url = sidecar.url;
  const current = (): TestSidecar => {
    if (sidecar === undefined) throw new Error('the sidecar is not running');
    return sidecar;
  };
  return {
    app,
    sidecar: current,
    url: () => url,
    async restart() {
      const port = new URL(url).port;
      await current().close();
      sidecar = undefined;
      sidecar = await start(`127.0.0.1:${port}`);
      url = sidecar.url;
    },
    async close() {
      await sidecar?.close();
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

/**
 * A signed-in browser context for `user`: the session cookie (session guard) comes from the login
 * form; the token guard needs none. `pageErrors` collects uncaught page errors of its pages.
 */
export async function newUserContext(
  browser: Browser,
  app: EchoApp,
  user: User,
  guard: Guard,
  pageErrors: string[],
): Promise<BrowserContext> {
  const context = await browser.newContext();
  context.on('page', (page) => {
    page.on('pageerror', (err) => pageErrors.push(`${user}: ${err.message}`));
  });
  if (guard === 'session') {
    const page = await context.newPage();
    await page.goto(`${app.url()}/login`);
    await page.fill('input[name="email"]', `${user}@example.test`);
    await page.fill('input[name="password"]', 'secret');
    await page.click('#login button[type="submit"]');
    await page.waitForURL('**/dashboard');
    await page.close();
  }
  return context;
}

/**
 * Opens the Echo page in `context` and waits until `window.Echo` exists. `query` adds parameters
 * (`via=headers`: the token guard's token in `auth.headers` instead of `bearerToken`).
 */
export async function openEchoPage(
  context: BrowserContext,
  app: EchoApp,
  user: User,
  guard: Guard,
  build: Build = 'esm',
  query = '',
): Promise<Page> {
  const page = await context.newPage();
  const path =
    guard === 'session'
      ? `/echo?build=${build}${query}`
      : `/echo-token?token=${user}-token&build=${build}${query}`;
  await page.goto(`${app.url()}${path}`);
  await page.waitForFunction('window.echoReady === true', undefined, { timeout: 10_000 });
  return page;
}

/** Waits until `expression` (page JavaScript) is truthy. */
export async function until(page: Page, expression: string, timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction(expression, undefined, { timeout: timeoutMs });
}

/** The requests PHP served so far ("POST /broadcasting/auth", ...), from CountRequests. */
export async function phpRequests(app: EchoApp): Promise<string[]> {
  const text = await readFile(join(app.app, 'storage/logs/requests.log'), 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line !== '');
}

/** A sample of the sidecar's metrics, e.g. `askr_sse_connections{kind="events"}`. */
export async function metric(app: EchoApp, sample: string): Promise<number> {
  const admin = app.sidecar().adminUrl;
  if (admin === null) throw new Error('the sidecar has no metrics listener');
  const text = await (await fetch(`${admin}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return 0;
}

/**
 * Broadcasts ProbeSent (channels `probe` and `private-orders.1`) from outside any page: a POST to
 * /api/probe with carol's token and no X-Socket-ID, so every page gets it.
 */
export async function publishProbe(app: EchoApp, text: string): Promise<void> {
  const res = await fetch(`${app.url()}/api/probe`, {
    method: 'POST',
    headers: {
      Authorization: 'Bearer carol-token',
      'Content-Type': 'application/json',
      Accept: 'application/json',
    },
    body: JSON.stringify({ text }),
  });
  if (!res.ok) throw new Error(`POST /api/probe: ${res.status} ${await res.text()}`);
}
