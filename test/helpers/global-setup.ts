/**
 * vitest globalSetup of the integration project: starts ONE real php-fpm (the managed mode of the
 * sidecar, 8 static workers, private socket under the OS temp dir) and provides its address to every
 * test file as inject('fpmAddress'). A missing php-fpm fails the run with a clear message: never skip.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { TestProject } from 'vitest/node';
import { startManagedFpm, type ManagedFpm } from '../../src/fpm/managed-fpm.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** 'unix:/tmp/askr-it-fpm-XXXX/php-fpm.sock': the shared php-fpm of the integration tests. */
    fpmAddress: string;
  }
}

export default async function setup({ provide }: TestProject): Promise<() => Promise<void>> {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'askr-it-fpm-'));
  // Warnings of FPM itself (a crashing worker) show up in the test output; nothing else.
  const logger = pino({ level: 'warn', base: { service: 'test-fpm' } }, pino.destination(2));
  let fpm: ManagedFpm;
  try {
    fpm = await startManagedFpm({
      binary: process.env['ASKR_TEST_FPM_BINARY'] ?? '',
      runDir,
      maxChildren: 8,
      maxRequests: 0,
      requestTerminateTimeoutMs: 0,
      ini: {},
      env: {},
      restartBackoffMaxMs: 2_000,
      logger,
    });
  } catch (err) {
    fs.rmSync(runDir, { recursive: true, force: true });
    throw new Error(
      `Integration tests need a real php-fpm and it could not be started. ` +
        `Run "node scripts/ensure-system.mjs test" (as root it installs Debian's php-fpm), ` +
        `or set ASKR_TEST_FPM_BINARY to a php-fpm binary.\n${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  provide('fpmAddress', fpm.address);

  return async () => {
    await fpm.stop(5_000);
    fs.rmSync(runDir, { recursive: true, force: true });
  };
}
