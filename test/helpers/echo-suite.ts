/**
 * The Laravel Echo API against the Laravel fixture in Chromium, with the real laravel-echo package
 * and AskrConnector: one suite, run for the session guard (test/echo-session.test.ts) and for the
 * token guard (test/echo-token.test.ts, `bearerToken`). Each user has their own browser context
 * (their own stream); pages of one context would share one (test/echo-tabs.test.ts).
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './chromium.ts';
import {
  metric,
  newUserContext,
  openEchoPage,
  phpRequests,
  publishProbe,
  startEchoApp,
  until,
  type Build,
  type EchoApp,
  type Guard,
  type User,
} from './echo-app.ts';

interface Entry {
  tag: string;
  data: unknown;
}

/** What the callbacks made with `record(tag)` received, in order. */
export async function logOf(page: Page, tag?: string): Promise<unknown[]> {
  const log = await page.evaluate<Entry[]>('window.log');
  return log.filter((e) => tag === undefined || e.tag === tag).map((e) => e.data);
}

/** Waits until the page's log has `count` entries tagged `tag`. */
export async function waitLog(page: Page, tag: string, count = 1): Promise<void> {
  await until(
    page,
    `window.log.filter((e) => e.tag === ${JSON.stringify(tag)}).length >= ${count}`,
  );
}

