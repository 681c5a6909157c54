/**
 * `npm run bench:proxy`: the sidecar against Debian's nginx (as configured by default, and with
 * FastCGI keepalive) on one php-fpm pool (pm = static, 8 children), loaded by wrk, for a PHP
 * hello world through the front controller and a 16 KiB static file. Prints markdown: per-run
 * rows, medians, ratios sidecar/nginx and the verdict against the targets.
 * Invariants: one server runs at a time (idle pooled FastCGI connections of a stopped-but-alive
 * server would pin FPM workers); everything binds 127.0.0.1; every process is stopped at the end,
 * on error and on Ctrl-C. Settings: BENCH_* environment variables (see docs/benchmarks.md).
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { pino } from 'pino';
import { cpuSnapshot, cpuUsage, machineBusyPct, type CpuSnapshot } from './lib/cpu.ts';
import { renderNginxConf, type NginxVariant } from './lib/nginx-conf.ts';
import {
  ProcessSet,
  freePort,
  sidecarEntry,
  startBenchFpm,
  startNginx,
  startSidecarProcess,
  waitForHttp,
  type ChildServer,
} from './lib/processes.ts';
import {
  ratiosTable,
  runsTable,
  summarize,
  summaryTable,
  verdictTable,
  verdicts,
  type Measurement,
  type ServerId,
  type Workload,
} from './lib/report.ts';
import {
  readSettings,
  requirePrograms,
  versionOf,
  wrkDurationMs,
  type Settings,
} from './lib/settings.ts';
import { runWrk, type WrkOptions } from './lib/wrk.ts';

const PHP_BODY = 'Hello, world\n';
const STATIC_BYTES = 16 * 1024;
const FRONT_CONTROLLER = 'hello.php';
const STATIC_PATH = '/asset-16k.txt';

/** The document root: the front controller and the static file. */
function writeDocroot(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, FRONT_CONTROLLER), '<?php echo "Hello, world\\n";\n');
  // Printable text, so both servers send it as text/plain without any transformation.
  const line = 'askr-sidecar proxy benchmark static asset, 64 bytes per line...\n';
  writeFileSync(join(dir, STATIC_PATH.slice(1)), line.repeat(STATIC_BYTES / line.length));
  return realpathSync(dir);
}

/** Checks one answer of each workload before measuring: a benchmark of 404s proves nothing. */
async function verify(base: string, settings: Settings): Promise<void> {
  const php = await fetch(base + settings.phpPath);
  const phpText = await php.text();
  if (php.status !== 200 || phpText !== PHP_BODY) {
    throw new Error(
      `GET ${settings.phpPath}: ${php.status} ${JSON.stringify(phpText.slice(0, 200))}`,
    );
  }
  const file = await fetch(base + STATIC_PATH);
  const bytes = (await file.arrayBuffer()).byteLength;
  if (file.status !== 200 || bytes !== STATIC_BYTES) {
    throw new Error(
      `GET ${STATIC_PATH}: ${file.status}, ${bytes} bytes (expected ${STATIC_BYTES})`,
    );
  }
}

interface Context {
  settings: Settings;
  processes: ProcessSet;
  tmp: string;
  root: string;
  fpmSocket: string;
  fpmPgid: number | null;
}

async function startServer(
  ctx: Context,
  server: ServerId,
): Promise<{ proc: ChildServer; base: string }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let proc: ChildServer;
  if (server === 'sidecar') {
    const cwd = join(ctx.tmp, 'sidecar');
    mkdirSync(cwd, { recursive: true });
    proc = ctx.processes.add(
      await startSidecarProcess({
        listen: `127.0.0.1:${port}`,
        root: ctx.root,
        fpmAddress: `unix:${ctx.fpmSocket}`,
        poolSize: ctx.settings.fpmChildren,
        index: FRONT_CONTROLLER,
        cwd,
      }),
    );
  } else {
    const variant: NginxVariant = server === 'nginx-default' ? 'default' : 'keepalive';
    const prefix = join(ctx.tmp, server);
    mkdirSync(prefix, { recursive: true });
    const confPath = join(prefix, 'nginx.conf');
    writeFileSync(
      confPath,
      renderNginxConf({
        variant,
        prefixDir: prefix,
        port,
        root: ctx.root,
        index: FRONT_CONTROLLER,
        fpmSocket: ctx.fpmSocket,
        workers: ctx.settings.nginxWorkers,
        // As root, workers would run as "nobody" and could not open FPM's 0600 socket.
        user: process.getuid?.() === 0 ? userInfo().username : null,
        keepaliveConnections: ctx.settings.fpmChildren,
      }),
    );
    proc = ctx.processes.add(await startNginx(ctx.settings.nginx, prefix, confPath));
  }
  await waitForHttp(base + STATIC_PATH, proc);
  await verify(base, ctx.settings);
  return { proc, base };
}

