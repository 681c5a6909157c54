/**
 * One setup of bench:cluster, measured the same way for all: fresh servers, warm-up, N streams on
 * one channel split over the sidecars, then (1) a latency run (few events, spaced so one fan-out
 * ends before the next publish): publish -> delivery p50/p99 and completeness; (2) open-loop
 * publish-rate steps until one does not keep up: the sustained publishes/s. Around both, the CPU
 * of the sidecars, the client processes and Redis (INFO cpu) is read, so cost per publish and
 * Redis's share can be reported. Everything started here is stopped before it returns or throws.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { keptUp, pacedPublish, stepCounts, type StepCounts } from '../lib/pace.ts';
import type { LatencySummary } from '../sse/histogram.ts';
import { OthersCpu, treeCpuSeconds, waitForQuiet } from '../sse/procs.ts';
import type { Publisher } from '../sse/publisher.ts';
import { planShares, type ClientGroup, type GroupStats } from './clients.ts';
import { redisCpuSeconds, setupPublisher, startDeployment, type Deployment } from './deployment.ts';
import type { ClusterSettings, SetupName } from './settings.ts';

const CHANNEL = 'bench';
const SUBSCRIBE_PATH = (channel: string): string => `/askr/events?channel=${channel}`;

/** CPU seconds used during a window. */
export interface CpuUse {
  sidecars: number;
  clients: number;
  /** INFO cpu delta; 0 without Redis. */
  redis: number;
  wallS: number;
}

/** How long publishes waited for their answer (HTTP: the 202; datagram: the send), ms. */
export interface AckTimes {
  p50: number;
  p99: number;
  max: number;
  /** Answers that took over a second. */
  overOneSecond: number;
}

/** Collects answer times of publishes; summary() for the window since construction. */
class AckClock {
  readonly #times: number[] = [];

  /** Publishes `seq` through `pub`, timing it from the call to the answer. */
  publish(pub: Publisher, seq: number): Promise<void> {
    const t = performance.now();
    return pub.publish(seq).then(() => {
      this.#times.push(performance.now() - t);
    });
  }

  summary(): AckTimes {
    const v = [...this.#times].sort((a, b) => a - b);
    const at = (q: number): number => v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)] ?? 0;
    return {
      p50: at(0.5),
      p99: at(0.99),
      max: v.at(-1) ?? 0,
      overOneSecond: v.filter((x) => x > 1000).length,
    };
  }
}

export interface LatencyRun {
  messages: number;
  accepted: number;
  failed: number;
  expected: number;
  received: number;
  streamsComplete: number;
  latency: LatencySummary;
  /** Per client process (with as many processes as sidecars or more: per sidecar). */
  perClient: LatencySummary[];
  acks: AckTimes;
  cpu: CpuUse;
}

export interface RateStep extends StepCounts {
  closedByPeer: number;
  latency: LatencySummary;
  acks: AckTimes;
  cpu: CpuUse;
  sustained: boolean;
}

export interface SetupResult {
  setup: SetupName;
  sidecars: number;
  subscribers: number;
  opened: number;
  openMs: number;
  /** Cores other processes of the machine used while measuring (noise; want ~0). */
  othersCores: number;
  /** CPU with the streams open and nothing published (timers, GC, Redis's serverCron). */
  idle: CpuUse;
  latency: LatencyRun;
  steps: RateStep[];
  /** Highest rate whose step passed (0 when none did). */
  sustained: number;
}

class CpuMeter {
  readonly #deployment: Deployment;
  readonly #clients: ClientGroup;
  #start = { sidecars: 0, clients: 0, redis: 0, at: 0 };

  constructor(deployment: Deployment, clients: ClientGroup) {
    this.#deployment = deployment;
    this.#clients = clients;
  }

