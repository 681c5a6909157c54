/**
 * `npm run bench:sse`: askr-sidecar's SSE hub against nginx + nchan on this machine, with one
 * subscriber client process for both (bench/sse/client-proc.ts), then the "FPM workers needed"
 * comparison (PHP flush loop behind nginx vs a held stream behind the sidecar). Every server runs
 * in two modes (as shipped: its defaults, access logs on; lean: access logs off), rounds rotate
 * the order, the report gives medians, the machine's idle share and a verdict per target and mode.
 * Not part of `npm test`. Everything listens on 127.0.0.1; every process started is stopped at
 * the end, on errors and on Ctrl-C. Sizes come from BENCH_* variables (see `usage` below).
 */
import { writeFileSync } from 'node:fs';
import type { QuietReading } from './lib/cpu.ts';
import { MODES } from './lib/modes.ts';
import { rotate } from './lib/rounds.ts';
import { runBench } from './lib/run.ts';
import { SubscriberClient } from './sse/client.ts';
import { measureFanout, TARGET_NAMES, type TargetName } from './sse/fanout.ts';
import { measureRate } from './sse/rate.ts';
import { measureRamp, type StreamMode } from './sse/fpm-workers.ts';
import { stopAll } from './sse/procs.ts';
import { renderReport, type SseResults } from './sse/report.ts';
import { removeTempDirs } from './sse/servers.ts';

const usage = `BENCH_* variables (defaults in brackets):
  BENCH_PARTS            fanout,rate,fpm    which parts to run
  BENCH_TARGETS          askr-sidecar,nchan (node-http: a plain node:http SSE server, the floor)
  BENCH_MODES            as-shipped,lean    server configurations: each server's defaults with
                                            access logs on, and the same with access logs off
  BENCH_SUBSCRIBERS      1000,10000         fan-out sizes (one channel)
  BENCH_REPEAT           1                  rounds of the fanout and rate parts (the order of mode
                                            and server rotates each round; verdicts use medians)
  BENCH_MESSAGES         60                 events per latency run
  BENCH_MESSAGE_RATE     2                  events/s in a latency run
  BENCH_SETTLE_MS        2000               wait before reading memory after opening streams
  BENCH_RATE_SUBSCRIBERS 1,1000             subscribers for the publish-rate steps
  BENCH_RATES            1000,2000,4000,8000,16000,32000,64000,128000  rate steps with 1 subscriber
  BENCH_FANOUT_RATES     50,100,200,400,800,1600,3200   rate steps with more subscribers
  BENCH_RATE_SECONDS     5                  length of one rate step
  BENCH_RATE_MAX_P99_MS  250                a step with a higher p99 latency did not keep up
  BENCH_RATE_DATAGRAM    1                  also step the sidecar's datagram publish (0: no)
  BENCH_NGINX_WORKERS    1                  nginx worker_processes for nchan
  BENCH_FPM_WORKERS      8
  BENCH_FLUSH_STEPS      0,4,7,8,9,12,16    concurrent flush-loop streams (nginx)
  BENCH_HOLD_STEPS       0,8,16,64,1000,5000,10000   concurrent held streams (sidecar)
  BENCH_HOLD_NOFILE      1024               then holds again with the sidecar under ulimit -n N (0: skip)
  BENCH_NOFILE_STEPS     500,900,1000,1100,1500   concurrent held streams for that run
  BENCH_HELLO_SECONDS    5                  wrk hello-world run at each step
  BENCH_HELLO_CONNECTIONS 4
  BENCH_SIDECAR_NODE_ARGS ""                extra node flags for the sidecar (e.g. --cpu-prof)
  BENCH_MEMORY_PROBE     0                  1: also read the sidecar's memory after a full GC
  BENCH_PROBE_SNAPSHOT   ""                 DIR (with the probe): heap snapshots before/after there
  BENCH_QUIET_CORES      0.3                before each measurement, wait until other processes use
  BENCH_QUIET_WAIT_S     90                   fewer cores than this, for at most this long
  BENCH_JSON             ""                 also write the raw results to this file`;

const PARTS = ['fanout', 'rate', 'fpm'] as const;

