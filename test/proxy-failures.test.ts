/**
 * Failure handling against real processes: FPM down and back (502 then 200), our read timeout
 * (504), pool exhaustion (503 after the bounded wait), client abort mid-response (the FPM
 * connection is destroyed, never leaked back to the pool).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { ManagedFpm } from '../src/fpm/managed-fpm.ts';
import { startTestFpm } from './helpers/fpm.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { until } from './helpers/wait.ts';

const started: Array<TestSidecar | ManagedFpm> = [];
afterAll(async () => {
  for (const s of started.reverse()) {
    if ('close' in s) await s.close();
    else await s.stop();
  }
});

async function sidecarWith(overrides: Record<string, unknown>): Promise<TestSidecar> {
  const s = await startTestSidecar(overrides);
  started.push(s);
  return s;
}

async function fpmIn(runDir: string): Promise<ManagedFpm> {
  const fpm = await startTestFpm(runDir);
  started.push(fpm);
  return fpm;
}

describe('FPM failures', () => {
  it('answers 502 with a clear body while FPM is down, and recovers when it returns', async () => {
    const runDir = await mkdtemp(join(tmpdir(), 'askr-fpm-down-'));
    const fpm = await fpmIn(runDir);
    const s = await sidecarWith({ 'fastcgi.address': fpm.address });
    const ok = await request(`${s.url}/status/200`);
    expect(ok.statusCode).toBe(200);
    await ok.body.text();

    await fpm.stop();
    const down = await request(`${s.url}/status/200`);
    const text = await down.body.text();
    expect(down.statusCode).toBe(502);
    expect(text).toContain('PHP-FPM is unavailable');
    expect(text).toMatch(/request id: [0-9a-f]{16}/);
    expect(text).not.toContain(runDir); // internals stay in the log

    await fpmIn(runDir); // same socket path
    const back = await request(`${s.url}/status/200`);
    expect(back.statusCode).toBe(200);
    await back.body.text();
  });

  it('answers 504 when PHP is slower than fastcgi.read_timeout', async () => {
    const s = await sidecarWith({ 'fastcgi.read_timeout': '300ms' });
    const res = await request(`${s.url}/slow?ms=1500`);
    const text = await res.body.text();
    expect(res.statusCode).toBe(504);
    expect(text).toContain('read');
    // Regression: the 504 body used to end with "(unix:/tmp/…/php-fpm.sock)".
    expect(text).not.toMatch(/unix:|\.sock/);
    expect(text).toContain('<fpm>');
  });

  it('answers 503 after fastcgi.queue_timeout when every connection is busy', async () => {
    const s = await sidecarWith({ 'fastcgi.pool_size': '1', 'fastcgi.queue_timeout': '300ms' });
    const slow = request(`${s.url}/slow?ms=1500`);
    await until(() => s.pool.stats().busy === 1);
    const t0 = Date.now();
    const res = await request(`${s.url}/status/200`);
    const text = await res.body.text();
    expect(res.statusCode).toBe(503);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(text).toMatch(/busy|queue/i);
    const first = await slow;
    expect(first.statusCode).toBe(200);
    await first.body.text();
  });

  it('answers 503 at once when the queue is full', async () => {
    const s = await sidecarWith({ 'fastcgi.pool_size': '1', 'fastcgi.queue_size': '0' });
    const slow = request(`${s.url}/slow?ms=800`);
    await until(() => s.pool.stats().busy === 1);
    const res = await request(`${s.url}/status/200`);
    await res.body.text();
    expect(res.statusCode).toBe(503);
    await (await slow).body.text();
  });

  it('client abort mid-response destroys the FPM connection and leaks nothing', async () => {
    const s = await sidecarWith({ 'fastcgi.pool_size': '2' });
    const controller = new AbortController();
    const res = await request(`${s.url}/big?mib=64`, { signal: controller.signal });
    // Read a little, then stop reading and go away: the sidecar must pause FPM, then abort it.
    const iterator = res.body[Symbol.asyncIterator]();
    await iterator.next();
    controller.abort();
    await until(() => s.pool.stats().busy === 0);
    expect(s.pool.stats().busy).toBe(0);
    // The pool still serves requests afterwards.
    for (let i = 0; i < 4; i++) {
      const again = await request(`${s.url}/status/200`);
      expect(again.statusCode).toBe(200);
      await again.body.text();
    }
    await until(() => s.logs.some((l) => l['msg'] === 'request' && l['status'] === 499));
  });
});
