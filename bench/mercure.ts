/**
 * `npm run bench:mercure`: Mercure fan-out side by side in one run. The sidecar's Mercure hub
 * (1.0 tokens, HS256; `match=` and `match_urlpattern=`), its native askr door on the same topic
 * (the in-run anchor), the sidecar in 0.x compatibility and the npm package `mercure` 0.1.0 (a 0.x
 * hub in Node, the reference that runs here): for N subscribers on one topic, RSS per held
 * stream, publish -> delivery p50/p99 and completeness, and publishes/s of one publisher
 * (sequential, then a few in flight). Rounds rotate the targets; the report gives medians and
 * ratios. Not part of `npm test`. Everything listens on 127.0.0.1; every process started is
 * stopped at the end, on errors and on Ctrl-C.
 */
import { execSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { ClientGroup } from './cluster/clients.ts';
import { machineBusyPct } from './lib/cpu.ts';
import { runBench } from './lib/run.ts';
import { measure, type Measurement } from './mercure/measure.ts';
import { renderReport } from './mercure/report.ts';
import { readMercureSettings, usage } from './mercure/settings.ts';
import { stopAll } from './sse/procs.ts';
import { removeTempDirs } from './sse/servers.ts';

function log(message: string): void {
  process.stderr.write(`[bench:mercure ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function revision(): string {
  try {
    const head = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
    const dirty = execSync('git status --porcelain -- src', { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head} + uncommitted src/ changes` : head;
  } catch {
    return 'unknown';
  }
}

let clients: ClientGroup | null = null;

async function main(): Promise<void> {
  const settings = readMercureSettings(process.argv.slice(2));
  if (settings === null) {
    console.log(usage);
    return;
  }
  const started = Date.now();
  const idleBefore = Math.max(0, 100 - (await machineBusyPct(2000)) / cpus().length);
  log(`machine idle before the run: ${idleBefore.toFixed(0)} %`);
  clients = await ClientGroup.start(settings.clients);
  const results: Measurement[] = [];
  const { targets } = settings;
  for (const size of settings.subscribers) {
    for (let round = 0; round < settings.rounds; round++) {
      // Round r starts at target r: every target is measured early and late in some round.
      const order = targets.map((_, i) => targets[(i + round) % targets.length] ?? targets[0]);
      for (const target of order) {
        if (target === undefined) continue;
        log(`${size} subscribers, round ${round + 1}/${settings.rounds}: ${target}`);
        results.push(await measure(target, size, round, clients, settings, log));
      }
    }
  }
  await clients.exit();
  clients = null;
  if (settings.json !== '') writeFileSync(settings.json, JSON.stringify(results, null, 2));
  const seconds = Math.round((Date.now() - started) / 1000);
  log(`done in ${seconds} s`);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const header =
    `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${revision()}, Node ` +
    `${process.version}, ${cpus().length} x ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB; ` +
    `machine idle before the run ${idleBefore.toFixed(0)} %; run time ${seconds} s; ` +
    `${settings.clients} subscriber processes; latency run ${settings.messages} events at ` +
    `${settings.messageRate}/s; closed-loop phases of ${settings.phaseMs / 1000} s.`;
  console.log(
    renderReport(results, {
      concurrency: settings.concurrency,
      rounds: settings.rounds,
      clients: settings.clients,
      header,
    }),
  );
}

runBench(main, async () => {
  await clients?.exit();
  await stopAll();
  removeTempDirs();
});
