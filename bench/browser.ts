/**
 * `npm run bench:browser`: the browser side of issue 12 in one run. (1) A reconnect storm: N
 * clients with 2 private channels each dropped at once and reconnecting with Last-Event-ID, with
 * subscription grants vs the app's auth route per channel, each on its own php-fpm pool: FPM
 * requests, time until all are back, p99 reconnect, one event after. (2) GRIP publishing, the
 * sidecar vs Pushpin 1.36 (each as shipped and lean) on the same PHP origin page: publish ->
 * delivery p50/p99, completeness, publishes/s, RSS per held stream. Rounds rotate the variants;
 * the report gives medians and ratios. Every process started is stopped at the end, on errors
 * and on Ctrl-C. Not part of `npm test`.
 */
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { machineBusyPct } from './lib/cpu.ts';
import { runBench } from './lib/run.ts';
import { stopAll } from './sse/procs.ts';
import { removeTempDirs } from './sse/servers.ts';
import { measureGrip, type GripMeasurement } from './browser/grip.ts';
import { renderGrip, renderStorm } from './browser/report.ts';
import { readBrowserSettings, STORM_VARIANTS, usage } from './browser/settings.ts';
import { measureStorm, type StormMeasurement } from './browser/storm.ts';

function log(message: string): void {
  process.stderr.write(`[bench:browser ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** `list` rotated by `round`: every entry is measured early and late in some round. */
function rotated<T>(list: readonly T[], round: number): T[] {
  return list.map((_, i) => list[(i + round) % list.length] as T);
}

async function main(): Promise<void> {
  const s = readBrowserSettings(process.argv.slice(2));
  if (s === null) {
    console.log(usage);
    return;
  }
  const started = Date.now();
  const idle = (busy: number): number => Math.max(0, 100 - busy / cpus().length);
  const idleBefore = idle(await machineBusyPct(2000));
  log(`machine idle before the run: ${idleBefore.toFixed(0)} %`);
  const storm: StormMeasurement[] = [];
  const grip: GripMeasurement[] = [];
  if (s.parts.includes('storm')) {
    for (const n of s.clients) {
      for (let round = 0; round < s.rounds; round++) {
        for (const variant of rotated(STORM_VARIANTS, round)) {
          log(`storm, ${n} clients, round ${round + 1}/${s.rounds}: ${variant}`);
          storm.push(await measureStorm(variant, n, round, s.workers, log));
        }
      }
    }
  }
  if (s.parts.includes('grip')) {
    for (let round = 0; round < s.rounds; round++) {
      for (const target of rotated(s.gripTargets, round)) {
        log(`GRIP, ${s.held} held, round ${round + 1}/${s.rounds}: ${target}`);
        grip.push(await measureGrip(target, s.held, round, s, log));
      }
    }
  }
  const idleAfter = idle(await machineBusyPct(2000));
  if (s.json !== '') writeFileSync(s.json, JSON.stringify({ storm, grip }, null, 2));
  const seconds = Math.round((Date.now() - started) / 1000);
  const header =
    `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, Node ${process.version}, ` +
    `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB; ` +
    `machine idle before ${idleBefore.toFixed(0)} %, after ${idleAfter.toFixed(0)} %; ` +
    `${s.rounds} round(s); ${s.workers} php-fpm workers per pool; run time ${seconds} s.`;
  console.log(
    [
      header,
      '',
      ...(storm.length > 0 ? [renderStorm(storm), ''] : []),
      ...(grip.length > 0 ? [renderGrip(grip)] : []),
    ].join('\n'),
  );
}

runBench(main, async () => {
  await stopAll();
  removeTempDirs();
});