function env(name: string, fallback: string): string {
  const v = process.env[name];
  return v === undefined || v.trim() === '' ? fallback : v.trim();
}
function list(name: string, fallback: string): string[] {
  return env(name, fallback)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}
/** A comma-separated list of names, each one of `all`; throws naming the variable and the value. */
function pick<T extends string>(name: string, all: readonly T[], fallback: string): T[] {
  const picked = list(name, fallback);
  for (const p of picked) {
    if (!(all as readonly string[]).includes(p)) {
      throw new Error(`${name}: "${p}" is not one of ${all.join(', ')}\n\n${usage}`);
    }
  }
  return all.filter((a) => picked.includes(a));
}
function numbers(name: string, fallback: string): number[] {
  const out = list(name, fallback).map(Number);
  if (out.some((n) => !Number.isFinite(n) || n < 0)) {
    throw new Error(
      `${name}=${env(name, fallback)}: expected a comma-separated list of numbers >= 0\n\n${usage}`,
    );
  }
  return out;
}
function number(name: string, fallback: number, min = 0): number {
  const text = env(name, String(fallback));
  const n = Number(text);
  if (!Number.isFinite(n) || n < min) {
    throw new Error(`${name}=${text}: expected a number >= ${min}\n\n${usage}`);
  }
  return n;
}
function integer(name: string, fallback: number, min: number): number {
  const text = env(name, String(fallback));
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`${name}=${text}: expected an integer >= ${min}\n\n${usage}`);
  }
  return n;
}

