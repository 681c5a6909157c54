/**
 * The `askr-sidecar` command as users run it, in a child process: --help/--version, check-config
 * messages, the managed-FPM mode (no --fpm: it starts, serves the app, and stops its php-fpm), and
 * graceful shutdown (SIGTERM lets an in-flight PHP request finish, then exits 0).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import { APP_ROOT } from './helpers/sidecar.ts';

const BIN = fileURLToPath(new URL('../bin/askr-sidecar.js', import.meta.url));

/** Every child this file starts; afterEach kills those still running, so a failing test leaks none. */
const children = new Set<ChildProcess>();
afterEach(async () => {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    // Two signals: the sidecar exits at once and its exit hook stops a managed php-fpm.
    const gone = once(child, 'exit');
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(timer);
  }
  children.clear();
});

function run(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ASKR_BROADCAST_SOCKET: '', ASKR_METRICS_ENABLED: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  return child;
}

async function output(
  child: ChildProcess,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** Waits for the "listening" log line and returns the URL it names. */
async function listening(child: ChildProcess): Promise<string> {
  let buffered = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no listening line; output: ${buffered}`)),
      20_000,
    );
    child.stdout?.on('data', (d: Buffer) => {
      buffered += d.toString();
      const line = buffered.split('\n').find((l) => l.includes('"msg":"askr-sidecar listening"'));
      const m = /"url":"(http:\/\/[^"]+)"/.exec(line ?? '');
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', () => reject(new Error(`exited early: ${buffered}`)));
  });
}

/** `serve` on a free port with the shared php-fpm, once it has logged that it listens. */
async function serveOnSharedFpm(): Promise<{
  child: ChildProcess;
  exited: ReturnType<typeof output>;
  url: string;
}> {
  const child = run([
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--root',
    APP_ROOT,
    '--fpm',
    inject('fpmAddress'),
  ]);
  const exited = output(child);
  const url = await listening(child);
  return { child, exited, url };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('askr-sidecar CLI', () => {
  it('--version and --help', async () => {
    const v = await output(run(['--version']));
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const h = await output(run(['--help']));
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('askr-sidecar serve');
    expect(h.stdout).toContain('check-config');
  });

  it('check-config accepts the shipped sidecar.toml', async () => {
    const r = await output(
      run(['check-config', '--config', fileURLToPath(new URL('../sidecar.toml', import.meta.url))]),
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('configuration OK');
  });

  it.each([
    ['[server]\nlisten = 8080\n', /server\.listen = 8080: expected a string/],
    ['[server]\nlisten = "nowhere"\n', /server\.listen = "nowhere": expected "HOST:PORT"/],
    [
      '[server]\nmax_body_size = "8 parsecs"\n',
      /server\.max_body_size = "8 parsecs": expected a size string/,
    ],
    [
      '[fastcgi]\nread_timeout = "soon"\n',
      /fastcgi\.read_timeout = "soon": expected a duration string/,
    ],
    [
      '[server]\nlisten_addr = "x"\n',
      /unknown key "listen_addr" in \[server\]; did you mean "listen"\? Allowed keys: listen, root/,
    ],
    ['[servr]\n', /unknown section \[servr\]/],
    ['[log]\nlevel = "loud"\n', /log\.level = "loud": expected one of "fatal"/],
    ['[server]\nlisten = "127.0.0.1:80\n', /:2:\d+: TOML syntax error/],
  ])('check-config rejects %j precisely', async (toml, message) => {
    const dir = await mkdtemp(join(tmpdir(), 'askr-cfg-'));
    const file = join(dir, 'sidecar.toml');
    await writeFile(file, toml);
    const r = await output(run(['check-config', '--config', file]));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toMatch(message);
  });

  it('an env override with a bad value names the variable', async () => {
    const r = await output(run(['check-config'], { ASKR_FASTCGI_POOL_SIZE: 'many' }));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'environment ASKR_FASTCGI_POOL_SIZE: fastcgi.pool_size = "many": expected an integer',
    );
  });

  it('SIGTERM drains: the in-flight PHP request finishes, new connections are refused, exit 0', async () => {
    const { child, exited, url } = await serveOnSharedFpm();
    const slow = request(`${url}/slow?ms=800`);
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGTERM');
    const res = await slow;
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('slow done\n');
    await expect(request(`${url}/status/200`)).rejects.toThrow();
    const { code, stdout } = await exited;
    expect(code).toBe(0);
    expect(stdout).toContain('askr-sidecar stopped');
  });

  it('a second signal exits at once', async () => {
    const { child, exited, url } = await serveOnSharedFpm();
    const slow = request(`${url}/slow?ms=5000`).catch((err: unknown) => err);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    const { code } = await exited;
    expect(code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(3000);
    await slow;
  });

  it('with no FPM address it starts, supervises and stops its own php-fpm', async () => {
    const child = run(['serve', '--listen', '127.0.0.1:0', '--root', APP_ROOT], {
      ASKR_FPM_MAX_CHILDREN: '2',
      ASKR_METRICS_ENABLED: 'true',
      ASKR_METRICS_LISTEN: '127.0.0.1:0',
      ASKR_METRICS_FPM_STATUS_INTERVAL: '100ms',
    });
    let stdoutSoFar = '';
    child.stdout?.on('data', (d: Buffer) => (stdoutSoFar += d.toString()));
    const exited = output(child);
    const url = await listening(child);
    // The managed pool's status page is scraped into askr_fpm_* metrics.
    const metricsUrl = /"metrics":"(http:\/\/[^"]+)"/.exec(stdoutSoFar)?.[1] ?? '';
    let metricsText = '';
    for (let i = 0; i < 50 && !/askr_fpm_processes\{state="total"\} 2/.test(metricsText); i++) {
      await new Promise((r) => setTimeout(r, 100));
      metricsText = await (await request(`${metricsUrl}/metrics`)).body.text();
    }
    expect(metricsText).toMatch(/askr_fpm_processes\{state="total"\} 2/);
    const res = await request(`${url}/dump`);
    const body = JSON.parse(await res.body.text()) as { server: Record<string, string> };
    expect(res.statusCode).toBe(200);
    expect(body.server['SCRIPT_FILENAME']).toBe(`${APP_ROOT}/index.php`);
    child.kill('SIGTERM');
    const { code, stdout } = await exited;
    expect(code).toBe(0);
    const started = stdout.split('\n').find((l) => l.includes('"fpmPid"'));
    const fpmPid = Number(/"fpmPid":(\d+)/.exec(started ?? '')?.[1]);
    expect(fpmPid).toBeGreaterThan(0);
    expect(pidAlive(fpmPid), `php-fpm ${fpmPid} still running`).toBe(false);
  });

  it('SIGHUP re-reads the config: limits change live, restart-only keys are named', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'askr-hup-'));
    const file = join(dir, 'sidecar.toml');
    const toml = (maxBody: string, listen: string): string =>
      `[server]\nlisten = "${listen}"\nroot = ${JSON.stringify(APP_ROOT)}\nmax_body_size = "${maxBody}"\n[fastcgi]\naddress = ${JSON.stringify(inject('fpmAddress'))}\n`;
    await writeFile(file, toml('1MiB', '127.0.0.1:0'));
    const child = run(['serve', '--config', file]);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const exited = output(child);
    const url = await listening(child);
    const body = Buffer.alloc(600 * 1024, 'a');
    const before = await request(`${url}/dump`, { method: 'POST', body });
    await before.body.text();
    expect(before.statusCode).toBe(200);

    await writeFile(file, toml('256KiB', '127.0.0.1:1'));
    child.kill('SIGHUP');
    for (let i = 0; i < 100 && !out.includes('config reloaded'); i++)
      await new Promise((r) => setTimeout(r, 50));
    const line = out.split('\n').find((l) => l.includes('config reloaded')) ?? '';
    expect(JSON.parse(line)).toMatchObject({ needRestart: ['server.listen'] });
    const after = await request(`${url}/dump`, { method: 'POST', body });
    expect(after.statusCode).toBe(413);
    await after.body.text();

    await writeFile(file, '[server]\nmax_body_size = "lots"\n');
    child.kill('SIGHUP');
    for (let i = 0; i < 100 && !out.includes('config reload failed'); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('max_body_size = \\"lots\\"');
    const still = await request(`${url}/status/200`);
    expect(still.statusCode).toBe(200);
    await still.body.text();
    child.kill('SIGTERM');
    expect((await exited).code).toBe(0);
  });
});
