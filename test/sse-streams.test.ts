/**
 * Publish -> receive through every path, against the real sidecar, php-fpm and PHP CLI publishers:
 * datagrams from PHP-FPM and PHP CLI, HTTP publish, X-Askr-Subscribe and GRIP holds, the events
 * endpoint (public and private channels), replay and askr:lost, heartbeat, limits, close action,
 * passthrough, CORS, and cleanup of disconnected subscribers.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { connect } from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { EventSource } from 'eventsource';
import { phpTempDir } from './helpers/php-temp.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { connectedSocketId, dataFrames, openStream } from './helpers/sse-client.ts';
import { until } from './helpers/wait.ts';

const run = promisify(execFile);
const SHIM = fileURLToPath(new URL('../php/src/askr.php', import.meta.url));
const TOKEN = 'test-token-123';

let s: TestSidecar;
let socketPath: string;
beforeAll(async () => {
  socketPath = join(await phpTempDir('askr-sse-'), 'askr.sock');
  s = await startTestSidecar({
    'broadcast.socket': socketPath,
    'sse.publish_token': TOKEN,
    'sse.heartbeat_interval': '300ms',
    'sse.history_size': '5',
    'sse.max_channels_per_connection': '4',
    'sse.max_channel_name_length': '32',
    'sse.allowed_origins': 'https://app.example, *',
  });
});
afterAll(async () => {
  await s.close();
});

async function phpCliPublish(code: string): Promise<string> {
  const { stdout } = await run('php', ['-r', `require '${SHIM}'; ${code}`], {
    env: { ...process.env, ASKR_SOCKET: socketPath },
  });
  return stdout;
}

async function httpPublish(
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(`${s.url}/askr/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  const json = (res.headers['content-type'] ?? '').toString().startsWith('application/json')
    ? (JSON.parse(text) as Record<string, unknown>)
    : { error: text };
  return { status: res.statusCode, json };
}

describe('events endpoint', () => {
  it('a datagram from PHP CLI (askr_broadcast) reaches an EventSource subscriber', async () => {
    const es = new EventSource(`${s.url}/askr/events?channel=cli-orders`);
    try {
      const got = new Promise<MessageEvent>((resolve) => (es.onmessage = resolve));
      await once(es, 'open');
      await until(() => s.hub.stats().connections >= 1);
      expect(
        await phpCliPublish(`var_export(askr_broadcast('cli-orders', json_encode(['id' => 42])));`),
      ).toBe('true');
      const event = await got;
      expect(JSON.parse(event.data as string)).toEqual({ id: 42 });
      expect(event.lastEventId).toMatch(/^[A-Za-z0-9_.-]+-\d+@cli-orders$/);
    } finally {
      es.close();
    }
  });

  it('sends SSE headers, retry: first, and heartbeats', async () => {
    const st = await openStream(`${s.url}/askr/events?channel=hb`);
    expect(st.status).toBe(200);
    expect(st.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(st.headers['cache-control']).toBe('no-cache');
    expect(st.headers['x-accel-buffering']).toBe('no');
    expect(st.headers['content-encoding']).toBeUndefined();
    expect((await st.frame(0)).retry).toBe(3000);
    await st.waitFor((f) => f.comments.includes('ping'), 3000);
    st.close();
  });

  it('a datagram from PHP-FPM reaches the subscriber (several channels on one stream, tagged)', async () => {
    const st = await openStream(`${s.url}/askr/events?channel=fpm-a&channel=fpm-b`);
    await until(() => s.hub.stats().channels >= 2);
    const res = await request(`${s.url}/publish?channel=fpm-b&data=hello%0Aworld&event=greeting`);
    expect(await res.body.json()).toEqual({ ok: true, error: null });
    const f = await st.waitFor((x) => x.event === 'greeting');
    expect(f.data).toBe('hello\nworld');
    expect(f.id).toMatch(/@fpm-b$/);
    st.close();
  });

  it('HTTP publish: bearer token required, JSON and raw bodies', async () => {
    const st = await openStream(`${s.url}/askr/events?channel=http-ch`);
    await until(() => s.hub.stats().channels >= 1);
    const denied = await request(`${s.url}/askr/publish`, {
      method: 'POST',
      headers: { authorization: 'Bearer wrong' },
      body: '{}',
    });
    expect(denied.statusCode).toBe(401);
    await denied.body.text();
    const ok = await httpPublish({ channel: 'http-ch', data: 'json-body', event: 'e1' });
    expect(ok.status).toBe(202);
    expect(ok.json['subscribers']).toBe(1);
    const raw = await request(`${s.url}/askr/publish?channel=http-ch&event=e2`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: 'raw\r\nbody',
    });
    expect(raw.statusCode).toBe(202);
    await raw.body.text();
    expect((await st.waitFor((f) => f.event === 'e1')).data).toBe('json-body');
    expect((await st.waitFor((f) => f.event === 'e2')).data).toBe('raw\nbody');
    const badEvent = await httpPublish({ channel: 'http-ch', data: 'x', event: 'a\nb' });
    expect(badEvent.status).toBe(400);
    st.close();
  });

  it.each([
    ['/askr/events', 400, /no channel given/],
    [
      '/askr/events?channel=a&channel=b&channel=c&channel=d&channel=e',
      400,
      /5 channels requested; the limit is 4/,
    ],
    ['/askr/events?channel=bad%20name', 400, /character outside/],
    [`/askr/events?channel=${'x'.repeat(33)}`, 400, /33 bytes; the limit is 32/],
  ])('%s is refused with a message naming the limit', async (path, status, message) => {
    const res = await request(`${s.url}${path}`);
    expect(res.statusCode).toBe(status);
    expect(await res.body.text()).toMatch(message);
  });

  it('private channels: allowed for their owner, 403 for another user and for a guest', async () => {
    const owner = await openStream(`${s.url}/askr/events?channel=private-user.42`, {
      cookie: 'user=42',
    });
    expect(owner.status).toBe(200);
    for (const cookie of ['user=7', '']) {
      const res = await request(`${s.url}/askr/events?channel=private-user.42`, {
        headers: cookie === '' ? {} : { cookie },
      });
      expect(res.statusCode).toBe(403);
      expect(await res.body.text()).toContain('not authorized for channel "private-user.42"');
    }
    await httpPublish({ channel: 'private-user.42', data: 'secret' });
    expect((await owner.waitFor((f) => f.data === 'secret')).id).toMatch(/@private-user\.42$/);
    owner.close();
  });

  it('CORS: listed origins get credentials, others get "*" when allowed', async () => {
    const listed = await openStream(`${s.url}/askr/events?channel=cors`, {
      origin: 'https://app.example',
    });
    expect(listed.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(listed.headers['access-control-allow-credentials']).toBe('true');
    listed.close();
    const other = await openStream(`${s.url}/askr/events?channel=cors`, {
      origin: 'https://other.example',
    });
    expect(other.headers['access-control-allow-origin']).toBe('*');
    expect(other.headers['access-control-allow-credentials']).toBeUndefined();
    other.close();
  });

  it('replays missed events after a reconnect with Last-Event-ID, and says askr:lost past the history', async () => {
    const first = await openStream(`${s.url}/askr/events?channel=replay`);
    await until(() => s.hub.stats().channels >= 1);
    await httpPublish({ channel: 'replay', data: 'e0' });
    const seen = await first.waitFor((f) => f.data === 'e0');
    first.close();
    await httpPublish({ channel: 'replay', data: 'e1' });
    await httpPublish({ channel: 'replay', data: 'e2' });
    const again = await openStream(`${s.url}/askr/events?channel=replay`, {
      'last-event-id': seen.id ?? '',
    });
    await again.waitFor((f) => f.data === 'e2');
    // askr:connected opens the resumed stream, then the replay: exactly the missed events.
    expect(connectedSocketId(again.frames)).toMatch(/^\d+\.\d+$/);
    expect(dataFrames(again.frames).map((f) => f.data)).toEqual(['e1', 'e2']);
    again.close();

    // history_size is 5: seven more events push the client's position out of the history.
    for (let i = 3; i < 10; i++) await httpPublish({ channel: 'replay', data: `e${i}` });
    const late = await openStream(
      `${s.url}/askr/events?channel=replay&lastEventId=${encodeURIComponent(seen.id ?? '')}`,
    );
    const lost = await late.waitFor((f) => f.event === 'askr:lost');
    expect(JSON.parse(lost.data ?? '{}')).toMatchObject({ reason: 'too_old' });
    late.close();

    const otherEpoch = await openStream(`${s.url}/askr/events?channel=replay`, {
      'last-event-id': 'someoneelse-5@replay',
    });
    expect(
      JSON.parse((await otherEpoch.waitFor((f) => f.event === 'askr:lost')).data ?? '{}'),
    ).toMatchObject({ reason: 'epoch' });
    otherEpoch.close();
  });

  it('a close publish ends the streams of that channel', async () => {
    const st = await openStream(`${s.url}/askr/events?channel=job-7`);
    await until(() => s.hub.stats().channels >= 1);
    await httpPublish({ channel: 'job-7', data: '[DONE]', close: true });
    await st.ended;
    expect(st.frames.some((f) => f.data === '[DONE]')).toBe(true);
  });

  it('clients that disconnect leave no subscriber behind', async () => {
    const before = s.hub.stats().connections;
    const streams = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        openStream(`${s.url}/askr/events?channel=gone-${i % 3}`),
      ),
    );
    await until(() => s.hub.stats().connections === before + 20);
    for (const st of streams) st.close();
    await until(() => s.hub.stats().connections === before);
    expect(s.hub.stats().connections).toBe(before);
  });

  it('a slow consumer is disconnected while a fast one keeps receiving everything', async () => {
    const slowSidecar = await startTestSidecar({
      'sse.subscriber_queue_size': '1MiB',
      'sse.publish_token': TOKEN,
    });
    try {
      const fast = await openStream(`${slowSidecar.url}/askr/events?channel=firehose`);
      const slow = connect(slowSidecar.port, '127.0.0.1');
      await once(slow, 'connect');
      slow.write('GET /askr/events?channel=firehose HTTP/1.1\r\nHost: x\r\n\r\n');
      slow.pause(); // never reads: the kernel buffers fill, then the sidecar's queue
      await until(() => slowSidecar.hub.stats().connections === 2);
      // Loopback socket buffers absorb several MiB before the sidecar's own queue grows, so
      // publish 32 MiB; the hub must drop the slow stream and never wait for it.
      const payload = Buffer.alloc(64 * 1024, 'x');
      for (let i = 0; i < 500; i++) {
        slowSidecar.hub.publish({
          channels: ['firehose'],
          data: payload,
          event: `n${i}`,
          ingress: 'internal',
        });
        // A publisher that paces itself a little: a reading client keeps up, a stalled one cannot.
        await new Promise((r) => setTimeout(r, 1));
      }
      await until(() => slowSidecar.hub.stats().connections === 1);
      await fast.waitFor((f) => f.event === 'n499', 20_000);
      expect(fast.frames.filter((f) => f.event?.startsWith('n')).length).toBe(500);
      fast.close();
      slow.destroy();
    } finally {
      await slowSidecar.close();
    }
  });
});

describe('holds from PHP', () => {
  it('X-Askr-Subscribe: PHP body first, then live events; the FPM worker is free while held', async () => {
    const st = await openStream(`${s.url}/hold?channels=hold-a,hold-b`, { cookie: 'user=9' });
    expect(st.status).toBe(200);
    expect(st.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(st.headers['x-askr-subscribe']).toBeUndefined();
    const init = await st.waitFor((f) => f.event === 'init');
    expect(JSON.parse(init.data ?? '')).toEqual({ user: '9' });
    expect(s.pool.stats().busy).toBe(0);
    await httpPublish({ channel: 'hold-b', data: 'live' });
    expect((await st.waitFor((f) => f.data === 'live')).id).toMatch(/@hold-b$/);
    st.close();
  });

  it('GRIP: Grip-Hold: stream with Grip-Channel is held; instruction headers stripped', async () => {
    const st = await openStream(`${s.url}/grip?channel=grip-ch`);
    expect(st.status).toBe(200);
    expect(st.headers['grip-hold']).toBeUndefined();
    expect(st.headers['grip-channel']).toBeUndefined();
    await st.waitFor((f) => f.comments.includes('grip stream open'));
    await until(() => s.hub.stats().channels >= 1);
    await httpPublish({ channel: 'grip-ch', data: 'via grip' });
    await st.waitFor((f) => f.data === 'via grip');
    st.close();
  });

  it('an invalid hold from PHP is a 500 that names the problem', async () => {
    const res = await request(`${s.url}/hold-bad`);
    expect(res.statusCode).toBe(500);
    expect(await res.body.text()).toMatch(/invalid stream: .*character outside/);
  });

  it('passthrough: Accept: text/event-stream without a hold streams each flush() at once', async () => {
    const t0 = Date.now();
    const st = await openStream(`${s.url}/sse-loop?n=3&ms=400`);
    expect(st.headers['content-type']).toMatch(/^text\/event-stream/);
    await st.waitFor((f) => f.data === 'tick 0');
    expect(Date.now() - t0).toBeLessThan(700); // well before the script's 1.2 s
    await st.ended;
    expect(st.frames.map((f) => f.data)).toEqual(['tick 0', 'tick 1', 'tick 2']);
  });
});