function log(message: string): void {
  process.stderr.write(`[bench:sse ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function quietNote(q: QuietReading): string {
  return `idle before ${Math.round(q.idlePct)}%, others ${q.othersCores.toFixed(2)} cores${q.quiet ? '' : ' (not quiet)'}`;
}

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    console.log(usage);
    return;
  }
  // Every variable is read and checked before anything starts: a typo stops the run at once.
  const parts = new Set(pick('BENCH_PARTS', PARTS, PARTS.join(',')));
  const targets = pick('BENCH_TARGETS', TARGET_NAMES, 'askr-sidecar,nchan');
  const modes = pick('BENCH_MODES', MODES, MODES.join(','));
  const repeat = integer('BENCH_REPEAT', 1, 1);
  const nginxWorkers = integer('BENCH_NGINX_WORKERS', 1, 1);
  const nodeArgs = list('BENCH_SIDECAR_NODE_ARGS', '').flatMap((a) => a.split(' '));
  const sidecarArgs = nodeArgs.length > 0 ? { nodeArgs } : {};
  const quiet = {
    maxCores: number('BENCH_QUIET_CORES', 0.3),
    maxWaitMs: number('BENCH_QUIET_WAIT_S', 90) * 1000,
  };
  const fanoutSizes = numbers('BENCH_SUBSCRIBERS', '1000,10000');
  const fanoutOpts = {
    messages: integer('BENCH_MESSAGES', 60, 1),
    rate: number('BENCH_MESSAGE_RATE', 2, 0.001),
    settleMs: number('BENCH_SETTLE_MS', 2000),
    probe: env('BENCH_MEMORY_PROBE', '0') === '1',
  };
  const singleRates = numbers('BENCH_RATES', '1000,2000,4000,8000,16000,32000,64000,128000');
  const fanoutRates = numbers('BENCH_FANOUT_RATES', '50,100,200,400,800,1600,3200');
  const maxP99Ms = number('BENCH_RATE_MAX_P99_MS', 250);
  const seconds = number('BENCH_RATE_SECONDS', 5, 0.001);
  const rateSubscribers = numbers('BENCH_RATE_SUBSCRIBERS', '1,1000');
  const datagram = env('BENCH_RATE_DATAGRAM', '1') !== '0';
  const workers = integer('BENCH_FPM_WORKERS', 8, 1);
  const helloSeconds = number('BENCH_HELLO_SECONDS', 5, 0.001);
  const helloConnections = integer('BENCH_HELLO_CONNECTIONS', 4, 1);
  const nofile = integer('BENCH_HOLD_NOFILE', 1024, 0);
  const flushSteps = numbers('BENCH_FLUSH_STEPS', '0,4,7,8,9,12,16');
  const holdSteps = numbers('BENCH_HOLD_STEPS', '0,8,16,64,1000,5000,10000');
  const nofileSteps = numbers('BENCH_NOFILE_STEPS', '500,900,1000,1100,1500');

  const results: SseResults = { modes, fanout: [], rate: [], ramp: [] };
  const client = await SubscriberClient.start();
  try {
    if (parts.has('fanout')) {
      const pairs = modes.flatMap((mode) => targets.map((target) => ({ mode, target })));
      for (const subscribers of fanoutSizes) {
        for (let round = 1; round <= repeat; round++) {
          for (const { mode, target } of rotate(pairs, round - 1)) {
            log(
              `fan-out: ${target} (${mode}), ${subscribers} subscribers (round ${round}/${repeat})`,
            );
            const r = await measureFanout(target, client, {
              subscribers,
              ...fanoutOpts,
              nginxWorkers,
              mode,
              round,
              quiet,
              ...sidecarArgs,
            });
            results.fanout.push(r);
            log(`  ${quietNote(r.quiet)}`);
            for (const run of r.runs) {
              log(
                `  ${run.publisher}: opened ${r.opened}, p50 ${run.latency.p50.toFixed(2)} ms, ` +
                  `p99 ${run.latency.p99.toFixed(2)} ms, ${run.received}/${run.expected} delivered, ` +
                  `${(r.rssPerConn / 1024).toFixed(1)} KiB RSS/stream`,
              );
            }
          }
        }
      }
    }
    if (parts.has('rate')) {
      const runs: { target: TargetName; publisher: 'http' | 'datagram' }[] = targets.map(
        (target) => ({ target, publisher: 'http' }),
      );
      if (targets.includes('askr-sidecar') && datagram) {
        runs.push({ target: 'askr-sidecar', publisher: 'datagram' });
      }
      const triples = modes.flatMap((mode) => runs.map((run) => ({ mode, ...run })));
      for (const subscribers of rateSubscribers) {
        for (let round = 1; round <= repeat; round++) {
          for (const { mode, target, publisher } of rotate(triples, round - 1)) {
            log(
              `publish rate: ${target} (${mode}) via ${publisher}, ${subscribers} subscribers (round ${round}/${repeat})`,
            );
            const r = await measureRate(target, client, {
              subscribers,
              rates: subscribers > 1 ? fanoutRates : singleRates,
              seconds,
              maxP99Ms,
              quiet,
              publisher,
              nginxWorkers,
              mode,
              round,
              ...sidecarArgs,
            });
            results.rate.push(r);
            log(`  ${quietNote(r.quiet)}; sustained ${r.sustained}/s`);
          }
        }
      }
    }
    if (parts.has('fpm')) {
      // Counts of streams and workers, not timings: one ramp per mode, no rounds.
      const ramps: { mode: StreamMode; steps: number[]; nofile?: number }[] = [
        { mode: 'flush', steps: flushSteps },
        { mode: 'hold', steps: holdSteps },
      ];
      if (nofile > 0) ramps.push({ mode: 'hold', steps: nofileSteps, nofile });
      for (const serverMode of modes) {
        for (const { mode, steps, nofile: limit } of ramps) {
          log(
            `FPM workers (${serverMode}): ${mode}, steps ${steps.join(',')}${limit === undefined ? '' : `, ulimit -n ${limit}`}`,
          );
          const r = await measureRamp(mode, client, {
            workers,
            steps,
            helloSeconds,
            helloConnections,
            serverMode,
            quiet,
            ...(limit === undefined ? {} : { nofile: limit }),
          });
          results.ramp.push(r);
          log(`  ${quietNote(r.quiet)}`);
          for (const s of r.steps) {
            log(
              `  ${s.streams} streams: ${s.live} live, FPM workers held ${s.fpmHeldMax}, ` +
                `hello ${s.hello.perSecond.toFixed(0)}/s, ${s.hello.errors} errors`,
            );
          }
        }
      }
    }
  } finally {
    await client.exit();
  }
  const jsonPath = env('BENCH_JSON', '');
  if (jsonPath !== '') writeFileSync(jsonPath, JSON.stringify(results, null, 2));
  console.log(renderReport(results));
}

runBench(main, async () => {
  await stopAll();
  removeTempDirs();
});
