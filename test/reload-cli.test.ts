/**
 * SIGHUP through the real CLI (bin/askr-sidecar.js), started as a non-root user the way a
 * developer's `npm start` runs, with its own managed php-fpm (issue 14). The default datagram
 * socket directory (/run/askr) is not writable then, so the socket falls back to a private
 * directory and PHP learns that path from ASKR_SOCKET. Regression: a SIGHUP with no change
 * switched the ASKR_SOCKET PHP receives back to /run/askr/askr.sock, so every askr_broadcast()
 * from FPM failed afterwards. A recurrence: /publish (askr_publish, what askr_broadcast calls)
 * answers 500 after the SIGHUP, or the reload line names broadcast.socket as needing a restart.
 * Also checked: the reload lines list the keys applied and those needing a restart, and a file
 * with an invalid route changes nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { schema } from '../src/config/schema.ts';
import { APP_ROOT } from './helpers/sidecar.ts';
import { openStream } from './helpers/sse-client.ts';
import { runCleanups, type Cleanups } from './helpers/wait.ts';

const BIN = fileURLToPath(new URL('../bin/askr-sidecar.js', import.meta.url));
/** As root the child runs as nobody: a user that cannot write /run/askr, as `npm start` users. */
const CHILD_UID = process.getuid?.() === 0 ? 65534 : undefined;

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

/** The child's JSON log lines, and a wait for the first one after `from` that matches. */
interface Lines {
  all: Array<Record<string, unknown>>;
  next(
    match: (line: Record<string, unknown>) => boolean,
    from: number,
  ): Promise<Record<string, unknown>>;
}

function jsonLines(child: ChildProcess): Lines {
  const all: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let partial = '';
  child.stdout?.on('data', (d: Buffer) => {
    partial += d.toString('utf8');
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('{')) all.push(JSON.parse(line) as Record<string, unknown>);
    }
    for (const w of [...waiters]) w();
  });
  return {
    all,
    next: (match, from) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const found = all.slice(from).find(match);
          if (found === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching log line; got ${JSON.stringify(all.slice(from))}`));
        }, 20_000);
        waiters.add(check);
        check();
      }),
  };
}

const msg =
  (text: string) =>
  (line: Record<string, unknown>): boolean =>
    line['msg'] === text;
const reloadLine = (line: Record<string, unknown>): boolean =>
  String(line['msg']).startsWith('config reload');

async function dumpServer(url: string): Promise<Record<string, unknown>> {
  const res = await request(`${url}/dump`);
  return ((await res.body.json()) as { server: Record<string, unknown> }).server;
}

async function publish(url: string, channel: string, data: string): Promise<unknown> {
  const res = await request(`${url}/publish?channel=${channel}&data=${data}`);
  return { status: res.statusCode, body: await res.body.json() };
}

async function cacheControl(url: string): Promise<unknown> {
  const res = await request(`${url}/assets/style.css`);
  await res.body.dump();
  return res.headers['cache-control'];
}

describe('SIGHUP on the CLI, started as a non-root user', () => {
  it('keeps the fallback datagram socket, so askr_broadcast from FPM works after a reload', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'askr-reload-cli-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await chmod(dir, 0o755);
    // The child's TMPDIR: its fallback socket directory and its php-fpm's run directory.
    const childTmp = join(dir, 'tmp');
    await mkdir(childTmp, { mode: 0o700 });
    if (CHILD_UID !== undefined) await chown(childTmp, CHILD_UID, CHILD_UID);
    const file = join(dir, 'sidecar.toml');
    const toml = (extra: string): string =>
      [
        '[server]',
        'listen = "127.0.0.1:0"',
        `root = ${JSON.stringify(APP_ROOT)}`,
        '[fpm]',
        'max_children = 2',
        '[metrics]',
        'enabled = false',
        extra,
      ].join('\n');
    await writeFile(file, toml(''));
    await chmod(file, 0o644);

    // No ASKR_* from the test's environment: broadcast.socket keeps its default.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith('ASKR_')),
    );
    const child = spawn(process.execPath, [BIN, 'serve', '--config', file], {
      env: { ...env, TMPDIR: childTmp },
      stdio: ['ignore', 'pipe', 'inherit'],
      ...(CHILD_UID === undefined ? {} : { uid: CHILD_UID, gid: CHILD_UID }),
    });
    const exited = once(child, 'exit');
    cleanups.push(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    });
    const lines = jsonLines(child);

    const fellBack = await lines.next(
      msg(
        'cannot use the default datagram socket directory; using a private one (set broadcast.socket to choose)',
      ),
      0,
    );
    const fallback = join(childTmp, `askr-${String(CHILD_UID ?? process.getuid?.())}`, 'askr.sock');
    expect(fellBack).toMatchObject({
      configured: schema.broadcast.socket.default,
      socket: fallback,
    });
    const listening = await lines.next(msg('askr-sidecar listening'), 0);
    const url = String(listening['url']);

    const stream = await openStream(`${url}/askr/events?channel=fallback`);
    cleanups.push(() => stream.close());
    expect((await dumpServer(url))['ASKR_SOCKET']).toBe(fallback);
    expect(await publish(url, 'fallback', 'before')).toEqual({
      status: 200,
      body: { ok: true, error: null },
    });
    await stream.waitFor((f) => f.data === 'before');

    // A SIGHUP with the file unchanged: nothing applied, nothing to restart for.
    let from = lines.all.length;
    child.kill('SIGHUP');
    expect(await lines.next(reloadLine, from)).toMatchObject({
      msg: 'config reloaded',
      applied: [],
      needRestart: [],
    });
    expect((await dumpServer(url))['ASKR_SOCKET']).toBe(fallback);
    expect(await publish(url, 'fallback', 'after')).toEqual({
      status: 200,
      body: { ok: true, error: null },
    });
    await stream.waitFor((f) => f.data === 'after');

    // A reloadable key and a restart key: the line lists both, the first applies at once.
    await writeFile(
      file,
      toml('[static]\ncache_control = "max-age=60"').replace('127.0.0.1:0', '127.0.0.1:1'),
    );
    from = lines.all.length;
    child.kill('SIGHUP');
    expect(await lines.next(reloadLine, from)).toMatchObject({
      msg: 'config reloaded; some keys need a restart',
      applied: ['static.cache_control'],
      needRestart: ['server.listen'],
    });
    expect(await cacheControl(url)).toBe('max-age=60');

    // A file with an invalid route: the reload says why and nothing changes.
    await writeFile(
      file,
      toml(
        '[static]\ncache_control = "no-store"\n[proxy]\nroutes = { "/app/" = "ftp://127.0.0.1:1" }',
      ),
    );
    from = lines.all.length;
    child.kill('SIGHUP');
    const failed = await lines.next(reloadLine, from);
    expect(failed).toMatchObject({
      msg: 'config reload failed; keeping the running config',
      code: 'ASKR_ERR_CONFIG',
    });
    expect(String(failed['err'])).toContain('proxy.routes: "/app/" = "ftp://127.0.0.1:1"');
    expect(await cacheControl(url)).toBe('max-age=60');
    expect(await publish(url, 'fallback', 'still')).toEqual({
      status: 200,
      body: { ok: true, error: null },
    });
    await stream.waitFor((f) => f.data === 'still');

    stream.close();
    child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
  });
});
