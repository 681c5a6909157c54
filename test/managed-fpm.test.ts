/**
 * Integration tests of the managed php-fpm (src/fpm/managed-fpm.ts) against the real php-fpm of
 * this machine: it serves PHP over its private socket, PHP errors arrive as FCGI_STDERR, a
 * SIGKILLed master is restarted with backoff, stop() and process exit leave no process behind.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { ErrorCodes, SidecarError } from '../src/errors.ts';
import { findPhpFpm, type ManagedFpm, type ManagedFpmOptions } from '../src/fpm/managed-fpm.ts';
import { isAlive, livePidsInGroup } from '../src/fpm/process-group.ts';
import { startTestFpm } from './helpers/fpm.ts';
import { rawFastCgiRequest, scriptParams } from './helpers/raw-fastcgi.ts';
import { until } from './helpers/wait.ts';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures-php/fpm-test');
const NODE = path.resolve(import.meta.dirname, '../node_modules/.bin/node');

interface LogRecord {
  level: number;
  msg: string;
  [key: string]: unknown;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function tempRunDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'askr-fpm-test-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A pino logger that keeps its records in memory. */
function memoryLogger(): { logger: pino.Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (s: string) => records.push(JSON.parse(s) as LogRecord) },
  );
  return { logger, records };
}

async function start(
  overrides: Partial<ManagedFpmOptions> = {},
): Promise<{ fpm: ManagedFpm; records: LogRecord[]; runDir: string }> {
  const { logger, records } = memoryLogger();
  const runDir = overrides.runDir ?? tempRunDir();
  const fpm = await startTestFpm(runDir, { restartBackoffMaxMs: 4_000, logger, ...overrides });
  cleanups.push(() => fpm.stop(2_000));
  return { fpm, records, runDir };
}

function hello(fpm: ManagedFpm): Promise<Record<string, Record<string, unknown>>> {
  return rawFastCgiRequest(fpm.address, scriptParams(path.join(FIXTURES, 'hello.php'))).then(
    (r) => {
      const body = r.stdout.toString().split('\r\n\r\n')[1] ?? '';
      return JSON.parse(body) as Record<string, Record<string, unknown>>;
    },
  );
}

