/**
 * Settings of `npm run bench:cluster`: command-line flags first, then BENCH_* environment
 * variables, then defaults. A bad value stops the run naming the flag or variable, its value and
 * what is allowed. `usage` lists them all (`node bench/cluster.ts --help`).
 */
import { readFlags, usageHead } from '../lib/flags.ts';

/**
 * What is compared. `baseline`: one sidecar, no Redis, every subscriber on it. `split`: two
 * sidecars on one Redis, half the subscribers on each. `one-redis`: one sidecar with Redis and
 * every subscriber (the bus cost alone, without the split).
 */
export const SETUPS = ['baseline', 'split', 'one-redis'] as const;
export type SetupName = (typeof SETUPS)[number];
export const PUBLISHERS = ['http', 'datagram'] as const;
export type PublisherKind = (typeof PUBLISHERS)[number];

export interface ClusterSettings {
  subscribers: number;
  /** Subscriber client processes (bench/sse/client-proc.ts), each holding an equal share. */
  clients: number;
  setups: SetupName[];
  publisher: PublisherKind;
  /** Keep-alive connections of each HTTP publisher (one request in flight on each). */
  publishConnections: number;
  /** Events of the latency run, and their rate (events/s). */
  messages: number;
  messageRate: number;
  /** Publish-rate steps (events/s, ascending) and the length of one step. */
  rates: number[];
  rateStepMs: number;
  /** A rate step whose p99 delivery latency is above this did not keep up. */
  maxP99Ms: number;
  /** php-fpm workers of each sidecar's own pool (PHP is not in the measured path). */
  fpmWorkers: number;
  /** Before each setup, wait at most quietWaitMs until other processes use < quietCores. */
  quietCores: number;
  quietWaitMs: number;
  json: string;
}

export const usage = `${usageHead('cluster')}
  --subscribers N        BENCH_SUBSCRIBERS         10000   streams on one channel, in every setup
  --clients N            BENCH_CLIENTS             2       subscriber processes (equal shares)
  --setups LIST          BENCH_SETUPS              ${SETUPS.join(',')}
                         baseline: 1 sidecar, no Redis; split: 2 sidecars on 1 Redis, half the
                         streams each; one-redis: 1 sidecar with Redis (the bus alone)
  --publisher KIND       BENCH_PUBLISHER           http    http (POST /askr/publish) or datagram
  --publish-connections N BENCH_PUBLISH_CONNECTIONS 16     keep-alive connections per HTTP publisher
  --messages N           BENCH_MESSAGES            30      events of the latency run
  --message-rate N       BENCH_MESSAGE_RATE        2       events/s of the latency run
  --rates LIST           BENCH_RATES               2,4,8,16,32,64,128,256,512
                         publish-rate steps (events/s); at the first that does not keep up, one
                         step halfway from the last that did (if 1.5x apart or more), then stop
  --rate-seconds N       BENCH_RATE_SECONDS        3       length of one rate step
  --max-p99 N            BENCH_RATE_MAX_P99_MS     500     a step with a higher p99 (ms) failed
  --fpm-workers N        BENCH_FPM_WORKERS         2       php-fpm workers per sidecar (idle)
  --quiet-cores N        BENCH_QUIET_CORES         0.3     before each setup, wait until other
  --quiet-wait N         BENCH_QUIET_WAIT_S        10        processes use fewer cores (at most N s)
  --json FILE            BENCH_JSON                ""      also write the raw results here
Quick run: npm run bench:cluster -- --subscribers 2000`;

const FLAGS = {
  subscribers: 'BENCH_SUBSCRIBERS',
  clients: 'BENCH_CLIENTS',
  setups: 'BENCH_SETUPS',
  publisher: 'BENCH_PUBLISHER',
  'publish-connections': 'BENCH_PUBLISH_CONNECTIONS',
  messages: 'BENCH_MESSAGES',
  'message-rate': 'BENCH_MESSAGE_RATE',
  rates: 'BENCH_RATES',
  'rate-seconds': 'BENCH_RATE_SECONDS',
  'max-p99': 'BENCH_RATE_MAX_P99_MS',
  'fpm-workers': 'BENCH_FPM_WORKERS',
  'quiet-cores': 'BENCH_QUIET_CORES',
  'quiet-wait': 'BENCH_QUIET_WAIT_S',
  json: 'BENCH_JSON',
} as const;

/** Open files per process here (ulimit -n): a client process or a sidecar holds at most this. */
const NOFILE = 20_000;

/** Parses `argv` (without node and the script) and the environment; null when --help was asked. */
export function readClusterSettings(argv: string[]): ClusterSettings | null {
  const flags = readFlags(argv, FLAGS, usage);
  if (flags === null) return null;
  const { get, num, int, pick } = flags;
  const rates = (() => {
    const { text, where } = get('rates', '2,4,8,16,32,64,128,256,512');
    const list = text.split(',').map((s) => Number(s.trim()));
    if (list.length === 0 || list.some((n) => !Number.isFinite(n) || n <= 0)) {
      throw new Error(`${where}=${text}: expected a comma-separated list of positive numbers`);
    }
    return list.sort((a, b) => a - b);
  })();
  const subscribers = int('subscribers', 10_000, 1);
  const clients = int('clients', 2, 1);
  // A client process holds its share, a sidecar all its streams; each needs a few files more.
  if (Math.ceil(subscribers / clients) > NOFILE - 500 || subscribers > NOFILE - 500) {
    throw new Error(
      `--subscribers ${subscribers} with --clients ${clients}: a process may hold at most ` +
        `${NOFILE - 500} streams here (ulimit -n ${NOFILE})`,
    );
  }
  const [publisher = 'http'] = pick('publisher', PUBLISHERS, 'http');
  return {
    subscribers,
    clients,
    setups: pick('setups', SETUPS),
    publisher,
    publishConnections: int('publish-connections', 16, 1),
    messages: int('messages', 30, 1),
    messageRate: num('message-rate', 2, 0.1),
    rates,
    rateStepMs: Math.round(num('rate-seconds', 3, 0.5) * 1000),
    maxP99Ms: num('max-p99', 500, 1),
    fpmWorkers: int('fpm-workers', 2, 1),
    quietCores: num('quiet-cores', 0.3, 0),
    quietWaitMs: Math.round(num('quiet-wait', 10, 0) * 1000),
    json: get('json', '').text,
  };
}
