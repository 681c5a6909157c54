/**
 * A real nginx (Debian's nginx-light) for the parity tests: one recipe's nginx.conf
 * (nginx-recipes.ts) on a free port of 127.0.0.1, in the foreground, with its pid, error log and
 * temp dirs in a private temp dir that stop() removes. nginx missing is a failure naming the fix.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { endProcess, freePort, readTextOr } from './process.ts';
import { renderNginxRecipe, type NginxRecipe, type NginxRecipeInput } from './nginx-recipes.ts';

/** The nginx binary the tests run: ASKR_TEST_NGINX, else Debian's. */
export const NGINX = process.env['ASKR_TEST_NGINX'] ?? '/usr/sbin/nginx';

export interface TestNginx {
  /** 'http://127.0.0.1:PORT'. */
  readonly url: string;
  readonly port: number;
  /** The nginx.conf it runs. */
  readonly conf: string;
  /** Its error log so far (for failure messages). */
  log(): string;
  /** SIGTERM (SIGKILL after 3 s), then removes its directory. Idempotent. */
  stop(): Promise<void>;
}

function requireNginx(): void {
  if (!fs.existsSync(NGINX)) {
    throw new Error(
      `The nginx parity tests need Debian's nginx at ${NGINX}. ` +
        `Run "node scripts/ensure-system.mjs test" (as root it installs nginx-light), ` +
        `or set ASKR_TEST_NGINX to an nginx binary.`,
    );
  }
}

/** `nginx -v`: '1.22.1'. Throws as startNginx does when nginx is missing. */
export function nginxVersion(): string {
  requireNginx();
  const res = spawnSync(NGINX, ['-v'], { encoding: 'utf8' });
  const match = /nginx\/(\d+\.\d+\.\d+)/.exec(`${res.stderr}${res.stdout}`);
  if (match?.[1] === undefined)
    throw new Error(`cannot read the version of ${NGINX}: ${res.stderr}`);
  return match[1];
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    // ECONNREFUSED while nginx is still starting: the caller tries again.
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts nginx with `recipe`'s configuration for `input` on a free port; resolves once the port
 * accepts. Rejects with nginx's error log when it does not start (a port taken between choosing
 * and binding is retried twice with another port).
 */
export async function startNginx(
  recipe: NginxRecipe,
  input: Omit<NginxRecipeInput, 'port' | 'prefixDir'>,
): Promise<TestNginx> {
  requireNginx();
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(recipe, input, await freePort());
    } catch (err) {
      if (attempt < 3 && /Address already in use/.test((err as Error).message)) continue;
      throw err;
    }
  }
}

async function startOnce(
  recipe: NginxRecipe,
  input: Omit<NginxRecipeInput, 'port' | 'prefixDir'>,
  port: number,
): Promise<TestNginx> {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `askr-nginx-${recipe}-`)));
  const conf = renderNginxRecipe(recipe, { ...input, port, prefixDir: dir });
  const confPath = path.join(dir, 'nginx.conf');
  const logPath = path.join(dir, 'error.log');
  fs.writeFileSync(confPath, conf);
  const readLog = (): string => readTextOr(logPath, '(no nginx error log)');

  // -e: the error log before the config is read (Debian's build defaults to stderr).
  const child = spawn(NGINX, ['-p', `${dir}/`, '-c', confPath, '-e', logPath], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.off('exit', killOnExit);
      await endProcess(child, { killAfterMs: 3_000 });
      fs.rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const why = `nginx (${recipe}) exited during start (${child.exitCode ?? child.signalCode ?? '?'}):\n${readLog()}\n${stderr}`;
      await stop();
      throw new Error(why);
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      const why = `nginx (${recipe}) not accepting on port ${port} after 10 s:\n${readLog()}\n${stderr}`;
      await stop();
      throw new Error(why);
    }
    // No event tells when nginx listens: poll its port.
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url: `http://127.0.0.1:${port}`, port, conf, log: readLog, stop };
}
