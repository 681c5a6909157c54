/**
 * The servers bench:proxy compares, one at a time: the document root, starting each server
 * (sidecar, nginx-default, nginx-keepalive, node-ceiling) in a bench mode with a php-fpm pool of
 * its own, checking its answers, and stopping it with its pool.
 * Invariants: every process is registered in the run's ProcessSet as soon as it exists; each
 * server's pool, logs and config live in its own directory, removed when it stops (unless kept).
 */
import { mkdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ServerMode } from './modes.ts';
import { renderNginxConf, type NginxVariant } from './nginx-conf.ts';
import {
  freePort,
  startBenchFpm,
  startNginx,
  startNodeCeiling,
  startSidecarProcess,
  waitForHttp,
  type ChildServer,
  type ProcessSet,
  type Stoppable,
} from './processes.ts';
import { serves, type ServerId, type Workload } from './report.ts';
import type { Settings } from './settings.ts';

export const PHP_BODY = 'Hello, world\n';
export const STATIC_BYTES = 16 * 1024;
export const FRONT_CONTROLLER = 'hello.php';
export const STATIC_PATH = '/asset-16k.txt';

/** The document root: the front controller and the static file; returns its real path. */
export function writeDocroot(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, FRONT_CONTROLLER), '<?php echo "Hello, world\\n";\n');
  // Printable text, so both servers send it as text/plain without any transformation.
  const line = 'askr-sidecar proxy benchmark static asset, 64 bytes per line...\n';
  writeFileSync(join(dir, STATIC_PATH.slice(1)), line.repeat(STATIC_BYTES / line.length));
  return realpathSync(dir);
}

/** Checks one answer of each workload the server runs: a benchmark of 404s proves nothing. */
async function verify(
  base: string,
  server: ServerId,
  workloads: readonly Workload[],
  settings: Settings,
): Promise<void> {
  if (workloads.includes('php') && serves(server, 'php')) {
    const php = await fetch(base + settings.phpPath);
    const phpText = await php.text();
    if (php.status !== 200 || phpText !== PHP_BODY) {
      throw new Error(
        `${server}: GET ${settings.phpPath}: ${php.status} ${JSON.stringify(phpText.slice(0, 200))}`,
      );
    }
  }
  const file = await fetch(base + STATIC_PATH);
  const bytes = (await file.arrayBuffer()).byteLength;
  if (file.status !== 200 || bytes !== STATIC_BYTES) {
    throw new Error(
      `${server}: GET ${STATIC_PATH}: ${file.status}, ${bytes} bytes (expected ${STATIC_BYTES})`,
    );
  }
}

/**
 * Bytes of one whole static answer (status line, headers, body) as wrk receives it on a
 * keep-alive connection: the servers are compared on the same work only if these are close.
 */
export function staticAnswerBytes(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = 0;
    let head = '';
    let total = Infinity;
    socket.setTimeout(5_000, () => socket.destroy(new Error('no complete answer in 5 s')));
    socket.on('data', (chunk: Buffer) => {
      if (total === Infinity) {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1];
        if (end >= 0 && length !== undefined) total = end + 4 + Number(length);
      }
      received += chunk.length;
      if (received >= total) {
        socket.destroy();
        resolve(received);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`connection closed after ${received} bytes`)));
    socket.write(`GET ${STATIC_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  });
}

/** What starting a server needs from the run. */
export interface Context {
  settings: Settings;
  processes: ProcessSet;
  tmp: string;
  root: string;
  logger: Logger;
  /** The benchmark driver's own process group (its CPU is not "others"). */
  benchPgid: number;
}

/** One server started for one (round, mode): its own FPM pool, its own directory. */
export interface Running {
  server: ServerId;
  mode: ServerMode;
  proc: ChildServer;
  fpm: Stoppable | null;
  port: number;
  base: string;
  dir: string;
  /** The file its access log goes to when on (null: node-ceiling keeps none). */
  accessLog: string | null;
}

/**
 * Starts `server` in `mode` for `round` in a directory of its own, with a php-fpm pool of its own
 * (none for node-ceiling), and checks one answer per workload. Everything started is registered
 * in `ctx.processes`; on a failed check the server and its pool are stopped before the throw.
 */
export async function startServer(
  ctx: Context,
  server: ServerId,
  mode: ServerMode,
  round: number,
): Promise<Running> {
  const { settings, processes } = ctx;
  const dir = join(ctx.tmp, `r${round}-${mode}-${server}`);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  // Every server gets a pool of its own, so one server's idle kept FastCGI connections can never
  // pin another's workers; node-ceiling runs no PHP and gets none.
  const fpm = serves(server, 'php')
    ? processes.add(await startBenchFpm(join(dir, 'fpm'), settings.fpmChildren, ctx.logger))
    : null;
  const fpmSocket = fpm === null ? '' : fpm.fpm.address.slice('unix:'.length);
  let proc: ChildServer;
  let accessLog: string | null;
  if (server === 'sidecar') {
    // stdout carries the access log (as-shipped) and the app log; a file, as in production.
    accessLog = join(dir, 'sidecar.log');
    proc = processes.add(
      await startSidecarProcess({
        listen: `127.0.0.1:${port}`,
        root: ctx.root,
        fpmAddress: `unix:${fpmSocket}`,
        index: FRONT_CONTROLLER,
        cwd: dir,
        mode,
        poolSize: settings.sidecarPoolSize,
        metricsListen: `127.0.0.1:${await freePort()}`,
        broadcastSocket: join(dir, 'askr.sock'),
        logFile: accessLog,
      }),
    );
  } else if (server === 'node-ceiling') {
    accessLog = null;
    proc = processes.add(
      await startNodeCeiling(port, join(ctx.root, STATIC_PATH.slice(1)), STATIC_PATH),
    );
  } else {
    const variant: NginxVariant = server === 'nginx-default' ? 'default' : 'keepalive';
    const confPath = join(dir, 'nginx.conf');
    accessLog = join(dir, 'access.log');
    writeFileSync(
      confPath,
      renderNginxConf({
        variant,
        prefixDir: dir,
        port,
        root: ctx.root,
        index: FRONT_CONTROLLER,
        fpmSocket,
        workers: settings.nginxWorkers,
        // As root, workers would run as "nobody" and could not open FPM's 0600 socket.
        user: process.getuid?.() === 0 ? userInfo().username : null,
        keepaliveConnections: settings.fpmChildren,
        mode,
      }),
    );
    proc = processes.add(await startNginx(settings.nginx, dir, confPath));
  }
  const running: Running = { server, mode, proc, fpm, port, base, dir, accessLog };
  try {
    await waitForHttp(base + STATIC_PATH, proc);
    await verify(base, server, settings.workloads, settings);
  } catch (err) {
    await stopServer(ctx, running);
    throw err;
  }
  return running;
}

/** Stops the server, then its pool, and removes its directory (logs) unless kept. */
export async function stopServer(ctx: Context, running: Running): Promise<void> {
  await ctx.processes.stop(running.proc);
  if (running.fpm !== null) await ctx.processes.stop(running.fpm);
  // Access logs of a full run reach hundreds of MB: drop each server's as soon as it is done.
  if (!ctx.settings.keepTmp) rmSync(running.dir, { recursive: true, force: true });
}

/** Size of a file in bytes; 0 when it does not exist (nginx with access_log off). */
export const fileSize = (path: string | null): number => {
  if (path === null) return 0;
  try {
    return statSync(path).size;
  } catch {
    return 0; // not created: nginx with access_log off
  }
};