async function measure(
  ctx: Context,
  server: ServerId,
  proc: ChildServer,
  base: string,
  workload: Workload,
  round: number,
): Promise<Measurement> {
  const { settings } = ctx;
  const options: WrkOptions = {
    url: base + (workload === 'php' ? settings.phpPath : STATIC_PATH),
    threads: settings.threads,
    connections: settings.connections,
    duration: settings.duration,
    timeout: settings.timeout,
  };
  if (!/^0+[sm]$/.test(settings.warmup)) {
    await runWrk(settings.wrk, { ...options, duration: settings.warmup }, ctx.processes);
  }
  const groups = new Map<string, number | null>([
    ['server', proc.pgid],
    ['fpm', ctx.fpmPgid],
    ['wrk', null],
  ]);
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
  return { server, workload, round, wrk, cpu };
}

/** Set on Ctrl-C / SIGTERM: the signal handler stops everything and exits. */
let stopping = false;

async function main(): Promise<number> {
  const settings = readSettings();
  requirePrograms(settings);
  const processes = new ProcessSet();
  const tmp = mkdtempSync(join(tmpdir(), 'askr-bench-'));
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
    const fpm = processes.add(await startBenchFpm(join(tmp, 'fpm'), settings.fpmChildren, logger));
    const ctx: Context = {
      settings,
      processes,
      tmp,
      root,
      fpmSocket: fpm.fpm.address.slice('unix:'.length),
      fpmPgid: fpm.pgid,
    };
    const entry = sidecarEntry();
    // The figures only mean something on an otherwise idle machine: say how idle it was.
    const idleBusy = await machineBusyPct(2_000);
    if (idleBusy > 25) {
      process.stderr.write(
        `bench: WARNING: the machine was ${Math.round(idleBusy)}% busy (of one core) before the benchmark; results will be noisy\n`,
      );
    }
    out('# askr-sidecar proxy benchmark');
    out();
    out(
      `- machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, shared by server, php-fpm and wrk`,
    );
    out(
      `- node ${process.version}; ${versionOf(settings.nginx, ['-v'])}; ${versionOf(fpm.fpm.binary, ['-v'])}; ${versionOf(settings.wrk, ['-v'])}`,
    );
    out(
      `- machine load before start: ${Math.round(idleBusy)}% of one core (see "CPU other" per run)`,
    );
    out(
      `- sidecar entry: ${entry.entry}${entry.stale ? ' (WARNING: older than src/, run npm run build)' : ''}`,
    );
    out(
      `- php-fpm: pm = static, ${settings.fpmChildren} children, pm.max_requests = 0; nginx worker_processes ${settings.nginxWorkers}; sidecar fastcgi.pool_size ${settings.fpmChildren}`,
    );
    out(
      `- wrk: ${settings.threads} threads, ${settings.connections} connections, ${settings.warmup} warm-up + ${settings.duration} measured per run, timeout ${settings.timeout}, ${settings.rounds} round(s)`,
    );
    out(
      `- PHP: GET ${settings.phpPath} (front controller ${FRONT_CONTROLLER}); static: GET ${STATIC_PATH} (${STATIC_BYTES} bytes)`,
    );
    out();

    for (let round = 1; round <= settings.rounds; round++) {
      // Rotate the order so slow drift (thermal, neighbours) does not always hit the same server.
      const order = settings.servers.map(
        (_, i) => settings.servers[(i + round - 1) % settings.servers.length] as ServerId,
      );
      for (const server of order) {
        if (stopping) return 130;
        const { proc, base } = await startServer(ctx, server);
        for (const workload of settings.workloads) {
          const m = await measure(ctx, server, proc, base, workload, round);
          if (stopping) return 130; // wrk was interrupted: not a measurement
          measurements.push(m);
          process.stderr.write(
            `bench: round ${round} ${server} ${workload}: ${Math.round(m.wrk.requestsPerSec)} req/s, p99 ${m.wrk.p99Ms.toFixed(2)} ms\n`,
          );
        }
        await processes.stop(proc);
      }
    }

    const summaries = summarize(measurements);
    const verdictList = verdicts(summaries);
    out('## Runs');
    out();
    out(runsTable(measurements));
    out();
    out(`## Medians (${settings.rounds} round(s))`);
    out();
    out(summaryTable(summaries));
    out();
    out('## Ratios');
    out();
    out(ratiosTable(summaries));
    out();
    out('## Targets');
    out();
    out(verdictTable(verdictList));
    out();
    out(
      'CPU columns: % of one core during the measured window (2 cores = 200%); "other" is everything else on the machine.',
    );
    if (settings.json !== '') {
      writeFileSync(
        settings.json,
        JSON.stringify(
          {
            settings,
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
