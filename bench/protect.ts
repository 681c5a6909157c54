/**
 * `npm run bench:protect`: worker protection, the sidecar against Debian's nginx, each on its own
 * php-fpm pool shaped like Debian's stock `www` pool (dynamic, 5 children). Phases: slow readers
 * (never read a 2 MiB answer), slow uploaders (1 MB POST at 100 B/s), baseline. During each, the
 * pool's busy workers are read from FPM's status page over FastCGI every 250 ms and one probe
 * client GETs a tiny PHP page in a loop. Prints markdown (per-phase table, ratios sidecar/nginx).
 * Invariants: one server and its pool run at a time, started fresh for each phase; 127.0.0.1 and
 * private Unix sockets only; every process is stopped at the end, on errors and on Ctrl-C.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { findPhpFpm } from '../src/fpm/find-php-fpm.ts';
import { ProcessSet, REPO_ROOT, sidecarEntry } from './lib/processes.ts';
import { versionOf } from './lib/settings.ts';
import { readFpmStatus, StatusSampler } from './protect/fpm-status.ts';
import { Prober } from './protect/probe.ts';
import {
  PHASE_LABEL,
  ratiosTable,
  resultsTable,
  summarizeRun,
  type PhaseRun,
} from './protect/report.ts';
import {
  HOST,
  POOL_SHAPE,
  STATUS_PATH,
  startFront,
  startPool,
  type Pool,
} from './protect/servers.ts';
import {
  readProtectSettings,
  usage,
  type Phase,
  type ProtectSettings,
  type ServerName,
} from './protect/settings.ts';
import { startSlowReaders, startSlowUploaders, type SlowClients } from './protect/slow-clients.ts';

/** Set on Ctrl-C / SIGTERM: the signal handler stops everything and exits. */
let stopping = false;

