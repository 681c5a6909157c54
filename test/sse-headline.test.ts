/**
 * The headline property and the publishing stress cases, end to end:
 * - an FPM pool of 2 workers holds 500 SSE clients while ordinary PHP requests still succeed
 *   (a recurrence: holds pin workers and /status/200 times out or gets 503);
 * - a burst of 10,000 publishes from 8 concurrent PHP CLI processes reaches a subscriber complete
 *   and in order per publisher;
 * - thousands of random datagrams do not hurt the running sidecar.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { DgramSocket } from 'node-unix-socket';
import type { ManagedFpm } from '../src/fpm/managed-fpm.ts';
import { startTestFpm } from './helpers/fpm.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream, type SseStream } from './helpers/sse-client.ts';
import { until } from './helpers/wait.ts';

const run = promisify(execFile);
const BURST = fileURLToPath(new URL('../fixtures-php/publish/burst.php', import.meta.url));

let fpm: ManagedFpm;
let s: TestSidecar;
let socketPath: string;
beforeAll(async () => {
  const dir = await phpTempDir('askr-headline-');
  socketPath = join(dir, 'askr.sock');
  fpm = await startTestFpm(join(dir, 'fpm'));
  s = await startTestSidecar({
    'fastcgi.address': fpm.address,
    'fastcgi.pool_size': '2',
    'broadcast.socket': socketPath,
    'sse.max_connections_per_ip': '2000',
    'log.access_log': 'false',
  });
});
afterAll(async () => {
  await s.close();
  await fpm.stop();
});

describe('headline: 2 FPM workers, 500 held streams', () => {
  it('holds 500 SSE clients while ordinary PHP requests still succeed, and delivers to all', async () => {
    const streams: SseStream[] = [];
    try {
      for (let batch = 0; batch < 10; batch++) {
        const opened = await Promise.all(
          Array.from({ length: 50 }, () => openStream(`${s.url}/hold?channels=headline`)),
        );
        streams.push(...opened);
      }
      expect(streams.every((st) => st.status === 200)).toBe(true);
      await until(() => s.hub.stats().byKind.hold === 500, 10_000);
      // Every worker is free: the holds live in the sidecar, not in PHP.
      expect(s.pool.stats().busy).toBe(0);
      for (let i = 0; i < 20; i++) {
        const res = await request(`${s.url}/status/200`);
        expect(res.statusCode).toBe(200);
        await res.body.text();
      }
      const publish = await request(`${s.url}/publish?channel=headline&data=to-all-500&event=all`);
      expect(await publish.body.json()).toEqual({ ok: true, error: null });
      await Promise.all(streams.map((st) => st.waitFor((f) => f.data === 'to-all-500', 10_000)));
    } finally {
      for (const st of streams) st.close();
    }
    await until(() => s.hub.stats().connections === 0, 10_000);
  });
});

describe('publishing under load', () => {
  it('10,000 publishes from 8 concurrent PHP processes arrive complete and in order per publisher', async () => {
    const st = await openStream(`${s.url}/askr/events?channel=burst`);
    await until(() => s.hub.stats().channels >= 1, 10_000);
    await Promise.all(
      Array.from({ length: 8 }, (_, p) =>
        run('php', [BURST, String(p), '1250'], {
          env: { ...process.env, ASKR_SOCKET: socketPath },
        }),
      ),
    );
    await until(() => st.frames.filter((f) => f.event === 'burst').length === 10_000, 20_000);
    const next = new Array<number>(8).fill(0);
    for (const f of st.frames) {
      if (f.event !== 'burst') continue;
      const [publisher, n] = (f.data ?? '').split(':').map(Number);
      expect(n).toBe(next[publisher ?? 0]);
      next[publisher ?? 0] = (n ?? 0) + 1;
    }
    expect(next).toEqual(new Array<number>(8).fill(1250));
    st.close();
  });

  it('random datagrams are rejected one by one and never stop delivery', async () => {
    const st = await openStream(`${s.url}/askr/events?channel=after-fuzz`);
    await until(() => s.hub.stats().channels >= 1, 10_000);
    const sock = new DgramSocket();
    const sendAll = async (): Promise<void> => {
      for (let i = 0; i < 3000; i++) {
        const size = Math.floor(Math.random() * 300);
        const junk =
          i % 3 === 0
            ? Buffer.concat([Buffer.from('{"channel":'), randomBytes(size)])
            : randomBytes(size + 1);
        await new Promise<void>((resolve) =>
          sock.sendTo(junk, 0, junk.length, socketPath, () => resolve()),
        );
      }
    };
    await sendAll();
    const good = Buffer.from('{"channel":"after-fuzz","event":"ok"}\nstill here');
    await new Promise<void>((resolve) =>
      sock.sendTo(good, 0, good.length, socketPath, () => resolve()),
    );
    sock.close();
    expect((await st.waitFor((f) => f.event === 'ok')).data).toBe('still here');
    await until(
      () =>
        s.logs.some(
          (l) => typeof l['msg'] === 'string' && /datagram/i.test(l['msg']) && l['level'] === 40,
        ),
      10_000,
    );
    st.close();
  });
});
