/**
 * The batched access log (issue 13, item 3) loses nothing: every access line of N requests is on
 * stdout after a graceful stop, with a batch interval far longer than the test so only the stop's
 * flush can have written them; a process that exits (process.exit, an uncaught exception) writes
 * what it had buffered. A recurrence looks like fewer lines than requests, or a missing last line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import { APP_ROOT } from './helpers/sidecar.ts';

const BIN = fileURLToPath(new URL('../bin/askr-sidecar.js', import.meta.url));
const LOGGER = fileURLToPath(new URL('../src/observability/logger.ts', import.meta.url));

const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
});

function start(command: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [command, ...args], {
    env: {
      ...process.env,
      ASKR_BROADCAST_SOCKET: '',
      ASKR_METRICS_ENABLED: 'false',
      // Nothing is written by the interval during the test: only a flush can write the lines.
      ASKR_LOG_BUFFER: '16000B',
      ASKR_LOG_FLUSH_INTERVAL: '10m',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit').then(([code]) => ({
    code: code as number | null,
    stdout,
    stderr,
  }));
  return { child, exited, stdout: () => stdout };
}

function linesWith(stdout: string, msg: string): Array<Record<string, unknown>> {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['msg'] === msg);
}

describe('access log output', () => {
  it('writes every access line of N requests by the end of a graceful stop', async () => {
    const s = start(BIN, [
      'serve',
      '-l',
      '127.0.0.1:0',
      '-r',
      APP_ROOT,
      '-f',
      inject('fpmAddress'),
    ]);
    const url = await new Promise<string>((resolve, reject) => {
      const onData = (): void => {
        const line = s
          .stdout()
          .split('\n')
          .find((l) => l.includes('"msg":"askr-sidecar listening"'));
        const u = /"url":"(http:\/\/[^"]+)"/.exec(line ?? '');
        if (u?.[1] !== undefined) resolve(u[1]);
      };
      s.child.stdout.on('data', onData);
      void s.exited.then((r) => reject(new Error(`exited early: ${r.stdout}${r.stderr}`)));
    });
    const N = 400;
    for (let i = 0; i < N; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const res = await request(`${url}/assets/app.js?n=${String(i + j)}`);
          await res.body.dump();
          expect(res.statusCode).toBe(200);
        }),
      );
    }
    s.child.kill('SIGTERM');
    const { code, stdout } = await s.exited;
    expect(code).toBe(0);
    const seen = new Set(linesWith(stdout, 'request').map((l) => String(l['path'])));
    expect(seen.size).toBe(N);
    expect(stdout).toContain('askr-sidecar stopped');
  });

  // The child logs through the real output with a batch no interval will write, then ends.
  const script = (ending: string): string => `
    import { createLogger, createLogOutput } from ${JSON.stringify(LOGGER)};
    const logger = createLogger('info', createLogOutput({ buffer: 16000, flush_interval: 600000, max_buffer: 0 }));
    for (let i = 0; i < 50; i++) logger.info({ i }, 'request');
    ${ending}
  `;

  it.each([
    ['process.exit', 'process.exit(3);', 3],
    ['an uncaught exception', 'setImmediate(() => { throw new Error("boom"); });', 1],
  ])('writes what was buffered when the process ends by %s', async (_name, ending, status) => {
    const s = start('--input-type=module', ['-e', script(ending)]);
    const { code, stdout } = await s.exited;
    expect(code).toBe(status);
    expect(linesWith(stdout, 'request').map((l) => l['i'])).toEqual(
      Array.from({ length: 50 }, (_, i) => i),
    );
  });
});
