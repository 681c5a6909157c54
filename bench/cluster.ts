/**
 * `npm run bench:cluster`: what clustering over Redis costs and buys. The same N subscribers on
 * one channel, measured on one sidecar without Redis (the baseline), split over two sidecars on
 * one Redis, and all on one sidecar with Redis (the bus alone): publish -> delivery p50/p99,
 * completeness, sustained publishes/s, sidecar and Redis CPU, with ratios to the baseline. The
 * bench:sse subscriber processes and publishers are reused. Not part of `npm test`. Everything
 * listens on 127.0.0.1; every process started is stopped at the end, on errors and on Ctrl-C.
 */
import { writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { ClientGroup } from './cluster/clients.ts';
import { stopRedises } from './cluster/deployment.ts';
import { measureSetup, type SetupResult } from './cluster/measure.ts';
import { renderReport } from './cluster/report.ts';
import { readClusterSettings, usage } from './cluster/settings.ts';
import { runBench } from './lib/run.ts';
import { stopAll } from './sse/procs.ts';
import { removeTempDirs } from './sse/servers.ts';

function log(message: string): void {
  process.stderr.write(`[bench:cluster ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function revision(): string {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

let clients: ClientGroup | null = null;

async function main(): Promise<void> {
  const settings = readClusterSettings(process.argv.slice(2));
  if (settings === null) {
    console.log(usage);
    return;
  }
  const started = Date.now();
  clients = await ClientGroup.start(settings.clients);
  const results: SetupResult[] = [];
  for (const setup of settings.setups) {
    log(`${setup}: ${settings.subscribers} subscribers`);
    results.push(await measureSetup(setup, clients, settings, log));
  }
  await clients.exit();
  clients = null;
  if (settings.json !== '') writeFileSync(settings.json, JSON.stringify(results, null, 2));
  log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
  console.log(
    `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${revision()}, Node ${process.version}\n\n` +
      renderReport(results, settings),
  );
}

runBench(main, async () => {
  await clients?.exit();
  await stopAll();
  await stopRedises();
  removeTempDirs();
});
