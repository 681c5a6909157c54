/**
 * Settings of `npm run bench:protect`: command-line flags first, then BENCH_* environment
 * variables, then defaults. A bad value stops the run naming the flag or variable, its value and
 * what is allowed. `usage` lists them all (`node bench/protect.ts --help`).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { env, readFlags, usageHead } from '../lib/flags.ts';
import { REPO_ROOT } from '../lib/processes.ts';

export const PHASES = ['slow-readers', 'slow-uploaders', 'baseline'] as const;
export type Phase = (typeof PHASES)[number];
export const SERVERS = ['sidecar', 'nginx'] as const;
export type ServerName = (typeof SERVERS)[number];

export interface ProtectSettings {
  /** Length of one phase against one server (slow clients and probe running). */
  phaseMs: number;
  phases: Phase[];
  servers: ServerName[];
  /** Slow clients per slow phase. */
  slowClients: number;
  /** Answer size the slow readers ask for. */
  bigBytes: number;
  /** SO_RCVBUF of a slow reader's socket (Linux doubles it). */
  readerRcvbufBytes: number;
  /** Content-Length the slow uploaders announce. */
  uploadBytes: number;
  /** Rate of a slow uploader. */
  uploadBytesPerSec: number;
  /** Client timeout of one probe request; a slower one counts as a timeout. */
  probeTimeoutMs: number;
  /** Pause between two probe requests (0: back to back). */
  probeGapMs: number;
  /** FPM status sampling period. */
  sampleMs: number;
  /** After a phase, how long to wait for the pool to go idle (reported, not required). */
  drainMs: number;
  /** Tree whose bin/askr-sidecar.js is run (default: this checkout), e.g. an older commit's. */
  sidecarRoot: string;
  nginx: string;
  php: string;
  json: string;
  keepTmp: boolean;
}

export const usage = `${usageHead('protect')}
  --seconds N         BENCH_PHASE_SECONDS      20     length of each phase, per server
  --phases LIST       BENCH_PHASES             ${PHASES.join(',')}
  --servers LIST      BENCH_SERVERS            ${SERVERS.join(',')}
  --clients N         BENCH_SLOW_CLIENTS       10     slow clients in a slow phase
  --big-bytes N       BENCH_BIG_BYTES          2097152  answer size the slow readers ask for
  --rcvbuf N          BENCH_READER_RCVBUF      4096   slow readers' SO_RCVBUF
  --upload-bytes N    BENCH_UPLOAD_BYTES       1000000  Content-Length of a slow upload
  --upload-rate N     BENCH_UPLOAD_RATE        100    bytes/s of a slow upload
  --probe-timeout N   BENCH_PROBE_TIMEOUT_S    15     probe client timeout, seconds
  --probe-gap N       BENCH_PROBE_GAP_MS       20     pause between two probe requests
  --drain N           BENCH_DRAIN_S            10     wait for idle workers after a phase, seconds
  --json FILE         BENCH_JSON               ""     also write every sample and probe here
  --sidecar-root DIR  BENCH_SIDECAR_ROOT       this checkout  run DIR/bin/askr-sidecar.js instead
                      (e.g. an older commit: git archive COMMIT bin src package.json | tar -x -C DIR,
                      then ln -s "$PWD/node_modules" DIR/node_modules)
  BENCH_NGINX (/usr/sbin/nginx), BENCH_PHP (php: php-cli for the slow readers),
  BENCH_KEEP_TMP=1 keeps the temp directory, BENCH_DEBUG=1 prints stack traces.`;

const FLAGS = {
  seconds: 'BENCH_PHASE_SECONDS',
  phases: 'BENCH_PHASES',
  servers: 'BENCH_SERVERS',
  clients: 'BENCH_SLOW_CLIENTS',
  'big-bytes': 'BENCH_BIG_BYTES',
  rcvbuf: 'BENCH_READER_RCVBUF',
  'upload-bytes': 'BENCH_UPLOAD_BYTES',
  'upload-rate': 'BENCH_UPLOAD_RATE',
  'probe-timeout': 'BENCH_PROBE_TIMEOUT_S',
  'probe-gap': 'BENCH_PROBE_GAP_MS',
  drain: 'BENCH_DRAIN_S',
  json: 'BENCH_JSON',
  'sidecar-root': 'BENCH_SIDECAR_ROOT',
} as const;

/** Parses `argv` (without node and the script) and the environment; null when --help was asked. */
export function readProtectSettings(argv: string[]): ProtectSettings | null {
  const flags = readFlags(argv, FLAGS, usage);
  if (flags === null) return null;
  const { get, num, pick } = flags;
  const sidecarRoot = resolve(get('sidecar-root', REPO_ROOT).text);
  if (!existsSync(join(sidecarRoot, 'bin', 'askr-sidecar.js'))) {
    throw new Error(
      `--sidecar-root / BENCH_SIDECAR_ROOT: no bin/askr-sidecar.js in ${sidecarRoot}`,
    );
  }
  return {
    phaseMs: Math.round(num('seconds', 20, 1) * 1000),
    phases: pick('phases', PHASES),
    servers: pick('servers', SERVERS),
    slowClients: Math.round(num('clients', 10, 1)),
    bigBytes: Math.round(num('big-bytes', 2 * 1024 * 1024, 1)),
    readerRcvbufBytes: Math.round(num('rcvbuf', 4096, 1)),
    uploadBytes: Math.round(num('upload-bytes', 1_000_000, 1)),
    uploadBytesPerSec: num('upload-rate', 100, 1),
    probeTimeoutMs: Math.round(num('probe-timeout', 15, 0.1) * 1000),
    probeGapMs: Math.round(num('probe-gap', 20, 0)),
    sampleMs: 250,
    drainMs: Math.round(num('drain', 10, 0) * 1000),
    sidecarRoot,
    nginx: env('BENCH_NGINX', '/usr/sbin/nginx'),
    php: env('BENCH_PHP', 'php'),
    json: get('json', '').text,
    keepTmp: env('BENCH_KEEP_TMP', '') === '1',
  };
}
