/**
 * Fan-out measurements on one channel, run the same way against askr-sidecar and nginx+nchan:
 * memory per held connection (RSS/PSS of the server's process tree before and after N streams),
 * publish -> delivery latency and completeness. Also the targets (servers + publishers) that
 * rate.ts shares. Each measurement starts a fresh server in the given mode (as shipped or lean)
 * and stops it afterwards.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SubscriberClient } from './client.ts';
import type { ClientStats } from './client-protocol.ts';
import type { LatencySummary } from './histogram.ts';
import type { Quiet, QuietReading } from '../lib/cpu.ts';
import type { ServerMode } from '../lib/modes.ts';
import { awaitQuiet, OthersCpu, treeMemory, type Memory } from './procs.ts';
import { datagramPublisher, httpPublisher, type Publisher } from './publisher.ts';
import {
  HOST,
  startNchan,
  startNodeBaseline,
  startSidecar,
  type HttpTarget,
  type ProbeResult,
} from './servers.ts';

export type TargetName = 'askr-sidecar' | 'nchan' | 'node-http';
export const TARGET_NAMES: readonly TargetName[] = ['askr-sidecar', 'nchan', 'node-http'];
const CHANNEL = 'bench';

export interface Target {
  readonly name: TargetName;
  readonly http: HttpTarget;
  subscribePath(channel: string): string;
  /** HTTP publisher (both servers), or the datagram socket (sidecar only). */
  publisher(channel: string, kind: 'http' | 'datagram'): Publisher;
  /** Sidecar with BENCH_MEMORY_PROBE: memory after a full GC. */
  probe?: () => Promise<ProbeResult>;
}

/**
 * Starts `name` in `mode`. node-http logs nothing in either mode (it is the floor, not a server
 * one deploys).
 */
export async function startTarget(
  name: TargetName,
  opts: { nginxWorkers: number; mode: ServerMode; nodeArgs?: string[]; probe?: boolean },
): Promise<Target> {
  if (name === 'node-http') {
    const http = await startNodeBaseline(opts.nodeArgs);
    return {
      name,
      http,
      subscribePath: (ch) => `/sub?channel=${ch}`,
      publisher: (ch) =>
        httpPublisher({
          name: 'http',
          host: HOST,
          port: http.port,
          path: `/pub?channel=${ch}`,
          connections: 4,
        }),
    };
  }
  if (name === 'nchan') {
    const http = await startNchan(opts.nginxWorkers, opts.mode);
    return {
      name,
      http,
      subscribePath: (ch) => `/sub?channel=${ch}`,
      publisher: (ch) =>
        httpPublisher({
          name: 'http',
          host: HOST,
          port: http.port,
          path: `/pub?channel=${ch}`,
          connections: 4,
        }),
    };
  }
  const http = await startSidecar({
    ...(opts.nodeArgs === undefined ? {} : { nodeArgs: opts.nodeArgs }),
    probe: opts.probe === true,
    mode: opts.mode,
  });
  return {
    name,
    http,
    ...(http.probe === undefined ? {} : { probe: http.probe }),
    subscribePath: (ch) => `/askr/events?channel=${ch}`,
    publisher: (ch, kind) =>
      kind === 'datagram'
        ? datagramPublisher(http.socketPath, ch)
        : httpPublisher({
            name: 'http',
            host: HOST,
            port: http.port,
            path: `/askr/publish?channel=${ch}`,
            headers: { authorization: `Bearer ${http.token}` },
            connections: 4,
          }),
  };
}

/** Opens a few streams and publishes a few events, so JIT and first allocations are not measured. */
export async function warmUp(target: Target, client: SubscriberClient): Promise<void> {
  await client.open(HOST, target.http.port, target.subscribePath('warmup'), 50);
  const pub = target.publisher('warmup', 'http');
  for (let i = 0; i < 200; i++) await pub.publish(i);
  pub.close();
  await client.closeAll();
  await sleep(1000);
}

/** Waits until `expected` events arrived or nothing arrived for `quietMs`. */
export async function awaitDelivery(
  client: SubscriberClient,
  expected: number,
  quietMs: number,
): Promise<ClientStats> {
  let last = await client.stats();
  let lastChange = Date.now();
  while (last.events < expected && Date.now() - lastChange < quietMs) {
    await sleep(100);
    const next = await client.stats();
    if (next.events !== last.events) lastChange = Date.now();
    last = next;
  }
  return last;
}

