/**
 * One measurement of bench:mercure, the same for every target: a fresh server, a warm-up, N
 * streams on one topic spread over the client processes, then (1) RSS per held stream, (2) a
 * latency run (few events, spaced: publish -> delivery p50/p99 and completeness), (3) closed-loop
 * publish phases, sequential then `concurrency` in flight: publishes answered per second,
 * deliveries, the time until the last one arrived, and the CPU of the server, the bench's own
 * processes (clients included) and the rest of the machine. Stops what it started before returning.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpuSnapshot, cpuUsage, type CpuSnapshot } from '../lib/cpu.ts';
import { pacedPublish } from '../lib/pace.ts';
import {
  combineLatency,
  planShares,
  type ClientGroup,
  type GroupStats,
  type Share,
} from '../cluster/clients.ts';
import type { LatencySummary } from '../sse/histogram.ts';
import { OthersCpu, treeMemory, waitForQuiet } from '../sse/procs.ts';
import { HOST } from '../sse/servers.ts';
import { Publisher } from './publisher.ts';
import type { MercureSettings, TargetName } from './settings.ts';
import { checkAlive, startTarget, type Running } from './targets.ts';

const TOPIC = 'bench';
/** Sequence numbers a closed-loop phase may use (the clients' per-event counters are sized so). */
const MAX_PHASE_EVENTS = 200_000;

/** CPU over a window, in % of one core; `idle`: share of the whole machine left idle, in %. */
export interface CpuShares {
  server: number;
  /** The bench process and its subscriber client processes (one process group). */
  bench: number;
  other: number;
  idle: number;
  /** Length of the window, s. */
  wallS: number;
}

export interface LatencyRun {
  accepted: number;
  failed: number;
  expected: number;
  received: number;
  streamsComplete: number;
  latency: LatencySummary;
  /** `mixed` only: the streams of the askr door and of the Mercure door (see byDoor). */
  doors?: Doors;
}

/** Latency of the askr and of the Mercure streams of a `mixed` measurement. */
export interface Doors {
  askr: LatencySummary;
  mercure: LatencySummary;
}

/**
 * Which half of a `mixed` run client process `client` holds (0: askr, 1: Mercure). It swaps
 * every round, so neither door keeps the same process (and its share of the CPU).
 */
function halfOf(client: number, round: number): 0 | 1 {
  return (client + round) % 2 === 0 ? 0 : 1;
}

function byDoor(name: TargetName, round: number, stats: GroupStats): Doors | undefined {
  if (name !== 'mixed') return undefined;
  const pick = (half: 0 | 1): LatencySummary =>
    combineLatency(stats.perClient.filter((_, i) => halfOf(i, round) === half));
  return { askr: pick(0), mercure: pick(1) };
}

/** A closed-loop publish phase. */
export interface Phase {
  concurrency: number;
  accepted: number;
  failed: number;
  /** Publishes answered per second (first request to last answer). */
  answeredPerS: number;
  /** Publishes fully delivered per second: until the last delivery arrived (N streams each). */
  deliveredPerS: number;
  expected: number;
  received: number;
  /** Streams the server closed during the phase (slow-subscriber policy). */
  dropped: number;
  latency: LatencySummary;
  doors?: Doors;
  cpu: CpuShares;
  /** Server CPU per answered publish, ms. */
  serverMsPerPublish: number;
}

export interface Measurement {
  target: TargetName;
  subscribers: number;
  round: number;
  opened: number;
  openFailed: number;
  openMs: number;
  rssBeforeBytes: number;
  rssPerStreamBytes: number;
  latency: LatencyRun;
  phases: Phase[];
  /** Cores used by processes the bench did not start, over the measurement (want ~0). */
  othersCores: number;
}

/** `{ key: value }`, or `{}` when value is undefined (exactOptionalPropertyTypes). */
function optional<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}

