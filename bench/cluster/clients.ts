/**
 * Several bench:sse subscriber processes (bench/sse/client-proc.ts) driven as one: each holds an
 * equal share of the streams (a process may hold 20,000 files here, and one process reading
 * 10,000 streams is itself a bottleneck). Their statistics are summed; latency percentiles cannot
 * be merged exactly from the per-process summaries, so the combined figure is the highest of the
 * processes' (an upper bound of the true percentile, exact with one process).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SubscriberClient } from '../sse/client.ts';
import type { ClientStats } from '../sse/client-protocol.ts';
import type { LatencySummary } from '../sse/histogram.ts';
import { HOST } from '../sse/servers.ts';

/** Where one client process opens how many streams. */
export interface Share {
  client: number;
  node: number;
  count: number;
}

/**
 * Splits `total` streams evenly over `nodes` sidecars and their streams over the client
 * processes: with at least as many processes as nodes, process i serves node i % nodes only (so
 * its latency is that node's); with fewer, every process opens its part on every node.
 */
export function planShares(total: number, clients: number, nodes: number): Share[] {
  const split = (n: number, parts: number): number[] =>
    Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0));
  const perNode = split(total, nodes);
  const shares: Share[] = [];
  if (clients >= nodes) {
    for (let node = 0; node < nodes; node++) {
      const mine = Array.from({ length: clients }, (_, c) => c).filter((c) => c % nodes === node);
      split(perNode[node] ?? 0, mine.length).forEach((count, i) => {
        shares.push({ client: mine[i] ?? 0, node, count });
      });
    }
  } else {
    for (let node = 0; node < nodes; node++) {
      split(perNode[node] ?? 0, clients).forEach((count, client) => {
        shares.push({ client, node, count });
      });
    }
  }
  return shares.filter((s) => s.count > 0);
}

/** The group's statistics: sums, and the latency of each process and their upper bound. */
export interface GroupStats {
  open: number;
  events: number;
  /** Open streams that received every event of the run. */
  streamsComplete: number;
  closedByPeer: number;
  latency: LatencySummary;
  perClient: LatencySummary[];
}

/** Percentiles: the highest of the parts (upper bound); count, max and mean exact. */
export function combineLatency(parts: readonly LatencySummary[]): LatencySummary {
  const used = parts.filter((p) => p.count > 0);
  const count = used.reduce((n, p) => n + p.count, 0);
  const top = (f: (p: LatencySummary) => number): number => Math.max(0, ...used.map(f));
  return {
    count,
    p50: top((p) => p.p50),
    p90: top((p) => p.p90),
    p99: top((p) => p.p99),
    p999: top((p) => p.p999),
    max: top((p) => p.max),
    mean: count === 0 ? 0 : used.reduce((s, p) => s + p.mean * p.count, 0) / count,
  };
}

export class ClientGroup {
  readonly #clients: SubscriberClient[];

  private constructor(clients: SubscriberClient[]) {
    this.#clients = clients;
  }

  static async start(count: number): Promise<ClientGroup> {
    const clients: SubscriberClient[] = [];
    try {
      for (let i = 0; i < count; i++) clients.push(await SubscriberClient.start());
    } catch (err) {
      await Promise.allSettled(clients.map((c) => c.exit()));
      throw err;
    }
    return new ClientGroup(clients);
  }

  get size(): number {
    return this.#clients.length;
  }

  pids(): number[] {
    return this.#clients.map((c) => c.pid);
  }

  /** Opens the shares (processes in parallel); the number of 200 heads and the slowest open. */
  async open(
    shares: readonly Share[],
    ports: readonly number[],
    path: string,
  ): Promise<{ ok: number; failed: number; ms: number }> {
    const byClient = this.#clients.map((client, i) => ({
      client,
      shares: shares.filter((s) => s.client === i),
    }));
    const results = await Promise.all(
      byClient.map(async ({ client, shares: mine }) => {
        let ok = 0;
        let failed = 0;
        let ms = 0;
        for (const s of mine) {
          const r = await client.open(HOST, ports[s.node] ?? 0, path, s.count);
          ok += r.ok;
          failed += r.status + r.error + r.pending;
          ms += r.ms;
        }
        return { ok, failed, ms };
      }),
    );
    return {
      ok: results.reduce((n, r) => n + r.ok, 0),
      failed: results.reduce((n, r) => n + r.failed, 0),
      ms: Math.max(0, ...results.map((r) => r.ms)),
    };
  }

  async reset(messages: number): Promise<void> {
    await Promise.all(this.#clients.map((c) => c.reset(messages)));
  }

  async stats(): Promise<GroupStats> {
    const all: ClientStats[] = await Promise.all(this.#clients.map((c) => c.stats()));
    const perClient = all.map((s) => s.latency);
    return {
      open: all.reduce((n, s) => n + s.open, 0),
      events: all.reduce((n, s) => n + s.events, 0),
      streamsComplete: all.reduce((n, s) => n + s.streamsComplete, 0),
      closedByPeer: all.reduce((n, s) => n + s.closedByPeer, 0),
      latency: combineLatency(perClient),
      perClient,
    };
  }

  /** Waits until `expected` events arrived or nothing arrived for `quietMs`. */
  async awaitDelivery(expected: number, quietMs: number): Promise<GroupStats> {
    let last = await this.stats();
    let lastChange = Date.now();
    while (last.events < expected && Date.now() - lastChange < quietMs) {
      await sleep(100);
      const next = await this.stats();
      if (next.events !== last.events) lastChange = Date.now();
      last = next;
    }
    return last;
  }

  /** Destroys every stream (the processes stay for the next setup). */
  async closeAll(): Promise<void> {
    await Promise.all(this.#clients.map((c) => c.closeAll()));
  }

  async exit(): Promise<void> {
    await Promise.allSettled(this.#clients.map((c) => c.exit()));
  }
}
