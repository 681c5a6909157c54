/**
 * Publishes per second sustained with S subscribers on one channel: open-loop rate steps on a
 * fresh server; a step passes when every event reached every subscriber, the publisher kept 95 %
 * of the rate and p99 latency stayed under a bound. Stops at the first step that fails. The
 * server runs in the given mode (as shipped or lean).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { keptUp, pacedPublish, stepCounts, type StepCounts } from '../lib/pace.ts';
import type { SubscriberClient } from './client.ts';
import type { Quiet, QuietReading } from '../lib/cpu.ts';
import type { ServerMode } from '../lib/modes.ts';
import { awaitDelivery, startTarget, warmUp, type TargetName } from './fanout.ts';
import type { LatencySummary } from './histogram.ts';
import { awaitQuiet, OthersCpu, treeCpuSeconds } from './procs.ts';
import type { Publisher } from './publisher.ts';
import { HOST } from './servers.ts';

const CHANNEL = 'bench';

export interface RateStep extends StepCounts {
  latency: LatencySummary;
  serverCpu: number;
  clientCpu: number;
  sustained: boolean;
}

export interface RateResult {
  target: TargetName;
  mode: ServerMode;
  /** 1-based round (BENCH_REPEAT); the order of (mode, server, publisher) rotates each round. */
  round: number;
  publisher: string;
  subscribers: number;
  /** Cores other processes of the machine used during the rate steps (noise; want ~0). */
  othersCores: number;
  /** The machine just before the server started (idle share, others' cores, wait). */
  quiet: QuietReading;
  opened: number;
  steps: RateStep[];
  /** Highest rate whose step passed (0 when none did). */
  sustained: number;
}

/** Publishes at `rate`/s for `seconds`; a local backlog over one second of events ends the step. */
async function rateStep(
  client: SubscriberClient,
  pub: Publisher,
  subscribers: number,
  rate: number,
  seconds: number,
  maxP99Ms: number,
  pids: { server: number; client: number },
): Promise<RateStep> {
  const total = Math.round(rate * seconds);
  await client.reset(total);
  const cpu0 = { server: treeCpuSeconds(pids.server), client: treeCpuSeconds(pids.client) };
  const paced = await pacedPublish(pub, (seq) => pub.publish(seq), rate, total);
  const stats = await awaitDelivery(client, paced.accepted * subscribers, 3000);
  const serverCpu = treeCpuSeconds(pids.server) - cpu0.server;
  const clientCpu = treeCpuSeconds(pids.client) - cpu0.client;
  const expected = total * subscribers;
  return {
    ...stepCounts(rate, paced, expected, stats.events),
    latency: stats.latency,
    serverCpu,
    clientCpu,
    sustained: keptUp(rate, paced, expected, stats, maxP99Ms),
  };
}

/** Steps the publish rate up on a fresh server with `subscribers` streams, until a step fails. */
export async function measureRate(
  name: TargetName,
  client: SubscriberClient,
  opts: {
    subscribers: number;
    rates: readonly number[];
    seconds: number;
    /** A step whose p99 delivery latency is above this did not keep up. */
    maxP99Ms: number;
    publisher: 'http' | 'datagram';
    nginxWorkers: number;
    mode: ServerMode;
    round: number;
    nodeArgs?: string[];
    quiet: Quiet;
  },
): Promise<RateResult> {
  const quiet = await awaitQuiet(() => [process.pid, client.pid], opts.quiet);
  const target = await startTarget(name, opts);
  const others = new OthersCpu(() => [process.pid, client.pid, target.http.pid]);
  try {
    await warmUp(target, client);
    const open = await client.open(
      HOST,
      target.http.port,
      target.subscribePath(CHANNEL),
      opts.subscribers,
    );
    const pub = target.publisher(CHANNEL, opts.publisher);
    const steps: RateStep[] = [];
    others.reset();
    try {
      for (const rate of opts.rates) {
        const step = await rateStep(client, pub, open.ok, rate, opts.seconds, opts.maxP99Ms, {
          server: target.http.pid,
          client: client.pid,
        });
        steps.push(step);
        if (!step.sustained) break;
        await sleep(500);
      }
    } finally {
      pub.close();
    }
    const passed = steps.filter((s) => s.sustained).map((s) => s.rate);
    return {
      target: name,
      mode: opts.mode,
      round: opts.round,
      publisher: opts.publisher,
      subscribers: opts.subscribers,
      othersCores: others.cores(),
      quiet,
      opened: open.ok,
      steps,
      sustained: passed.length === 0 ? 0 : Math.max(...passed),
    };
  } finally {
    await client.closeAll();
    await target.http.server.stop();
  }
}
