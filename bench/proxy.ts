/**
 * `npm run bench:proxy`: the sidecar against Debian's nginx (as configured by default, and with
 * FastCGI keepalive) and a bare node:http server (node-ceiling, static only), loaded by wrk, for a
 * PHP hello world through the front controller and a 16 KiB static file, in two modes: as shipped
 * (every server's defaults, access logs on) and lean (access logs off). Prints markdown: per-run
 * rows, medians and ratios per mode, the machine's idle share and the verdict against the issue's
 * targets per mode.
 * Invariants: one server runs at a time, each with a php-fpm pool of its own (pm = static), so no
 * server's idle FastCGI connections can pin another's workers; rounds rotate the order; every
 * measurement waits (bounded) for a quiet machine; everything binds 127.0.0.1; every process is
 * stopped at the end, on error and on Ctrl-C. Settings: BENCH_* variables (docs/benchmarks.md).
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { pino } from 'pino';
import {
  awaitQuietMachine,
  cpuSnapshot,
  cpuUsage,
  groupsTicks,
  ownProcessGroup,
  type CpuSnapshot,
} from './lib/cpu.ts';
import { MODE_MEANING } from './lib/modes.ts';
import { ProcessSet, sidecarEntry } from './lib/processes.ts';
import {
  fileSize,
  FRONT_CONTROLLER,
  STATIC_BYTES,
  STATIC_PATH,
  staticAnswerBytes,
  startServer,
  stopServer,
  writeDocroot,
  type Context,
  type Running,
} from './lib/proxy-servers.ts';
import {
  ratiosTable,
  runsTable,
  serves,
  summarize,
  summaryTable,
  verdictTable,
  verdicts,
  type Measurement,
  type ServerId,
  type Workload,
} from './lib/report.ts';
import { rotate } from './lib/rounds.ts';
import { readSettings, requirePrograms, versionOf, wrkDurationMs } from './lib/settings.ts';
import { runWrk, type WrkOptions } from './lib/wrk.ts';

async function measure(
  ctx: Context,
  running: Running,
  workload: Workload,
  round: number,
): Promise<Measurement> {
  const { settings } = ctx;
  const options: WrkOptions = {
    url: running.base + (workload === 'php' ? settings.phpPath : STATIC_PATH),
    threads: settings.threads,
    connections: settings.connections,
    duration: settings.duration,
    timeout: settings.timeout,
  };
  if (!/^0+[sm]$/.test(settings.warmup)) {
    await runWrk(settings.wrk, { ...options, duration: settings.warmup }, ctx.processes);
  }
  const groups = new Map<string, number | null>([
    ['server', running.proc.pgid],
    ['fpm', running.fpm?.pgid ?? null],
    ['bench', ctx.benchPgid],
    ['wrk', null],
  ]);
  // After the warm-up (whose connections close meanwhile): wait for the machine to be quiet.
  const ours = [...groups.values()].filter((g): g is number => g !== null);
  const quiet = await awaitQuietMachine(() => groupsTicks(ours), {
    maxCores: settings.quietCores,
    maxWaitMs: settings.quietWaitMs,
  });
  if (!quiet.quiet) {
    process.stderr.write(
      `bench: the machine did not get quiet in ${settings.quietWaitMs / 1000} s (others used ${quiet.othersCores.toFixed(2)} cores); measuring anyway\n`,
    );
  }
  const logBefore = fileSize(running.accessLog);
  // CPU is sampled inside the run, 1 s after wrk starts to 1 s before it ends: wrk's own ticks
  // vanish from /proc when it exits, and connection set-up / teardown are not the steady state.
  const durationMs = wrkDurationMs(settings.duration);
  const marginMs = durationMs >= 4_000 ? 1_000 : 0;
  let before: CpuSnapshot | null = null;
  let after: CpuSnapshot | null = null;
  const timers: NodeJS.Timeout[] = [];
  let wrk;
  try {
    wrk = await runWrk(settings.wrk, options, ctx.processes, (w) => {
      groups.set('wrk', w.pgid);
      timers.push(
        setTimeout(() => (before = cpuSnapshot(groups)), marginMs),
        setTimeout(() => (after = cpuSnapshot(groups)), durationMs - marginMs - 100),
      );
    });
  } finally {
    for (const t of timers) clearTimeout(t);
  }
  const cpu =
    before !== null && after !== null ? cpuUsage(before, after) : new Map<string, number>();
  return {
    mode: running.mode,
    server: running.server,
    workload,
    round,
    wrk,
    cpu,
    quiet,
    accessLogBytes: running.accessLog === null ? null : fileSize(running.accessLog) - logBefore,
  };
}

/** Set on Ctrl-C / SIGTERM: the signal handler stops everything and exits. */
let stopping = false;