describe('managed php-fpm', () => {
  it('serves PHP on a private socket with the configured ini and only the configured env', async () => {
    process.env['ASKR_TEST_SECRET'] = 'must-not-reach-php';
    cleanups.push(() => {
      delete process.env['ASKR_TEST_SECRET'];
    });
    const tricky = '$HOME "q" \\ ;x ${PATH}';
    const { fpm, runDir } = await start({
      env: { ASKR_TEST_VALUE: tricky + ' $pool', ASKR_TEST_EMPTY: '' },
      ini: { memory_limit: '123M', error_prepend_string: tricky },
    });

    expect(fpm.address).toBe(`unix:${path.join(runDir, 'php-fpm.sock')}`);
    expect(fpm.binary).toMatch(/php-fpm/);
    expect(fs.statSync(runDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(runDir, 'php-fpm.sock')).mode & 0o777).toBe(0o600);

    const res = await hello(fpm);
    expect(res['hello']).toBe('from php-fpm');
    expect(res['sapi']).toBe('fpm-fcgi');
    expect(res['env']).toMatchObject({
      ASKR_TEST_VALUE: tricky + ' $pool',
      ASKR_TEST_EMPTY: '',
      ASKR_TEST_SECRET: false, // clear_env = yes: the sidecar's environment stays private
      PATH: process.env['PATH'],
    });
    expect(res['ini']).toMatchObject({
      memory_limit: '123M',
      error_prepend_string: tricky,
      log_errors: '1',
      error_log: '',
    });
  });

  it('delivers error_log() and trigger_error() output as FCGI_STDERR, not as warnings of fpm', async () => {
    const { fpm, records } = await start();
    const res = await rawFastCgiRequest(
      fpm.address,
      scriptParams(path.join(FIXTURES, 'errors.php')),
    );
    expect(res.appStatus).toBe(0);
    expect(res.stdout.toString()).toContain('body-after-errors');
    const stderr = res.stderr.toString();
    expect(stderr).toContain('PHP message: askr-probe: error_log');
    expect(stderr).toMatch(/PHP message: PHP Warning: +askr-probe: trigger_error in .*errors\.php/);

    // catch_workers_output also copies them to fpm's stderr: that copy must stay at debug.
    await until(
      () => records.some((r) => r.msg.includes('askr-probe: trigger_error')),
      10_000,
      'the debug copy',
    );
    const loud = records.filter((r) => r.level >= 40 && r.msg.includes('askr-probe'));
    expect(loud).toEqual([]);
  });

  it('restarts a SIGKILLed master with backoff, kills its orphaned workers, and is ready again', async () => {
    let restarts = 0;
    const { fpm, records } = await start({
      onRestart: () => {
        restarts++;
      },
    });
    const first = fpm.pid();
    expect(first).toBeTypeOf('number');
    if (first === undefined) return;
    const firstWorker = (await hello(fpm))['pid'];

    process.kill(first, 'SIGKILL');
    await until(() => fpm.pid() !== undefined && fpm.pid() !== first, 10_000, 'a new master');
    await fpm.ready();
    const second = fpm.pid();
    expect(restarts).toBe(1);
    expect(isAlive(first)).toBe(false);
    // The workers of the killed master shared its process group; none may keep serving.
    await until(() => livePidsInGroup(first).length === 0, 10_000, 'old workers gone');
    expect(livePidsInGroup(first)).toEqual([]);
    expect(isAlive(Number(firstWorker))).toBe(false);
    expect((await hello(fpm))['hello']).toBe('from php-fpm');

    // A second crash soon after waits twice as long.
    if (second === undefined) return;
    process.kill(second, 'SIGKILL');
    await until(() => fpm.pid() !== undefined && fpm.pid() !== second, 10_000, 'a third master');
    await fpm.ready();
    expect(restarts).toBe(2);
    const delays = records.filter((r) => r['delayMs'] !== undefined).map((r) => r['delayMs']);
    expect(delays).toEqual([250, 500]);
  });

  it('stop() leaves no process, removes the socket, never restarts, and ready() then rejects', async () => {
    let restarts = 0;
    const { fpm, runDir } = await start({
      onRestart: () => {
        restarts++;
      },
    });
    const pid = fpm.pid();
    if (pid === undefined) throw new Error('no pid');
    await hello(fpm);

    await fpm.stop();
    expect(fpm.pid()).toBeUndefined();
    expect(isAlive(pid)).toBe(false);
    expect(livePidsInGroup(pid)).toEqual([]);
    expect(fs.existsSync(path.join(runDir, 'php-fpm.sock'))).toBe(false);
    await expect(fpm.ready()).rejects.toMatchObject({ code: ErrorCodes.FPM_START });
    // Longer than the first restart delay (250 ms): a supervisor that still ran would respawn now.
    await sleep(400);
    expect(restarts).toBe(0);
    expect(fpm.pid()).toBeUndefined();
  });

  it('stop() lets a running request finish (graceful SIGQUIT)', async () => {
    const { fpm } = await start();
    const params = scriptParams(path.join(FIXTURES, 'sleep.php'), { QUERY_STRING: 's=0.5' });
    const pending = rawFastCgiRequest(fpm.address, params);
    await sleep(200); // the worker is inside the script now
    await fpm.stop();
    const res = await pending;
    expect(res.appStatus).toBe(0);
    expect(res.stdout.toString()).toContain('sleeping done');
  });

  it('stop() escalates to SIGTERM when a request outlives the grace period', async () => {
    const { fpm, records } = await start();
    const pid = fpm.pid();
    if (pid === undefined) throw new Error('no pid');
    // The worker dies mid-request: the connection ends with a reset or a close, never a reply.
    const pending = rawFastCgiRequest(
      fpm.address,
      scriptParams(path.join(FIXTURES, 'sleep.php')),
    ).then(
      (r) => r.appStatus,
      (err: unknown) => (err as NodeJS.ErrnoException).code,
    );
    await sleep(200); // the worker is inside the script now

    const t0 = Date.now();
    await fpm.stop(300);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(livePidsInGroup(pid)).toEqual([]);
    expect(records.some((r) => r.msg.includes('did not stop gracefully'))).toBe(true);
    expect([undefined, 'ECONNRESET']).toContain(await pending);
  });

  it('fails with a clear error naming the php-fpm package when the binary is missing', async () => {
    const err: unknown = await start({ binary: '/nonexistent/php-fpm9.9' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SidecarError);
    expect(err).toMatchObject({ code: ErrorCodes.FPM_START });
    expect((err as Error).message).toContain('/nonexistent/php-fpm9.9');
    expect((err as Error).message).toContain('apt-get install php-fpm');
  });

  it("fails with php-fpm's own stderr when php-fpm refuses to start", async () => {
    // A wrapper that runs the real php-fpm with a configuration file that does not exist.
    const real = findPhpFpm('');
    if (real === null) throw new Error('php-fpm not found');
    const wrapper = path.join(tempRunDir(), 'broken-fpm');
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${real} "$@" -y /nonexistent/askr.conf\n`, {
      mode: 0o755,
    });
    const err: unknown = await start({ binary: wrapper }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCodes.FPM_START });
    expect((err as Error).message).toMatch(/failed to start: exited with code [1-9]/);
    expect((err as Error).message).toContain('/nonexistent/askr.conf');
  });

  it('rejects pool options that would inject php-fpm directives', async () => {
    const bad: Partial<ManagedFpmOptions>[] = [
      { ini: { 'memory_limit] = 1\nphp_admin_value[x': '1' } },
      { ini: { memory_limit: '1\nlisten = 0.0.0.0:9000' } },
      { env: { 'A=B': 'x' } },
    ];
    for (const overrides of bad) {
      const err: unknown = await start(overrides).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCodes.FPM_START });
    }
  });
});

describe('the shared php-fpm of test/helpers/global-setup.ts', () => {
  it('is provided as fpmAddress and runs PHP', async () => {
    const address = inject('fpmAddress');
    expect(address).toMatch(/^unix:\/.*php-fpm\.sock$/);
    const res = await rawFastCgiRequest(address, scriptParams(path.join(FIXTURES, 'hello.php')));
    expect(res.appStatus).toBe(0);
    expect(res.stdout.toString()).toContain('"hello":"from php-fpm"');
  });
});

describe('managed php-fpm when the sidecar process goes away', () => {
  async function runChild(
    runDir: string,
    mode: 'exit' | 'hang',
  ): Promise<{ pid: number; child: ReturnType<typeof spawn> }> {
    const child = spawn(
      NODE,
      [path.resolve(import.meta.dirname, 'helpers/fpm-child.ts'), runDir, mode],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    cleanups.push(() => void child.kill('SIGKILL'));
    const lines = readline.createInterface({ input: child.stdout });
    const [line] = (await once(lines, 'line')) as [string];
    return { pid: (JSON.parse(line) as { pid: number }).pid, child };
  }

  it('kills php-fpm when the Node process exits without stop()', async () => {
    const { pid, child } = await runChild(tempRunDir(), 'exit');
    await once(child, 'exit');
    await until(() => livePidsInGroup(pid).length === 0, 10_000, 'php-fpm gone');
  });

  it('reaps a php-fpm orphaned by a SIGKILLed sidecar on the next start in that runDir', async () => {
    const runDir = tempRunDir();
    const { pid, child } = await runChild(runDir, 'hang');
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(isAlive(pid)).toBe(true); // orphaned: nothing could stop it

    const { fpm } = await start({ runDir });
    await until(() => livePidsInGroup(pid).length === 0, 10_000, 'orphan gone');
    expect(fpm.pid()).not.toBe(pid);
    expect((await hello(fpm))['hello']).toBe('from php-fpm');
  });
});
