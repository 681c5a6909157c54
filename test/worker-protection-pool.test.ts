/**
 * Worker protection, pool side: nothing about the shape of an external php-fpm pool takes the site
 * down. Whatever its process manager (static, dynamic, ondemand) or an over-stated
 * fastcgi.pool_size, a burst of clients through the sidecar all get 200, and another FastCGI client
 * of the same pool is not starved by connections the sidecar keeps.
 * A regression looks like: part of the 64 requests answer 504 after fastcgi.read_timeout (here:
 * UND_ERR_HEADERS_TIMEOUT after 5 s), because the sidecar opened more connections than the pool
 * has workers and kept the accepted ones alive, so the rest sat in FPM's listen backlog; or the raw
 * FastCGI request waits until the sidecar's idle connections expire.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  concurrentGets,
  sidecarBehind,
  startFpmPool,
  withDeadline,
  type FpmPool,
  type FpmPoolShape,
} from './helpers/fpm-pool.ts';
import { rawFastCgiRequest, scriptParams } from './helpers/raw-fastcgi.ts';
import { APP_ROOT, type TestSidecar } from './helpers/sidecar.ts';
import { runCleanups, type Cleanups } from './helpers/wait.ts';

/** Per test: well under the 60 s of fastcgi.read_timeout, so a stall fails instead of passing late. */
const TEST_TIMEOUT_MS = 30_000;
/**
 * Per request: 64 requests of ~20 ms on 2 workers need under a second in all; 5 s is a request
 * that sat in FPM's backlog behind a connection the sidecar kept (freed only when it idles out).
 */
const REQUEST_TIMEOUT_MS = 5_000;

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

async function pool(shape: FpmPoolShape): Promise<FpmPool> {
  const fpm = await startFpmPool(shape);
  cleanups.push(() => fpm.stop());
  return fpm;
}

/** A sidecar with default settings in front of `fpm`, scripts callable by name, plus `overrides`. */
function sidecar(fpm: FpmPool, overrides: Record<string, unknown> = {}): Promise<TestSidecar> {
  return sidecarBehind(fpm, cleanups, overrides);
}

/** The end of php-fpm's log ("server reached pm.max_children"...), for failure messages. */
function fpmLog(fpm: FpmPool): string {
  return `php-fpm log:\n${fpm.log().slice(-2_000)}`;
}

const SHAPES: Array<[string, FpmPoolShape]> = [
  ['static, 2 workers', { pm: 'static', maxChildren: 2 }],
  [
    "dynamic, 5 workers (Debian's stock www pool: start 2, spare 1-3)",
    { pm: 'dynamic', maxChildren: 5, startServers: 2, minSpareServers: 1, maxSpareServers: 3 },
  ],
  ['ondemand, 4 workers', { pm: 'ondemand', maxChildren: 4 }],
];

describe('an external php-fpm pool of any shape behind default settings', () => {
  for (const [name, shape] of SHAPES) {
    it(
      `64 concurrent clients all get 200 from a pool of pm = ${name}`,
      async () => {
        const fpm = await pool(shape);
        const s = await sidecar(fpm);
        const outcomes = await concurrentGets(`${s.url}/protect-work.php`, 64, REQUEST_TIMEOUT_MS);
        expect(outcomes, fpmLog(fpm)).toEqual({ '200': 64 });
      },
      TEST_TIMEOUT_MS,
    );
  }
});

describe('a second FastCGI client of the same pool', () => {
  it(
    'is answered while the sidecar is idle after a burst (static, 2 workers)',
    async () => {
      const fpm = await pool({ pm: 'static', maxChildren: 2 });
      const s = await sidecar(fpm);
      // As many clients at once as there are workers, round after round: the sidecar itself is
      // never short of a worker here, so only what it keeps once idle can starve the other client.
      for (let round = 0; round < 10; round++) {
        const outcomes = await concurrentGets(`${s.url}/protect-work.php`, 2, REQUEST_TIMEOUT_MS);
        expect(outcomes, fpmLog(fpm)).toEqual({ '200': 2 });
      }
      // A free worker answers in ~20 ms. fastcgi.idle_timeout (2 s) must not be what frees it:
      // an idle sidecar keeps no connection to a pool whose size it was not told.
      const res = await withDeadline(
        rawFastCgiRequest(fpm.address, scriptParams(join(APP_ROOT, 'protect-work.php'))),
        1_000,
        'the answer to a raw FastCGI request while the sidecar is idle (a worker pinned by a kept connection?)',
      );
      expect(res.appStatus).toBe(0);
      expect(res.stdout.toString('utf8')).toMatch(/\r\n\r\nok \d+\n$/);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'fastcgi.pool_size = 16 over-stating a static 2-worker pool: 64 concurrent clients all get 200',
    async () => {
      const fpm = await pool({ pm: 'static', maxChildren: 2 });
      const s = await sidecar(fpm, { 'fastcgi.pool_size': '16' });
      const outcomes = await concurrentGets(`${s.url}/protect-work.php`, 64, REQUEST_TIMEOUT_MS);
      expect(outcomes, fpmLog(fpm)).toEqual({ '200': 64 });
    },
    TEST_TIMEOUT_MS,
  );
});