export interface LatencyRun {
  publisher: string;
  messages: number;
  accepted: number;
  expected: number;
  received: number;
  /** Fewest subscribers any one message reached. */
  minReach: number;
  latency: LatencySummary;
}

/** Publishes `messages` events at `rate`/s and measures their delivery to every open stream. */
async function latencyRun(
  client: SubscriberClient,
  pub: Publisher,
  subscribers: number,
  messages: number,
  rate: number,
): Promise<LatencyRun> {
  await client.reset(messages);
  const start = performance.now();
  const acks: Promise<void>[] = [];
  for (let seq = 0; seq < messages; seq++) {
    const due = start + (seq * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    acks.push(pub.publish(seq));
  }
  await Promise.all(acks);
  const expected = subscribers * messages;
  const stats = await awaitDelivery(client, expected, 5000);
  pub.close();
  return {
    publisher: pub.name,
    messages,
    accepted: pub.accepted,
    expected,
    received: stats.events,
    minReach: stats.minPerSeq,
    latency: stats.latency,
  };
}

export interface FanoutResult {
  target: TargetName;
  mode: ServerMode;
  /** 1-based round (BENCH_REPEAT); the order of (mode, server) rotates each round. */
  round: number;
  subscribers: number;
  opened: number;
  openMs: number;
  memBefore: Memory;
  memAfter: Memory;
  rssPerConn: number;
  pssPerConn: number;
  /** Cores other processes of the machine used during the latency runs (noise; want ~0). */
  othersCores: number;
  /** The machine just before the server started (idle share, others' cores, wait). */
  quiet: QuietReading;
  /** Sidecar with BENCH_MEMORY_PROBE: process.memoryUsage() after a full GC, before and after. */
  probe?: { before: ProbeResult; after: ProbeResult };
  runs: LatencyRun[];
}

/** One fresh server, N subscribers on one channel: memory per connection, then latency runs. */
export async function measureFanout(
  name: TargetName,
  client: SubscriberClient,
  opts: {
    subscribers: number;
    messages: number;
    rate: number;
    nginxWorkers: number;
    settleMs: number;
    mode: ServerMode;
    round: number;
    nodeArgs?: string[];
    probe?: boolean;
    quiet: Quiet;
  },
): Promise<FanoutResult> {
  const quiet = await awaitQuiet(() => [process.pid, client.pid], opts.quiet);
  const target = await startTarget(name, opts);
  const others = new OthersCpu(() => [process.pid, client.pid, target.http.pid]);
  try {
    await warmUp(target, client);
    const probeBefore = await target.probe?.();
    const memBefore = treeMemory(target.http.pid);
    const open = await client.open(
      HOST,
      target.http.port,
      target.subscribePath(CHANNEL),
      opts.subscribers,
    );
    await sleep(opts.settleMs);
    const memAfter = treeMemory(target.http.pid);
    const probeAfter = await target.probe?.();
    const n = Math.max(1, open.ok);
    others.reset();
    const runs = [
      await latencyRun(
        client,
        target.publisher(CHANNEL, 'http'),
        open.ok,
        opts.messages,
        opts.rate,
      ),
    ];
    if (name === 'askr-sidecar') {
      runs.push(
        await latencyRun(
          client,
          target.publisher(CHANNEL, 'datagram'),
          open.ok,
          opts.messages,
          opts.rate,
        ),
      );
    }
    const othersCores = others.cores();
    return {
      target: name,
      mode: opts.mode,
      round: opts.round,
      subscribers: opts.subscribers,
      othersCores,
      quiet,
      opened: open.ok,
      openMs: open.ms,
      memBefore,
      memAfter,
      rssPerConn: (memAfter.rssBytes - memBefore.rssBytes) / n,
      pssPerConn: (memAfter.pssBytes - memBefore.pssBytes) / n,
      ...(probeBefore && probeAfter ? { probe: { before: probeBefore, after: probeAfter } } : {}),
      runs,
    };
  } finally {
    await client.closeAll();
    await target.http.server.stop();
  }
}