async function main(): Promise<number> {
  const settings = readSettings();
  requirePrograms(settings);
  const processes = new ProcessSet();
  const tmp = mkdtempSync(join(tmpdir(), 'askr-bench-'));
  // PHP runs as www-data when the benchmark runs as root: it must reach the document root.
  chmodSync(tmp, 0o755);
  const removeTmp = (): void => {
    if (settings.keepTmp) process.stderr.write(`bench: kept ${tmp}\n`);
    else rmSync(tmp, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\nbench: ${signal}: stopping every process\n`);
    // Exit from here: the measurement in progress is meaningless now.
    processes
      .stopAll()
      .catch((err: unknown) => process.stderr.write(`bench: ${String(err)}\n`))
      .finally(() => {
        removeTmp();
        process.exit(130);
      });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const logger = pino({ level: 'warn' }, pino.destination(2));
  const out = (line = ''): void => void process.stdout.write(line + '\n');
  const measurements: Measurement[] = [];
  try {
    const root = writeDocroot(join(tmp, 'public'));
    const ctx: Context = { settings, processes, tmp, root, logger, benchPgid: ownProcessGroup() };
    const entry = sidecarEntry();
    const servers = settings.servers.filter((s) => settings.workloads.some((w) => serves(s, w)));
    // The figures only mean something on an otherwise idle machine: say how idle it was.
    const start = await awaitQuietMachine(() => groupsTicks([ctx.benchPgid]), {
      maxCores: settings.quietCores,
      maxWaitMs: 0,
    });
    if (!start.quiet) {
      process.stderr.write(
        `bench: WARNING: other processes used ${start.othersCores.toFixed(2)} cores before the benchmark; each measurement waits up to ${settings.quietWaitMs / 1000} s for a quiet machine\n`,
      );
    }
    out('# askr-sidecar proxy benchmark');
    out();
    out(
      `- machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, shared by server, php-fpm and wrk`,
    );
    out(
      `- node ${process.version} (sidecar and node-ceiling); ${versionOf(settings.nginx, ['-v'])}; ${versionOf(settings.wrk, ['-v'])}`,
    );
    out(
      `- machine before start: ${Math.round(start.idlePct)}% idle, others ${start.othersCores.toFixed(2)} cores; before each run the benchmark waits (at most ${settings.quietWaitMs / 1000} s) until others use < ${settings.quietCores} cores ("idle before", "CPU others" per run)`,
    );
    out(
      `- sidecar entry: ${entry.entry}${entry.stale ? ' (WARNING: older than src/, run npm run build)' : ''}`,
    );
    out(
      `- php-fpm: a pool of its own for every server start (node-ceiling: none), pm = static, ${settings.fpmChildren} children, pm.max_requests = 0, same binary and php.ini; nginx worker_processes ${settings.nginxWorkers}, keepalive ${settings.fpmChildren}; sidecar fastcgi.pool_size ${settings.sidecarPoolSize > 0 ? settings.sidecarPoolSize : 'default (external FPM: a connection per request)'}`,
    );
    for (const mode of settings.modes) out(`- mode ${mode}: ${MODE_MEANING[mode]}`);
    out(
      `- wrk: ${settings.threads} threads, ${settings.connections} connections, ${settings.warmup} warm-up + ${settings.duration} measured per run, timeout ${settings.timeout}, ${settings.rounds} round(s), order rotated each round`,
    );
    out(
      `- PHP: GET ${settings.phpPath} (front controller ${FRONT_CONTROLLER}); static: GET ${STATIC_PATH} (${STATIC_BYTES} bytes); node-ceiling: static only`,
    );

    const answerBytes = new Map<ServerId, number>();
    for (let round = 1; round <= settings.rounds; round++) {
      // Rotate the order so slow drift (thermal, neighbours) does not always hit the same server.
      for (const mode of rotate(settings.modes, round - 1)) {
        for (const server of rotate(servers, round - 1)) {
          if (stopping) return 130;
          const running = await startServer(ctx, server, mode, round);
          try {
            if (!answerBytes.has(server)) {
              answerBytes.set(server, await staticAnswerBytes(running.port));
            }
            for (const workload of settings.workloads) {
              if (!serves(server, workload)) continue;
              const m = await measure(ctx, running, workload, round);
              if (stopping) return 130; // wrk was interrupted: not a measurement
              measurements.push(m);
              process.stderr.write(
                `bench: round ${round} ${mode} ${server} ${workload}: ${Math.round(m.wrk.requestsPerSec)} req/s, p99 ${m.wrk.p99Ms.toFixed(2)} ms, idle before ${Math.round(m.quiet.idlePct)}%, others ${Math.round(m.cpu.get('other') ?? 0)}%\n`,
              );
            }
          } finally {
            if (!stopping) await stopServer(ctx, running);
          }
        }
      }
    }
    out(
      `- one static answer (status line + headers + body) on the wire: ${[...answerBytes].map(([s, n]) => `${s} ${n.toLocaleString('en-US')} B`).join(', ')}`,
    );
    out();

    const summaries = summarize(measurements);
    const verdictList = settings.modes.flatMap((mode) => verdicts(summaries, mode));
    out('## Runs');
    out();
    out(runsTable(measurements));
    out();
    for (const mode of settings.modes) {
      out(`## Mode ${mode}: medians (${settings.rounds} round(s))`);
      out();
      out(summaryTable(summaries, mode));
      out();
      out(`### Ratios (${mode})`);
      out();
      out(ratiosTable(summaries, mode));
      out();
    }
    out('## Targets');
    out();
    out(verdictTable(verdictList));
    out();
    out(
      'CPU columns: % of one core during the measured window (2 cores = 200%); "CPU others" is what processes outside the benchmark used then; "idle before" is the share of the whole machine idle in the second before the run. "access log/req": log bytes written per request during the run (sidecar: its stdout file, nginx: access.log).',
    );
    if (settings.json !== '') {
      writeFileSync(
        settings.json,
        JSON.stringify(
          {
            settings,
            start,
            answerBytes: Object.fromEntries(answerBytes),
            measurements: measurements.map((m) => ({ ...m, cpu: Object.fromEntries(m.cpu) })),
            summaries: summaries.map((s) => ({ ...s, cpu: Object.fromEntries(s.cpu) })),
            verdicts: verdictList,
          },
          null,
          2,
        ) + '\n',
      );
    }
    const invalid = measurements.some((m) => m.wrk.non2xx > 0 || m.wrk.socketErrors > 0);
    if (invalid) process.stderr.write('bench: some runs had non-2xx answers or socket errors\n');
    if (settings.strict && verdictList.some((v) => !v.pass)) return 1;
    return invalid ? 1 : 0;
  } finally {
    if (!stopping) {
      await processes.stopAll();
      removeTmp();
    }
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Interrupted: the signal handler reports, cleans up and exits; this error is its echo.
    if (stopping) return;
    // The messages carry what matters (setting, program, child output); BENCH_DEBUG=1 adds stacks.
    const detail =
      err instanceof Error
        ? process.env['BENCH_DEBUG'] === '1'
          ? (err.stack ?? err.message)
          : err.message
        : String(err);
    process.stderr.write(`bench: ${detail}\n`);
    process.exitCode = 1;
  },
);
