/**
 * The sidecar bench/churn.ts measures: started from a checkout's bin/askr-sidecar.js on free
 * ports of 127.0.0.1 in a temp directory, with bench/churn/probe.ts preloaded (full GC, then its
 * memory as JSON on SIGUSR2). Every process started here is killed and every directory removed
 * by cleanup(), which the benchmark runs on exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, waitForListening } from '../sse/procs.ts';

export const HOST = '127.0.0.1';
/** Bearer token of the sidecar's HTTP publish. */
export const TOKEN = 'churn-token';
const PROBE = new URL('./probe.ts', import.meta.url).href;

/** What the probe writes (bench/churn/probe.ts). */
export interface ProbeResult {
  n: number;
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  heapPhysical: number;
  spaces: Record<string, { size: number; used: number; physical: number }>;
  gcs: { minor: number; major: number; ms: number };
}

export interface SidecarOptions {
  /** Checkout whose bin/askr-sidecar.js runs. */
  repo: string;
  /** Extra environment (ASKR_* config, malloc knobs) and node flags. */
  env: Record<string, string>;
  nodeArgs: readonly string[];
  /** Serve the Mercure door too (anonymous subscribers). */
  mercure: boolean;
}

export interface Sidecar {
  pid: number;
  port: number;
  metricsPort: number;
  /** Full GC, then the memory; with `snapshotPath`, a heap snapshot there first. */
  probe(snapshotPath?: string): Promise<ProbeResult>;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
const dirs: string[] = [];

/** Kills what is still running (its process group) and removes the temp directories. */
export function cleanup(): void {
  for (const child of children) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // ESRCH: already gone.
    }
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  return waitForListening(HOST, port, () => child.exitCode !== null, 'the sidecar', output, 20_000);
}

/**
 * askr-sidecar as a user runs it (`node [flags] bin/askr-sidecar.js serve`), with the probe
 * preloaded, HTTP publish and the metrics listener on, the stream limits out of the way, no PHP.
 */
export async function startSidecar(o: SidecarOptions): Promise<Sidecar> {
  const dir = mkdtempSync(join(tmpdir(), 'askr-bench-churn-'));
  dirs.push(dir);
  const root = join(dir, 'public');
  mkdirSync(root);
  const port = await freePort();
  const metricsPort = await freePort();
  const probeFile = join(dir, 'probe.json');
  const args = [
    '--expose-gc',
    '--import',
    PROBE,
    ...o.nodeArgs,
    join(o.repo, 'bin/askr-sidecar.js'),
    'serve',
    '--listen',
    `${HOST}:${port}`,
    '--root',
    root,
    '--fpm',
    `${HOST}:1`, // no PHP: public channels need none
  ];
  const child = spawn(process.execPath, args, {
    // Not the repository: a ./sidecar.toml there would be read as this run's config.
    cwd: dir,
    env: {
      ...process.env,
      ASKR_BROADCAST_SOCKET: join(dir, 'askr.sock'),
      ASKR_SSE_PUBLISH_TOKEN: TOKEN,
      ASKR_LOG_ACCESS_LOG: 'false',
      ASKR_LOG_LEVEL: 'warn',
      ASKR_METRICS_ENABLED: 'true',
      ASKR_METRICS_LISTEN: `${HOST}:${metricsPort}`,
      ASKR_SSE_MAX_CONNECTIONS_PER_IP: '20000',
      ASKR_SSE_MAX_CONNECTIONS: '20000',
      ASKR_SERVER_MAX_CONNECTIONS: '20000',
      ...(o.mercure ? { ASKR_MERCURE_ENABLED: 'true', ASKR_MERCURE_ANONYMOUS: 'true' } : {}),
      CHURN_PROBE_FILE: probeFile,
      ...o.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let out = '';
  const keep = (chunk: Buffer): void => {
    out = (out + chunk.toString('utf8')).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForPort(port, child, () => out);
  let n = 0;
  return {
    pid: child.pid ?? 0,
    port,
    metricsPort,
    async probe(snapshotPath) {
      n++;
      if (snapshotPath !== undefined) writeFileSync(`${probeFile}.snapshot`, snapshotPath);
      child.kill('SIGUSR2');
      const deadline = Date.now() + 120_000; // a heap snapshot takes a while
      while (Date.now() < deadline) {
        try {
          const r = JSON.parse(readFileSync(probeFile, 'utf8')) as ProbeResult;
          if (r.n === n) return r;
        } catch {
          // not written yet
        }
        await sleep(50);
      }
      throw new Error(`the sidecar's probe did not answer:\n${out}`);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const late = await Promise.race([exited.then(() => false), sleep(10_000, true)]);
        if (late) child.kill('SIGKILL');
      }
      await exited;
      children.delete(child);
    },
  };
}