  async #read(): Promise<{ sidecars: number; clients: number; redis: number; at: number }> {
    const sum = (pids: readonly number[]): number =>
      pids.reduce((s, pid) => s + treeCpuSeconds(pid), 0);
    const { redis } = this.#deployment;
    return {
      sidecars: sum(this.#deployment.nodes.map((n) => n.sidecar.pid)),
      clients: sum(this.#clients.pids()),
      redis: redis === null ? 0 : await redisCpuSeconds(redis),
      at: performance.now(),
    };
  }

  async start(): Promise<void> {
    this.#start = await this.#read();
  }

  async stop(): Promise<CpuUse> {
    const end = await this.#read();
    return {
      sidecars: end.sidecars - this.#start.sidecars,
      clients: end.clients - this.#start.clients,
      redis: end.redis - this.#start.redis,
      wallS: (end.at - this.#start.at) / 1000,
    };
  }
}

/** Opens a few streams and publishes a few events, so JIT and first allocations are not measured. */
async function warmUp(d: Deployment, clients: ClientGroup, s: ClusterSettings): Promise<void> {
  const ports = d.nodes.map((n) => n.sidecar.port);
  await clients.open(
    planShares(50 * d.nodes.length, 1, d.nodes.length),
    ports,
    SUBSCRIBE_PATH('warmup'),
  );
  const pub = setupPublisher(d.nodes, 'warmup', s.publisher, s.publishConnections);
  // 20 at a time: a publish answered late (see the acks columns) must not stall the warm-up.
  for (let i = 0; i < 200; i += 20) {
    await Promise.all(Array.from({ length: 20 }, (_, k) => pub.publish(i + k)));
  }
  pub.close();
  await clients.closeAll();
  await sleep(1000);
}

/** Publishes `messages` events at `rate`/s and measures their delivery to every open stream. */
async function latencyRun(
  clients: ClientGroup,
  pub: Publisher,
  meter: CpuMeter,
  opened: number,
  messages: number,
  rate: number,
): Promise<LatencyRun> {
  await clients.reset(messages);
  await meter.start();
  const start = performance.now();
  const clock = new AckClock();
  const acks: Promise<void>[] = [];
  for (let seq = 0; seq < messages; seq++) {
    const wait = start + (seq * 1000) / rate - performance.now();
    if (wait > 0) await sleep(wait);
    acks.push(clock.publish(pub, seq));
  }
  await Promise.all(acks);
  const expected = opened * messages;
  const stats = await clients.awaitDelivery(expected, 5000);
  const cpu = await meter.stop();
  return {
    messages,
    accepted: pub.accepted,
    failed: pub.failed,
    expected,
    received: stats.events,
    streamsComplete: stats.streamsComplete,
    latency: stats.latency,
    perClient: stats.perClient,
    acks: clock.summary(),
    cpu,
  };
}

/**
 * Publishes at `rate`/s for `stepMs` (open loop: due events are sent whether or not the earlier
 * ones were answered); more than a second of events waiting here ends the step as failed.
 */
async function rateStep(
  clients: ClientGroup,
  pub: Publisher,
  meter: CpuMeter,
  opened: number,
  rate: number,
  s: ClusterSettings,
): Promise<RateStep> {
  const total = Math.max(1, Math.round((rate * s.rateStepMs) / 1000));
  await clients.reset(total);
  const closedBefore = (await clients.stats()).closedByPeer;
  await meter.start();
  const clock = new AckClock();
  const paced = await pacedPublish(pub, (seq) => clock.publish(pub, seq), rate, total);
  const stats: GroupStats = await clients.awaitDelivery(paced.accepted * opened, 3000);
  const cpu = await meter.stop();
  const expected = total * opened;
  return {
    ...stepCounts(rate, paced, expected, stats.events),
    closedByPeer: stats.closedByPeer - closedBefore,
    latency: stats.latency,
    acks: clock.summary(),
    cpu,
    sustained: keptUp(rate, paced, expected, stats, s.maxP99Ms),
  };
}

/** Runs one setup from start to stop; `log` gets progress lines. */
export async function measureSetup(
  setup: SetupName,
  clients: ClientGroup,
  s: ClusterSettings,
  log: (line: string) => void,
): Promise<SetupResult> {
  // The bench process's tree holds every process started (clients, sidecars, FPM, Redis).
  const ours = (): number[] => [process.pid];
  const before = await waitForQuiet(ours, s.quietCores, s.quietWaitMs);
  if (before >= s.quietCores) log(`  others use ${before.toFixed(2)} cores: measuring anyway`);
  const t0 = performance.now();
  const d = await startDeployment(setup, { fpmWorkers: s.fpmWorkers });
  try {
    log(`  servers up in ${Math.round(performance.now() - t0)} ms`);
    const meter = new CpuMeter(d, clients);
    await warmUp(d, clients, s);
    const shares = planShares(s.subscribers, clients.size, d.nodes.length);
    const ports = d.nodes.map((n) => n.sidecar.port);
    const open = await clients.open(shares, ports, SUBSCRIBE_PATH(CHANNEL));
    d.checkAlive();
    log(`  ${open.ok} streams open in ${open.ms} ms (${open.failed} failed)`);
    // Settle, and meanwhile the idle CPU (subtracted from the cost per publish).
    await meter.start();
    await sleep(2000);
    const idle = await meter.stop();
    const others = new OthersCpu(ours);
    const pub = setupPublisher(d.nodes, CHANNEL, s.publisher, s.publishConnections);
    try {
      const latency = await latencyRun(clients, pub, meter, open.ok, s.messages, s.messageRate);
      d.checkAlive();
      log(
        `  latency: p50 ${latency.latency.p50.toFixed(1)} ms, p99 ${latency.latency.p99.toFixed(1)} ms, ` +
          `${latency.received}/${latency.expected} delivered`,
      );
      const steps: RateStep[] = [];
      const step = async (rate: number): Promise<RateStep> => {
        const r = await rateStep(clients, pub, meter, open.ok, rate, s);
        d.checkAlive();
        steps.push(r);
        log(
          `  ${rate}/s: ${r.achieved.toFixed(1)}/s accepted, ${r.received}/${r.expected} ` +
            `delivered, p99 ${r.latency.p99.toFixed(1)} ms: ${r.sustained ? 'kept up' : 'did not keep up'}`,
        );
        await sleep(500);
        return r;
      };
      let lastPass = 0;
      for (const rate of s.rates) {
        if (!(await step(rate)).sustained) {
          // One step between the last pass and this failure, when they are far apart (the
          // default list doubles): the sustained rate to within a quarter in fewer steps.
          const mid = Math.round((lastPass + rate) / 2);
          if (lastPass > 0 && rate / lastPass >= 1.5 && mid > lastPass) await step(mid);
          break;
        }
        lastPass = rate;
      }
      const passed = steps.filter((x) => x.sustained).map((x) => x.rate);
      return {
        setup,
        sidecars: d.nodes.length,
        subscribers: s.subscribers,
        opened: open.ok,
        openMs: open.ms,
        othersCores: others.cores(),
        idle,
        latency,
        steps,
        sustained: passed.length === 0 ? 0 : Math.max(...passed),
      };
    } finally {
      pub.close();
    }
  } finally {
    await clients.closeAll();
    await d.stop();
  }
}
