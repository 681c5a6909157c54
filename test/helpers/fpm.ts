/**
 * A private php-fpm for the integration tests that need their own (stopped, restarted, killed)
 * instead of the shared one from globalSetup. No vitest import: test/helpers/fpm-child.ts runs
 * this in a plain Node process.
 */
import { pino } from 'pino';
import {
  startManagedFpm,
  type ManagedFpm,
  type ManagedFpmOptions,
} from '../../src/fpm/managed-fpm.ts';

/**
 * Starts a managed php-fpm in `runDir`: the binary found on this machine, 2 static workers, no
 * recycling, no terminate timeout, no extra ini or env, restarts backed off up to 1 s, a silent
 * logger. `overrides` replace any of these. Rejects as startManagedFpm does (php-fpm missing,
 * socket not ready); stopping it is the caller's job.
 */
export function startTestFpm(
  runDir: string,
  overrides: Partial<ManagedFpmOptions> = {},
): Promise<ManagedFpm> {
  return startManagedFpm({
    binary: '',
    runDir,
    maxChildren: 2,
    maxRequests: 0,
    requestTerminateTimeoutMs: 0,
    ini: {},
    env: {},
    restartBackoffMaxMs: 1_000,
    logger: pino({ level: 'silent' }),
    ...overrides,
  });
}