/** Process group of this process (the subscriber clients are forked into it). */
function ownPgid(): number {
  const stat = readFileSync('/proc/self/stat', 'latin1');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

class CpuWindow {
  readonly #groups: ReadonlyMap<string, number>;
  readonly #start: CpuSnapshot;

  /** Starts the window now. The server runs in its own process group (spawned detached). */
  constructor(serverPgid: number) {
    this.#groups = new Map([
      ['server', serverPgid],
      ['bench', ownPgid()],
    ]);
    this.#start = cpuSnapshot(this.#groups);
  }

  read(): CpuShares {
    const end = cpuSnapshot(this.#groups);
    const u = cpuUsage(this.#start, end);
    const machine = u.get('machine') ?? 0;
    return {
      server: u.get('server') ?? 0,
      bench: u.get('bench') ?? 0,
      other: u.get('other') ?? 0,
      idle: Math.max(0, 100 - machine / availableParallelism()),
      wallS: (end.atMs - this.#start.atMs) / 1000,
    };
  }
}

/** Streams opened at a time per door in `mixed` (see openStreams). */
const MIXED_BATCH = 50;

/**
 * Opens `shares` on `topic`, each client process with its own path (they differ in `mixed`
 * only). The processes open in parallel, except in `mixed`: there the shares open in turns of
 * MIXED_BATCH streams, in alternating order (A B B A A B ...), so the hub's delivery order (the
 * order streams joined the topic) mixes the doors evenly instead of putting the slower-to-admit
 * Mercure streams (a token to verify) last.
 */
async function openStreams(
  r: Running,
  clients: ClientGroup,
  shares: readonly Share[],
  topic: string,
  round: number,
): Promise<{ ok: number; failed: number; ms: number }> {
  const started = performance.now();
  const open = (share: Share, count: number): Promise<{ ok: number; failed: number }> =>
    clients.open(
      [{ ...share, node: 0, count }],
      [r.port],
      r.subscribePath(topic, halfOf(share.client, round)),
    );
  let results: { ok: number; failed: number }[];
  if (r.name === 'mixed') {
    results = [];
    const left = shares.map((share) => share.count);
    for (let turn = 0; left.some((n) => n > 0); turn++) {
      const order = [...shares.entries()];
      if (turn % 2 === 1) order.reverse();
      for (const [i, share] of order) {
        const count = Math.min(MIXED_BATCH, left[i] ?? 0);
        if (count === 0) continue;
        left[i] = (left[i] ?? 0) - count;
        results.push(await open(share, count));
      }
    }
  } else {
    results = await Promise.all(shares.map((share) => open(share, share.count)));
  }
  return {
    ok: results.reduce((n, x) => n + x.ok, 0),
    failed: results.reduce((n, x) => n + x.failed, 0),
    ms: Math.round(performance.now() - started),
  };
}

/** Opens a few streams and publishes a few events, so JIT and first allocations are not measured. */
async function warmUp(r: Running, clients: ClientGroup): Promise<void> {
  await openStreams(r, clients, planShares(50 * clients.size, clients.size, 1), 'warmup', 0);
  const pub = new Publisher(HOST, r.port, 4, r.requestOf('warmup'));
  await pub.closedLoop(300, 0);
  pub.close();
  await clients.closeAll();
  await sleep(300);
}

/**
 * Waits until `expected` deliveries arrived or none arrived for `quietMs`; `doneAt` is when the
 * last progress was seen (polled every 50 ms).
 */
async function awaitDeliveries(
  clients: ClientGroup,
  expected: number,
  quietMs: number,
): Promise<{ stats: GroupStats; doneAt: number }> {
  let stats = await clients.stats();
  let doneAt = performance.now();
  while (stats.events < expected && performance.now() - doneAt < quietMs) {
    await sleep(50);
    const next = await clients.stats();
    if (next.events !== stats.events) doneAt = performance.now();
    stats = next;
  }
  return { stats, doneAt };
}

/** The per-door split of a `mixed` measurement's stats (undefined for other targets). */
type DoorsOf = (stats: GroupStats) => Doors | undefined;

async function latencyRun(
  r: Running,
  clients: ClientGroup,
  opened: number,
  doorsOf: DoorsOf,
  s: MercureSettings,
): Promise<LatencyRun> {
  await clients.reset(s.messages);
  const pub = new Publisher(HOST, r.port, 1, r.requestOf(TOPIC));
  try {
    const paced = await pacedPublish(pub, (seq) => pub.publish(seq), s.messageRate, s.messages);
    const expected = paced.accepted * opened;
    const { stats } = await awaitDeliveries(clients, expected, 3000);
    return {
      accepted: paced.accepted,
      failed: paced.failed,
      expected,
      received: stats.events,
      streamsComplete: stats.streamsComplete,
      latency: stats.latency,
      ...optional('doors', doorsOf(stats)),
    };
  } finally {
    pub.close();
  }
}

async function closedLoopPhase(
  r: Running,
  clients: ClientGroup,
  opened: number,
  concurrency: number,
  doorsOf: DoorsOf,
  s: MercureSettings,
): Promise<Phase> {
  await clients.reset(MAX_PHASE_EVENTS);
  const closedBefore = (await clients.stats()).closedByPeer;
  const pub = new Publisher(HOST, r.port, concurrency, r.requestOf(TOPIC));
  const cpu = new CpuWindow(r.pid);
  try {
    const loop = await pub.closedLoop(s.phaseMs, 0);
    const expected = loop.accepted * opened;
    const { stats, doneAt } = await awaitDeliveries(clients, expected, 2000);
    const shares = cpu.read();
    const seconds = (doneAt - loop.startedAt) / 1000;
    const serverCpuS = (shares.server / 100) * shares.wallS;
    return {
      concurrency,
      accepted: loop.accepted,
      failed: loop.failed,
      answeredPerS: (loop.accepted * 1000) / Math.max(1, loop.elapsedMs),
      deliveredPerS: opened === 0 ? 0 : stats.events / opened / Math.max(0.001, seconds),
      expected,
      received: stats.events,
      dropped: stats.closedByPeer - closedBefore,
      latency: stats.latency,
      ...optional('doors', doorsOf(stats)),
      cpu: shares,
      serverMsPerPublish: loop.accepted === 0 ? NaN : (serverCpuS * 1000) / loop.accepted,
    };
  } finally {
    pub.close();
  }
}

/** Runs one target at one size from start to stop; `log` gets progress lines. */
export async function measure(
  name: TargetName,
  subscribers: number,
  round: number,
  clients: ClientGroup,
  s: MercureSettings,
  log: (line: string) => void,
): Promise<Measurement> {
  const ours = (): number[] => [process.pid];
  const before = await waitForQuiet(ours, s.quietCores, s.quietWaitMs);
  if (before >= s.quietCores) log(`  others use ${before.toFixed(2)} cores: measuring anyway`);
  const t0 = performance.now();
  const r = await startTarget(name);
  try {
    await warmUp(r, clients);
    checkAlive(r);
    const others = new OthersCpu(ours);
    const memBefore = treeMemory(r.pid);
    const shares = planShares(subscribers, clients.size, 1);
    const open = await openStreams(r, clients, shares, TOPIC, round);
    await sleep(s.settleMs);
    const memAfter = treeMemory(r.pid);
    checkAlive(r);
    const doorsOf: DoorsOf = (stats) => byDoor(name, round, stats);
    const latency = await latencyRun(r, clients, open.ok, doorsOf, s);
    checkAlive(r);
    const phases: Phase[] = [];
    for (const concurrency of [1, s.concurrency]) {
      phases.push(await closedLoopPhase(r, clients, open.ok, concurrency, doorsOf, s));
      checkAlive(r);
      await sleep(300);
    }
    const [seq, conc] = phases;
    log(
      `  ${name}: ${open.ok} open (${open.failed} failed) in ${open.ms} ms, ` +
        `${((memAfter.rssBytes - memBefore.rssBytes) / Math.max(1, open.ok) / 1024).toFixed(1)} KiB/stream, ` +
        `p50 ${latency.latency.p50.toFixed(1)} / p99 ${latency.latency.p99.toFixed(1)} ms, ` +
        `${latency.received}/${latency.expected} delivered; ` +
        `publishes/s x1 ${seq?.answeredPerS.toFixed(0)} (${seq?.received}/${seq?.expected}), ` +
        `x${s.concurrency} ${conc?.answeredPerS.toFixed(0)} (${conc?.received}/${conc?.expected}); ` +
        `${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    return {
      target: name,
      subscribers,
      round,
      opened: open.ok,
      openFailed: open.failed,
      openMs: open.ms,
      rssBeforeBytes: memBefore.rssBytes,
      rssPerStreamBytes: (memAfter.rssBytes - memBefore.rssBytes) / Math.max(1, open.ok),
      latency,
      phases,
      othersCores: others.cores(),
    };
  } finally {
    await clients.closeAll();
    await r.server.stop();
  }
}
