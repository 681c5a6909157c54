/**
 * `npm run bench:sse`: askr-sidecar's SSE hub against nginx + nchan on this machine, with one
 * subscriber client process for both (bench/sse/client-proc.ts), then the "FPM workers needed"
 * comparison (PHP flush loop behind nginx vs a held stream behind the sidecar). Not part of
 * `npm test`. Everything listens on 127.0.0.1; every process started is stopped at the end, on
 * errors and on Ctrl-C. Sizes come from BENCH_* variables (see `usage` below) for quick runs.
 */
import { writeFileSync } from 'node:fs';
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
  BENCH_SUBSCRIBERS      1000,10000         fan-out sizes (one channel)
  BENCH_REPEAT           1                  rounds per size (servers alternate; ratios use medians)
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
function numbers(name: string, fallback: string): number[] {
  const out = list(name, fallback).map(Number);
  if (out.some((n) => !Number.isFinite(n) || n < 0)) {
    throw new Error(`${name} must be a comma-separated list of numbers\n\n${usage}`);
  }
  return out;
}
function number(name: string, fallback: number): number {
  const [n] = numbers(name, String(fallback));
  return n ?? fallback;
}

function log(message: string): void {
  process.stderr.write(`[bench:sse ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    console.log(usage);
    return;
  }
  const parts = new Set(list('BENCH_PARTS', 'fanout,rate,fpm'));
  const targets = list('BENCH_TARGETS', 'askr-sidecar,nchan') as TargetName[];
  for (const t of targets) {
    if (!TARGET_NAMES.includes(t)) throw new Error(`unknown target ${t}\n\n${usage}`);
  }
  const nginxWorkers = number('BENCH_NGINX_WORKERS', 1);
  const nodeArgs = list('BENCH_SIDECAR_NODE_ARGS', '').flatMap((a) => a.split(' '));
  const sidecarArgs = nodeArgs.length > 0 ? { nodeArgs } : {};
  const quiet = {
    maxCores: Number(env('BENCH_QUIET_CORES', '0.3')),
    maxWaitMs: number('BENCH_QUIET_WAIT_S', 90) * 1000,
  };
  const results: SseResults = { fanout: [], rate: [], ramp: [] };
  const client = await SubscriberClient.start();
  try {
    if (parts.has('fanout')) {
      const repeat = number('BENCH_REPEAT', 1);
      for (const subscribers of numbers('BENCH_SUBSCRIBERS', '1000,10000')) {
        for (let round = 0; round < repeat; round++) {
          for (const target of round % 2 === 0 ? targets : [...targets].reverse()) {
            log(`fan-out: ${target}, ${subscribers} subscribers (round ${round + 1}/${repeat})`);
            const r = await measureFanout(target, client, {
              subscribers,
              messages: number('BENCH_MESSAGES', 60),
              rate: number('BENCH_MESSAGE_RATE', 2),
              nginxWorkers,
              settleMs: number('BENCH_SETTLE_MS', 2000),
              probe: env('BENCH_MEMORY_PROBE', '0') === '1',
              quiet,
              ...sidecarArgs,
            });
            results.fanout.push(r);
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
      const singleRates = numbers('BENCH_RATES', '1000,2000,4000,8000,16000,32000,64000,128000');
      const fanoutRates = numbers('BENCH_FANOUT_RATES', '50,100,200,400,800,1600,3200');
      const maxP99Ms = number('BENCH_RATE_MAX_P99_MS', 250);
      const seconds = number('BENCH_RATE_SECONDS', 5);
      for (const subscribers of numbers('BENCH_RATE_SUBSCRIBERS', '1,1000')) {
        const runs: { target: TargetName; publisher: 'http' | 'datagram' }[] = targets.map(
          (target) => ({ target, publisher: 'http' }),
        );
        if (targets.includes('askr-sidecar') && env('BENCH_RATE_DATAGRAM', '1') !== '0') {
          runs.push({ target: 'askr-sidecar', publisher: 'datagram' });
        }
        for (const { target, publisher } of runs) {
          log(`publish rate: ${target} via ${publisher}, ${subscribers} subscribers`);
          const r = await measureRate(target, client, {
            subscribers,
            rates: subscribers > 1 ? fanoutRates : singleRates,
            seconds,
            maxP99Ms,
            quiet,
            publisher,
            nginxWorkers,
            ...sidecarArgs,
          });
          results.rate.push(r);
          log(`  sustained ${r.sustained}/s`);
        }
      }
    }
    if (parts.has('fpm')) {
      const workers = number('BENCH_FPM_WORKERS', 8);
      const helloSeconds = number('BENCH_HELLO_SECONDS', 5);
      const helloConnections = number('BENCH_HELLO_CONNECTIONS', 4);
      const nofile = number('BENCH_HOLD_NOFILE', 1024);
      const ramps: { mode: StreamMode; steps: number[]; nofile?: number }[] = [
        { mode: 'flush', steps: numbers('BENCH_FLUSH_STEPS', '0,4,7,8,9,12,16') },
        { mode: 'hold', steps: numbers('BENCH_HOLD_STEPS', '0,8,16,64,1000,5000,10000') },
      ];
      if (nofile > 0) {
        ramps.push({
          mode: 'hold',
          steps: numbers('BENCH_NOFILE_STEPS', '500,900,1000,1100,1500'),
          nofile,
        });
      }
      for (const { mode, steps, nofile: limit } of ramps) {
        log(
          `FPM workers: ${mode}, steps ${steps.join(',')}${limit === undefined ? '' : `, ulimit -n ${limit}`}`,
        );
        const r = await measureRamp(mode, client, {
          workers,
          steps,
          helloSeconds,
          helloConnections,
          quiet,
          ...(limit === undefined ? {} : { nofile: limit }),
        });
        results.ramp.push(r);
        for (const s of r.steps) {
          log(
            `  ${s.streams} streams: ${s.live} live, FPM workers held ${s.fpmHeldMax}, ` +
              `hello ${s.hello.perSecond.toFixed(0)}/s, ${s.hello.errors} errors`,
          );
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
