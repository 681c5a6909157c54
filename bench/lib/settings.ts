/**
 * Settings of the proxy benchmark, read from BENCH_* environment variables and validated (a bad
 * value stops the run with the variable, its value and what is allowed), and the checks that the
 * programs it drives are installed. See docs/benchmarks.md for every variable.
 */
import { spawnSync } from 'node:child_process';
import { MODES, type ServerMode } from './modes.ts';
import { SERVERS, WORKLOADS, type ServerId, type Workload } from './report.ts';

/** Everything a run depends on besides the machine. */
export interface Settings {
  duration: string;
  warmup: string;
  connections: number;
  threads: number;
  timeout: string;
  rounds: number;
  nginxWorkers: string;
  fpmChildren: number;
  phpPath: string;
  servers: ServerId[];
  workloads: Workload[];
  modes: ServerMode[];
  /** fastcgi.pool_size for the sidecar; 0 keeps its default. */
  sidecarPoolSize: number;
  /** Before each measurement: wait until others use < quietCores cores, at most quietWaitMs. */
  quietCores: number;
  quietWaitMs: number;
  nginx: string;
  wrk: string;
  json: string;
  keepTmp: boolean;
  strict: boolean;
}

function env(name: string, fallback: string): string {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
}

function envInt(name: string, fallback: number, min: number): number {
  const text = env(name, String(fallback));
  const n = Number(text);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`${name}=${text}: expected an integer >= ${min}`);
  return n;
}

function envNumber(name: string, fallback: number, min: number): number {
  const text = env(name, String(fallback));
  const n = Number(text);
  if (!Number.isFinite(n) || n < min)
    throw new Error(`${name}=${text}: expected a number >= ${min}`);
  return n;
}

function envDuration(name: string, fallback: string, allowZero: boolean): string {
  const text = env(name, fallback);
  if (!/^\d+(s|m)$/.test(text) || (!allowZero && /^0+[sm]$/.test(text))) {
    throw new Error(`${name}=${text}: expected a wrk duration such as "10s" or "1m"`);
  }
  return text;
}

function envList<T extends string>(name: string, all: readonly T[]): T[] {
  const text = env(name, all.join(','));
  const picked = text.split(',').map((s) => s.trim());
  for (const p of picked) {
    if (!(all as readonly string[]).includes(p))
      throw new Error(`${name}: "${p}" is not one of ${all.join(', ')}`);
  }
  return all.filter((a) => picked.includes(a));
}

/** Reads and validates the BENCH_* variables; throws with the variable and value on a bad one. */
export function readSettings(): Settings {
  const nginxWorkers = env('BENCH_NGINX_WORKERS', '1');
  if (!/^(auto|[1-9]\d*)$/.test(nginxWorkers))
    throw new Error(`BENCH_NGINX_WORKERS=${nginxWorkers}: expected "auto" or a positive integer`);
  const phpPath = env('BENCH_PHP_PATH', '/hello');
  if (!/^\/[\w./?=&-]*$/.test(phpPath))
    throw new Error(`BENCH_PHP_PATH=${phpPath}: expected a URL path`);
  return {
    duration: envDuration('BENCH_DURATION', '10s', false),
    warmup: envDuration('BENCH_WARMUP', '3s', true),
    connections: envInt('BENCH_CONNECTIONS', 64, 1),
    threads: envInt('BENCH_THREADS', 2, 1),
    timeout: envDuration('BENCH_TIMEOUT', '10s', false),
    rounds: envInt('BENCH_ROUNDS', 1, 1),
    nginxWorkers,
    fpmChildren: envInt('BENCH_FPM_CHILDREN', 8, 1),
    phpPath,
    servers: envList('BENCH_SERVERS', SERVERS),
    workloads: envList('BENCH_WORKLOADS', WORKLOADS),
    modes: envList('BENCH_MODES', MODES),
    sidecarPoolSize: envInt('BENCH_SIDECAR_POOL_SIZE', 0, 0),
    quietCores: envNumber('BENCH_QUIET_CORES', 0.3, 0),
    quietWaitMs: envInt('BENCH_QUIET_WAIT_S', 60, 0) * 1000,
    nginx: env('BENCH_NGINX', '/usr/sbin/nginx'),
    wrk: env('BENCH_WRK', 'wrk'),
    json: env('BENCH_JSON', ''),
    keepTmp: env('BENCH_KEEP_TMP', '') === '1',
    strict: env('BENCH_STRICT', '') === '1',
  };
}

/** First line a program prints about its version (stdout or stderr), or why it failed. */
export function versionOf(command: string, args: string[]): string {
  const res = spawnSync(command, args, { encoding: 'utf8' });
  if (res.error !== undefined) return `unavailable (${res.error.message})`;
  return `${res.stdout}${res.stderr}`.trim().split('\n')[0] ?? '';
}

/** '10s' / '1m' in milliseconds (the settings are validated already). */
export function wrkDurationMs(text: string): number {
  return Number.parseInt(text, 10) * (text.endsWith('m') ? 60_000 : 1_000);
}

/** Fails early, naming the Debian package, when nginx or wrk is missing. */
export function requirePrograms(settings: Settings): void {
  const missing: string[] = [];
  if (spawnSync(settings.nginx, ['-v']).error !== undefined) {
    missing.push(`nginx at ${settings.nginx} (Debian package nginx-light, or set BENCH_NGINX)`);
  }
  if (spawnSync(settings.wrk, ['-v']).error !== undefined) {
    missing.push(`wrk as "${settings.wrk}" (Debian package wrk, or set BENCH_WRK)`);
  }
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join('; ')}. Run "node scripts/ensure-system.mjs bench" as root.`,
    );
  }
}