function log(message: string): void {
  process.stderr.write(`[bench:protect ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Waits until the pool has no busy worker; ms it took, or null when `maxMs` passed first. */
async function waitIdle(pool: Pool, maxMs: number): Promise<number | null> {
  const start = performance.now();
  for (;;) {
    try {
      if ((await readFpmStatus(pool.statusAddress, STATUS_PATH)).busy === 0) {
        return Math.round(performance.now() - start);
      }
    } catch {
      // A status read that failed is not "idle"; the next poll tries again until maxMs.
    }
    if (performance.now() - start >= maxMs) return null;
    await sleep(100);
  }
}

/** One server in one phase, on a pool and a server started for it and stopped after. */
async function runPhase(
  settings: ProtectSettings,
  processes: ProcessSet,
  dir: string,
  phase: Phase,
  server: ServerName,
): Promise<PhaseRun> {
  const pool = await startPool(join(dir, 'fpm'), processes);
  const front = await startFront(server, join(dir, server), pool, {
    nginx: settings.nginx,
    sidecarRoot: settings.sidecarRoot,
    bigBytes: settings.bigBytes,
    processes,
  });
  try {
    // The checks in startFront used workers; start from an idle pool.
    await waitIdle(pool, 5_000);
    const startMs = performance.now();
    const sampler = new StatusSampler(pool.statusAddress, STATUS_PATH, settings.sampleMs, startMs);
    let slow: SlowClients | null = null;
    let prober: Prober | null = null;
    try {
      if (phase === 'slow-readers') {
        slow = await startSlowReaders({
          php: settings.php,
          host: HOST,
          port: front.port,
          path: `/big?bytes=${settings.bigBytes}`,
          count: settings.slowClients,
          rcvbufBytes: settings.readerRcvbufBytes,
          processes,
        });
      } else if (phase === 'slow-uploaders') {
        slow = startSlowUploaders({
          host: HOST,
          port: front.port,
          path: '/upload',
          count: settings.slowClients,
          contentLength: settings.uploadBytes,
          bytesPerSec: settings.uploadBytesPerSec,
        });
      }
      prober = new Prober(
        {
          host: HOST,
          port: front.port,
          path: '/tiny',
          timeoutMs: settings.probeTimeoutMs,
          gapMs: settings.probeGapMs,
        },
        startMs,
      );
      await sleep(Math.max(0, startMs + settings.phaseMs - performance.now()));
      // The request in flight finishes under the same load (at most the probe timeout more).
      const probes = await prober.stop();
      prober = null;
      const samples = await sampler.stop();
      const durationMs = Math.round(performance.now() - startMs);
      const slowStats = slow === null ? null : await slow.stop();
      slow = null;
      const drainMs = await waitIdle(pool, settings.drainMs);
      return { phase, server, durationMs, samples, probes, slowClients: slowStats, drainMs };
    } finally {
      // All idempotent; prober and slow are only left set on an error path.
      await prober?.stop();
      await slow?.stop().catch(() => undefined); // the error being thrown is the one to report
      await sampler.stop();
    }
  } finally {
    await processes.stop(front.proc);
    await processes.stop(pool.proc);
  }
}

function gitDescription(): string {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  });
  // --no-optional-locks: never take index.lock, which would collide with others' git commands.
  const dirty = spawnSync(
    'git',
    ['--no-optional-locks', 'status', '--porcelain', '--', 'src', 'bin'],
    {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    },
  );
  const commit = head.status === 0 ? head.stdout.trim() : 'unknown commit';
  return dirty.status === 0 && dirty.stdout.trim() !== ''
    ? `${commit} + uncommitted changes in src/ or bin/`
    : commit;
}

/**
 * The most a TCP socket's send buffer may grow to (net.ipv4.tcp_wmem max), or NaN. On loopback
 * (64 KiB MSS) the server's send buffer autotunes to megabytes: an answer smaller than that can
 * leave the server whole even though the reader reads nothing, and then pins no worker anywhere.
 */
function tcpSendBufferMaxBytes(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'latin1').trim().split(/\s+/)[2]);
  } catch {
    return NaN; // not Linux: the note below is simply not printed
  }
}

function fpmVersion(): string {
  const binary = findPhpFpm('');
  return binary === null ? 'php-fpm not found' : versionOf(binary, ['-v']);
}

function requirePrograms(settings: ProtectSettings): void {
  const missing: string[] = [];
  if (spawnSync(settings.nginx, ['-v']).error !== undefined) {
    missing.push(`nginx at ${settings.nginx} (Debian package nginx-light, or set BENCH_NGINX)`);
  }
  const php = spawnSync(settings.php, ['-r', 'exit(function_exists("socket_create") ? 0 : 3);']);
  if (php.error !== undefined || php.status !== 0) {
    missing.push(`php-cli with the sockets extension as "${settings.php}" (Debian php-cli)`);
  }
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join('; ')}. Run "node scripts/ensure-system.mjs bench" as root.`,
    );
  }
}

