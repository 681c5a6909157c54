/**
 * server.semi_space_size as users run the CLI (issue 13: 2,000 SSE streams opened and closed 40
 * times left V8's young generation at 2 x 64 MiB for good). `askr-sidecar serve` runs node again
 * with --max-semi-space-size, in the same process (its pid's command line shows the flag), logs it,
 * and V8 took it (the new space of prom-client's heap metrics is two semi-spaces). A cap given in
 * NODE_OPTIONS is kept as it is; 0 leaves node alone. A recurrence looks like a sidecar whose
 * command line has no --max-semi-space-size and whose new space grows past the cap again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { APP_ROOT } from './helpers/sidecar.ts';

const BIN = fileURLToPath(new URL('../bin/askr-sidecar.js', import.meta.url));
const MIB = 1024 * 1024;

const children = new Set<ChildProcess>();
afterEach(async () => {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const gone = once(child, 'exit');
    child.kill('SIGKILL');
    await gone;
  }
  children.clear();
});

interface Started {
  child: ChildProcess;
  /** The JSON log lines up to "listening". */
  logs: Array<Record<string, unknown>>;
  metricsUrl: string;
}

/** `serve` with metrics on a free port, once it has logged that it listens. */
async function serve(env: Record<string, string>): Promise<Started> {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--listen', '127.0.0.1:0', '--root', APP_ROOT, '--fpm', '127.0.0.1:1'],
    {
      env: {
        ...process.env,
        NODE_OPTIONS: '',
        ASKR_BROADCAST_SOCKET: '',
        ASKR_METRICS_LISTEN: '127.0.0.1:0',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.add(child);
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line: ${out}${err}`)), 20_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const logs = out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const listening = logs.find((l) => l['msg'] === 'askr-sidecar listening');
      if (listening === undefined) return;
      clearTimeout(timer);
      resolve({ child, logs, metricsUrl: String(listening['metrics']) });
    });
    child.once('exit', () => reject(new Error(`exited early: ${out}${err}`)));
  });
}

/** The command line of the process the child's pid runs now. */
function cmdline(child: ChildProcess): string[] {
  return readFileSync(`/proc/${child.pid ?? 0}/cmdline`, 'utf8')
    .split('\0')
    .filter(Boolean);
}

/** V8's new space (two semi-spaces), committed bytes, from prom-client's heap space metrics. */
async function newSpaceBytes(metricsUrl: string): Promise<number> {
  const text = await (await request(`${metricsUrl}/metrics`)).body.text();
  const m = /^nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)/m.exec(text);
  if (m?.[1] === undefined) throw new Error(`no new-space metric in:\n${text.slice(0, 500)}`);
  return Number(m[1]);
}

function semiSpaceFlags(args: readonly string[]): string[] {
  return args.filter((a) => a.startsWith('--max-semi-space-size'));
}

describe('the young generation cap (server.semi_space_size)', () => {
  it('serve runs node again with the cap, in the same process, and V8 takes it', async () => {
    // 1 MiB: below V8's own sizing on any host, so the relaunch always happens here.
    const s = await serve({ ASKR_SERVER_SEMI_SPACE_SIZE: '1MiB' });
    const args = cmdline(s.child);
    expect(semiSpaceFlags(args)).toEqual(['--max-semi-space-size=1']);
    expect(args.slice(args.indexOf(BIN))).toEqual([
      BIN,
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--root',
      APP_ROOT,
      '--fpm',
      '127.0.0.1:1',
    ]);
    expect(s.logs).toContainEqual(
      expect.objectContaining({
        msg: 'V8 young generation capped',
        maxSemiSpaceMiB: 1,
        setBy: 'server.semi_space_size',
      }),
    );
    expect(await newSpaceBytes(s.metricsUrl)).toBeLessThanOrEqual(2 * MIB);
  });

  it('a cap given in NODE_OPTIONS is kept, and node is not run again', async () => {
    const s = await serve({ NODE_OPTIONS: '--max-semi-space-size=2' });
    expect(semiSpaceFlags(cmdline(s.child))).toEqual([]);
    expect(s.logs).toContainEqual(
      expect.objectContaining({
        msg: 'V8 young generation capped',
        maxSemiSpaceMiB: 2,
        setBy: 'NODE_OPTIONS',
      }),
    );
    expect(await newSpaceBytes(s.metricsUrl)).toBeLessThanOrEqual(4 * MIB);
  });

  it('0 leaves node as it was started', async () => {
    const s = await serve({ ASKR_SERVER_SEMI_SPACE_SIZE: '0' });
    expect(semiSpaceFlags(cmdline(s.child))).toEqual([]);
    expect(s.logs.filter((l) => String(l['msg']).includes('young generation'))).toEqual([]);
  });
});