/** Defines the suite for one guard and one build of the connector. */
export function echoApiSuite(guard: Guard, build: Build): void {
  let app: EchoApp | undefined;
  let browser: Browser | undefined;
  const contexts: BrowserContext[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    app = await startEchoApp();
    browser = await launchChromium();
  });

  afterEach(async () => {
    for (const context of contexts.splice(0)) await context.close();
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  function echoApp(): EchoApp {
    if (app === undefined) throw new Error('the app did not start');
    return app;
  }

  /** A new browser context for `user` (its own stream) with the Echo page open. */
  async function open(user: User): Promise<{ page: Page; context: BrowserContext }> {
    if (browser === undefined) throw new Error('Chromium did not start');
    const context = await newUserContext(browser, echoApp(), user, guard, pageErrors);
    contexts.push(context);
    const page = await openEchoPage(context, echoApp(), user, guard, build);
    return { page, context };
  }

  describe(`laravel-echo + AskrConnector (${guard} guard, ${build} build)`, () => {
    it('an event broadcast on [probe, private-orders.1] reaches the listeners of both channels', async () => {
      const { page } = await open('alice');
      const auths: string[] = [];
      page.on('request', (req) => {
        if (req.url().endsWith('/askr/auth')) auths.push(req.postData() ?? '');
      });
      await page.evaluate(`
        Echo.channel('probe').listen('ProbeSent', record('probe')).subscribed(record('sub'));
        Echo.private('orders.1').listen('ProbeSent', record('orders')).subscribed(record('sub'));
        Echo.join('room.1').subscribed(record('sub'));
      `);
      await waitLog(page, 'sub', 3);
      await publishProbe(echoApp(), 'on both');
      await waitLog(page, 'orders');
      await waitLog(page, 'probe');
      const log = await page.evaluate<Entry[]>('window.log.filter((e) => e.tag !== "sub")');
      // One frame per channel, in the order of broadcastOn().
      expect(log).toEqual([
        { tag: 'probe', data: { text: 'on both' } },
        { tag: 'orders', data: { text: 'on both' } },
      ]);
      // Both guarded channels were authorized in one request.
      expect(auths.map((body) => (JSON.parse(body) as { channels: string[] }).channels)).toEqual([
        ['private-orders.1', 'presence-room.1'],
      ]);
    });

    it('listen() with and without the leading dot, broadcastAs() names, stopListening()', async () => {
      const { page } = await open('alice');
      await page.evaluate(String.raw`
        window.short = record('short');
        Echo.channel('probe')
          .listen('ProbeSent', short)
          .listen('.App\\Events\\ProbeSent', record('dotted'))
          .listen('.ProbeSent', record('never'))
          .subscribed(record('sub'));
        Echo.channel('probe').listenToAll((event, data) => log.push({ tag: 'all', data: [event, data] }));
        Echo.channel('chat')
          .listenToAll((event, data) => log.push({ tag: 'all', data: [event, data] }))
          .listen('.message.posted', record('as'))
          .listen('message.posted', record('never'))
          .subscribed(record('sub'));
      `);
      await waitLog(page, 'sub', 2);
      await fetch(`${echoApp().url()}/api/chat`, {
        method: 'POST',
        headers: { Authorization: 'Bearer carol-token', 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: 'hello' }),
      });
      await publishProbe(echoApp(), 'one');
      await waitLog(page, 'dotted');
      // Without the callback, Echo (as pusher-js) would unbind every listener of that name.
      await page.evaluate(`Echo.channel('probe').stopListening('ProbeSent', short)`);
      await publishProbe(echoApp(), 'two');
      await waitLog(page, 'dotted', 2);
      expect(await logOf(page, 'as')).toEqual([{ user: 'Carol', text: 'hello' }]);
      expect(await logOf(page, 'short')).toEqual([{ text: 'one' }]);
      expect(await logOf(page, 'dotted')).toEqual([{ text: 'one' }, { text: 'two' }]);
      expect(await logOf(page, 'never')).toEqual([]);
      // listenToAll(): the namespace taken off, other names with a leading dot (as Echo does).
      expect(await logOf(page, 'all')).toEqual([
        ['.message.posted', { user: 'Carol', text: 'hello' }],
        ['ProbeSent', { text: 'one' }],
        ['ProbeSent', { text: 'two' }],
      ]);
    });

    it('notification() gets the user`s broadcast notifications', async () => {
      const { page } = await open('alice');
      await page.evaluate(`
        Echo.private('App.Models.User.1').notification(record('note')).subscribed(record('sub'));
      `);
      await waitLog(page, 'sub');
      await page.evaluate(`axios.post('/notify', { text: 'you have mail' })`);
      await waitLog(page, 'note');
      const [note] = (await logOf(page, 'note')) as Array<Record<string, unknown>>;
      expect(note).toMatchObject({
        text: 'you have mail',
        type: 'App\\Notifications\\ProbeNotification',
      });
      expect(note?.['id']).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('whisper() reaches the other members of a private or presence channel, never the sender', async () => {
      const alice = await open('alice');
      const bob = await open('bob');
      for (const { page } of [alice, bob]) {
        await page.evaluate(`
          Echo.private('team.1').listenForWhisper('typing', record('team')).subscribed(record('sub'));
          Echo.join('room.1').listenForWhisper('typing', record('room')).subscribed(record('sub'));
        `);
        await waitLog(page, 'sub', 2);
      }
      await alice.page.evaluate(`
        Echo.private('team.1').whisper('typing', { who: 'alice' });
        Echo.join('room.1').whisper('typing', { who: 'alice', in: 'room' });
      `);
      await waitLog(bob.page, 'team');
      await waitLog(bob.page, 'room');
      await bob.page.evaluate(`Echo.private('team.1').whisper('typing', { who: 'bob' })`);
      await waitLog(alice.page, 'team');
      expect(await logOf(bob.page)).toEqual(
        expect.arrayContaining([{ who: 'alice' }, { who: 'alice', in: 'room' }]),
      );
      expect(await logOf(bob.page, 'team')).toEqual([{ who: 'alice' }]);
      expect(await logOf(alice.page, 'team')).toEqual([{ who: 'bob' }]);
      expect(await logOf(alice.page, 'room')).toEqual([]);
    });

    it('toOthers(): Echo`s interceptor sends X-Socket-ID, the sender`s page skips its own event', async () => {
      const alice = await open('alice');
      const bob = await open('bob');
      for (const { page } of [alice, bob]) {
        await page.evaluate(
          `Echo.channel('probe').listen('ProbeSent', record('probe')).subscribed(record('sub'))`,
        );
        await waitLog(page, 'sub');
      }
      const sent = await alice.page.evaluate<{ socket: string; echo: string }>(`
        axios.post('/probe', { text: 'not to alice', others: true })
          .then((r) => ({ socket: r.data.socket, echo: Echo.socketId() }))
      `);
      expect(sent.socket).toMatch(/^\d+\.\d+$/);
      expect(sent.socket).toBe(sent.echo);
      await waitLog(bob.page, 'probe');
      await publishProbe(echoApp(), 'to everyone');
      await waitLog(alice.page, 'probe');
      await waitLog(bob.page, 'probe', 2);
      // In publish order: had alice's page got its own event, it would be first.
      expect(await logOf(alice.page, 'probe')).toEqual([{ text: 'to everyone' }]);
      expect(await logOf(bob.page, 'probe')).toEqual([
        { text: 'not to alice' },
        { text: 'to everyone' },
      ]);
    });

    it('presence: here, joining and leaving follow the other users', async () => {
      const alice = await open('alice');
      await alice.page.evaluate(`
        Echo.join('room.1').here(record('here')).joining(record('joining')).leaving(record('leaving'));
      `);
      await waitLog(alice.page, 'here');
      expect(await logOf(alice.page, 'here')).toEqual([[{ id: 1, name: 'Alice' }]]);
      const bob = await open('bob');
      await bob.page.evaluate(`Echo.join('room.1').here(record('here'))`);
      await waitLog(alice.page, 'joining');
      await waitLog(bob.page, 'here');
      const [bobHere] = (await logOf(bob.page, 'here')) as Array<Array<{ name: string }>>;
      expect(bobHere?.map((m) => m.name).sort()).toEqual(['Alice', 'Bob']);
      expect(await logOf(alice.page, 'joining')).toEqual([{ id: 2, name: 'Bob' }]);
      await bob.context.close();
      await waitLog(alice.page, 'leaving');
      expect(await logOf(alice.page, 'leaving')).toEqual([{ id: 2, name: 'Bob' }]);
    });

    it('a refused channel calls its error callback; the allowed channels keep receiving', async () => {
      const { page } = await open('alice');
      await page.evaluate(`
        Echo.channel('probe').listen('ProbeSent', record('probe'));
        Echo.private('orders.1').listen('ProbeSent', record('orders')).subscribed(record('sub'));
        Echo.private('orders.2').error(record('error')).subscribed(record('never'));
      `);
      await waitLog(page, 'error');
      await waitLog(page, 'sub');
      expect(await logOf(page, 'error')).toEqual([
        expect.objectContaining({ type: 'AuthError', status: 403 }),
      ]);
      await publishProbe(echoApp(), 'still here');
      await waitLog(page, 'probe');
      await waitLog(page, 'orders');
      // A channel joined later still works.
      await page.evaluate(`Echo.private('team.1').subscribed(record('later'))`);
      await waitLog(page, 'later');
      expect(await logOf(page, 'never')).toEqual([]);
      expect(await page.evaluate('Echo.connectionStatus()')).toBe('connected');
    });

    it('leaveChannel() and leaveAllChannels() unsubscribe the stream for real', async () => {
      const { page } = await open('alice');
      const streams = new Set<string>();
      page.on('request', (req) => {
        if (req.url().includes('/askr/events')) streams.add(req.url());
      });
      page.on('requestfailed', (req) => streams.delete(req.url()));
      page.on('requestfinished', (req) => streams.delete(req.url()));
      await page.evaluate(`
        Echo.channel('probe').listen('ProbeSent', record('probe')).subscribed(record('sub'));
        Echo.private('orders.1').listen('ProbeSent', record('orders')).subscribed(record('sub'));
      `);
      await waitLog(page, 'sub', 2);
      await page.evaluate(`Echo.leaveChannel('private-orders.1')`);
      await expect
        .poll(() => [...streams].map((url) => new URL(url).searchParams.getAll('channel')))
        .toEqual([['probe']]);
      await publishProbe(echoApp(), 'probe only');
      await waitLog(page, 'probe');
      await page.evaluate(`Echo.leaveAllChannels()`);
      expect(await page.evaluate('Object.keys(Echo.connector.channels)')).toEqual([]);
      await expect.poll(() => streams.size).toBe(0);
      expect(await page.evaluate('Echo.connectionStatus()')).toBe('disconnected');
      // Published before the chat message: had the stream kept `probe`, it would come first.
      await publishProbe(echoApp(), 'after leaving');
      await page.evaluate(
        `Echo.channel('chat').listen('.message.posted', record('chat')).subscribed(record('sub'))`,
      );
      await waitLog(page, 'sub', 3);
      await fetch(`${echoApp().url()}/api/chat`, {
        method: 'POST',
        headers: { Authorization: 'Bearer carol-token', 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: 'after' }),
      });
      await waitLog(page, 'chat');
      expect(await logOf(page, 'probe')).toEqual([{ text: 'probe only' }]);
      expect(await logOf(page, 'orders')).toEqual([]);
    });

    it('connectionStatus() and onConnectionChange() follow the stream; the returned function unsubscribes', async () => {
      const { page } = await open('alice');
      expect(await page.evaluate('Echo.connectionStatus()')).toBe('disconnected');
      await page.evaluate(`
        window.offCalls = [];
        const off = Echo.connector.onConnectionChange((s) => offCalls.push(s));
        off();
        Echo.channel('probe').subscribed(record('sub'));
      `);
      await waitLog(page, 'sub');
      expect(await page.evaluate('Echo.connectionStatus()')).toBe('connected');
      await page.evaluate('Echo.disconnect()');
      expect(await page.evaluate('Echo.connectionStatus()')).toBe('disconnected');
      expect(await page.evaluate('window.statuses')).toEqual([
        'connecting',
        'connected',
        'disconnected',
      ]);
      expect(await page.evaluate('window.offCalls')).toEqual([]);
    });

    it('a sidecar restart: the stream resumes within its grant, with no PHP request and no event lost', async () => {
      const { page } = await open('alice');
      await page.evaluate(`
        Echo.channel('probe').listen('ProbeSent', record('probe')).subscribed(record('sub'));
        Echo.private('orders.1').listen('ProbeSent', record('orders')).subscribed(record('sub'));
        Echo.join('room.1').here(record('here'));
      `);
      await waitLog(page, 'sub', 2);
      await waitLog(page, 'here');
      await publishProbe(echoApp(), 'before');
      await waitLog(page, 'orders');
      const before = await phpRequests(echoApp());
      const statusesBefore = await page.evaluate<number>('window.statuses.length');
      await echoApp().restart();
      await until(
        page,
        `window.statuses.slice(${statusesBefore}).includes('reconnecting') && Echo.connectionStatus() === 'connected'`,
      );
      expect(await metric(echoApp(), 'askr_sse_connections{kind="events"}')).toBe(1);
      // Not one request reached PHP: the grant authorized the private and presence channels.
      expect(await phpRequests(echoApp())).toEqual(before);
      await publishProbe(echoApp(), 'after');
      await waitLog(page, 'orders', 2);
      await waitLog(page, 'probe', 2);
      expect(await logOf(page, 'orders')).toEqual([{ text: 'before' }, { text: 'after' }]);
      expect(await logOf(page, 'probe')).toEqual([{ text: 'before' }, { text: 'after' }]);
    });

    // The token guard only (a session page has no token to pass).
    if (guard === 'token')
      it('the token in auth.headers works as bearerToken does (no session at all)', async () => {
        if (browser === undefined) throw new Error('Chromium did not start');
        const context = await newUserContext(browser, echoApp(), 'alice', guard, pageErrors);
        contexts.push(context);
        const page = await openEchoPage(context, echoApp(), 'alice', guard, build, '&via=headers');
        const auth: Array<Record<string, string>> = [];
        page.on('request', (req) => {
          if (req.url().endsWith('/askr/auth')) auth.push(req.headers());
        });
        await page.evaluate(`
          Echo.private('orders.1').listen('ProbeSent', record('orders')).subscribed(record('sub'));
          Echo.private('orders.2').error(record('error'));
        `);
        await waitLog(page, 'sub');
        await waitLog(page, 'error');
        expect(auth.map((h) => h['authorization'])).toEqual(['Bearer alice-token']);
        expect(auth[0]?.['cookie'] ?? '').not.toContain('laravel_session');
        await publishProbe(echoApp(), 'via headers');
        await waitLog(page, 'orders');
        expect(await logOf(page, 'orders')).toEqual([{ text: 'via headers' }]);
      });

    it('no page raised an error', () => {
      expect(pageErrors).toEqual([]);
    });
  });
}