async function main(): Promise<number> {
  const settings = readProtectSettings(process.argv.slice(2));
  if (settings === null) {
    process.stdout.write(usage + '\n');
    return 0;
  }
  requirePrograms(settings);
  const processes = new ProcessSet();
  const tmp = mkdtempSync(join(tmpdir(), 'askr-bench-protect-'));
  // PHP runs as www-data when the benchmark runs as root: it must reach the document root.
  chmodSync(tmp, 0o755);
  const removeTmp = (): void => {
    if (settings.keepTmp) log(`kept ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping every process`);
    processes
      .stopAll()
      .catch((err: unknown) => log(String(err)))
      .finally(() => {
        removeTmp();
        process.exit(130);
      });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const out = (line = ''): void => void process.stdout.write(line + '\n');
  // The sidecar's sources may change while the bench runs (other people work in this tree): say
  // what they were at the start and whether they changed.
  const commitAtStart = gitDescription();
  const startedAt = new Date().toISOString();
  try {
    const runs: PhaseRun[] = [];
    let index = 0;
    for (const phase of settings.phases) {
      for (const server of settings.servers) {
        if (stopping) return 130;
        index++;
        log(`${PHASE_LABEL[phase]}: ${server} (${settings.phaseMs / 1000} s)`);
        const run = await runPhase(
          settings,
          processes,
          join(tmp, `${index}-${phase}-${server}`),
          phase,
          server,
        );
        if (stopping) return 130;
        runs.push(run);
        const s = summarizeRun(run);
        log(
          `  busy median ${s.busyMedian}, max ${s.busyMax}; probe ${s.probes} requests, ` +
            `p50 ${s.p50Ms.toFixed(1)} ms, p99 ${s.p99Ms.toFixed(1)} ms, ` +
            `${s.non200} non-200, ${s.timeouts} timeouts, ${s.otherErrors} other errors`,
        );
      }
    }
    const summaries = runs.map(summarizeRun);
    const commitAtEnd = gitDescription();
    const commit =
      commitAtEnd === commitAtStart
        ? commitAtStart
        : `${commitAtStart} at start, ${commitAtEnd} at end`;
    const sidecar =
      settings.sidecarRoot === REPO_ROOT.replace(/\/$/, '')
        ? `this checkout, ${sidecarEntry().entry}`
        : `${settings.sidecarRoot}/bin/askr-sidecar.js (--sidecar-root)`;
    out('# askr-sidecar worker protection benchmark (bench:protect)');
    out();
    out(`- started ${startedAt}; checkout: ${commit}`);
    out(`- machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, shared by everything below`);
    out(`- node ${process.version}; ${versionOf(settings.nginx, ['-v'])}; ${fpmVersion()}`);
    out(
      `- sidecar: ${sidecar}; default settings (access log, metrics listener, datagram socket off)`,
    );
    out(
      `- each server on its own php-fpm pool: pm = ${POOL_SHAPE.pm}, max_children ${POOL_SHAPE.maxChildren}, ` +
        `start ${POOL_SHAPE.startServers}, min spare ${POOL_SHAPE.minSpareServers}, max spare ${POOL_SHAPE.maxSpareServers} ` +
        `(Debian's www pool); both started fresh for every phase`,
    );
    out(
      `- phases of ${settings.phaseMs / 1000} s; ${settings.slowClients} slow clients: readers GET ` +
        `${settings.bigBytes} bytes with SO_RCVBUF ${settings.readerRcvbufBytes} and never read; uploaders ` +
        `POST Content-Length ${settings.uploadBytes} at ${settings.uploadBytesPerSec} B/s`,
    );
    out(
      `- busy = workers not "Idle" in FPM's full status, read over FastCGI (pm.status_listen) every ${settings.sampleMs} ms; ` +
        `probe: sequential GET /tiny, fresh connection, ${settings.probeTimeoutMs / 1000} s timeout, ` +
        `${settings.probeGapMs} ms apart; percentiles include failed requests`,
    );
    const wmemMax = tcpSendBufferMaxBytes();
    if (settings.phases.includes('slow-readers') && settings.bigBytes <= wmemMax) {
      out(
        `- note: the slow readers' answer (${settings.bigBytes} bytes) is not larger than net.ipv4.tcp_wmem max ` +
          `(${wmemMax}): on loopback it can sit whole in the server's socket send buffer, so phase 1 may not ` +
          `test response buffering at all; --big-bytes 16777216 does`,
      );
    }
    out();
    out('## Per phase');
    out();
    out(resultsTable(summaries));
    out();
    out('## Ratios sidecar / nginx (lower is better)');
    out();
    out(ratiosTable(summaries));
    out();
    out(
      '"busy workers, 1 char/s": the most busy workers seen in each second. "idle after": time ' +
        'from the slow clients leaving to the pool having no busy worker.',
    );
    if (settings.json !== '') {
      writeFileSync(
        settings.json,
        JSON.stringify({ startedAt, commit, sidecar, settings, summaries, runs }, null, 2) + '\n',
      );
      log(`wrote ${settings.json}`);
    }
    return 0;
  } finally {
    if (!stopping) {
      await processes.stopAll();
      removeTmp();
    }
  }
}

main().then(
  (code) => {
    // Exit explicitly: a status read abandoned after its timeout must not keep the bench alive.
    process.exit(code);
  },
  (err: unknown) => {
    // Interrupted: the signal handler reports, cleans up and exits; this error is its echo.
    if (stopping) return;
    const detail =
      err instanceof Error
        ? process.env['BENCH_DEBUG'] === '1'
          ? (err.stack ?? err.message)
          : err.message
        : String(err);
    log(detail);
    process.exit(1);
  },
);
