/**
 * Settings of `npm run bench:mercure`: command-line flags first, then BENCH_* environment
 * variables, then defaults (bench/lib/flags.ts); `--quick` (or BENCH_QUICK=1) only changes the
 * defaults. A bad value stops the run naming the flag or variable, its value and what is allowed.
 */
import { readFlagsWithQuick, usageHead } from '../lib/flags.ts';

/**
 * What is compared, each on a fresh server. `askr`: the sidecar's native door
 * (`/askr/events?channel=` + `POST /askr/publish`), the in-run anchor. `mercure`: the sidecar's
 * Mercure 1.0 hub, `match=` one topic. `mercure-urlpattern`: the same with `match_urlpattern`.
 * `mercure-0x`: the sidecar with mercure.compatibility, `topic=` and 0.x tokens, as node-mercure.
 * `node-mercure`: the npm package `mercure` 0.1.0. `-lean`: the sidecar without access log,
 * metrics, info logs and history; the others run as shipped. `mixed`: one sidecar, half the
 * streams through each door (askr on even client processes, Mercure `match=` on odd ones), the
 * same events: the doors compared under the same load at the same moment.
 */
export const TARGETS = [
  'mixed',
  'askr',
  'mercure',
  'mercure-urlpattern',
  'mercure-0x',
  'node-mercure',
  'askr-lean',
  'mercure-lean',
] as const;
export type TargetName = (typeof TARGETS)[number];

export interface MercureSettings {
  quick: boolean;
  /** Fan-out sizes (streams on one topic), each measured for every target. */
  subscribers: number[];
  /** Rounds per size; round r starts at target r (rotation), figures are medians over rounds. */
  rounds: number;
  targets: TargetName[];
  /** Subscriber client processes (bench/sse/client-proc.ts), each holding an equal share. */
  clients: number;
  /** Latency run: events and their rate (events/s, spaced so one fan-out ends before the next). */
  messages: number;
  messageRate: number;
  /** Length of each closed-loop publish phase (sequential, then `concurrency` in flight). */
  phaseMs: number;
  concurrency: number;
  /** Wait after opening the streams before reading the server's RSS. */
  settleMs: number;
  /** Before each measurement, wait at most quietWaitMs until other processes use < quietCores. */
  quietCores: number;
  quietWaitMs: number;
  json: string;
}

const FLAGS = {
  subscribers: 'BENCH_SUBSCRIBERS',
  rounds: 'BENCH_ROUNDS',
  targets: 'BENCH_TARGETS',
  clients: 'BENCH_CLIENTS',
  messages: 'BENCH_MESSAGES',
  'message-rate': 'BENCH_MESSAGE_RATE',
  seconds: 'BENCH_PHASE_SECONDS',
  concurrency: 'BENCH_CONCURRENCY',
  'settle-ms': 'BENCH_SETTLE_MS',
  'quiet-cores': 'BENCH_QUIET_CORES',
  'quiet-wait': 'BENCH_QUIET_WAIT_S',
  json: 'BENCH_JSON',
} as const;

const DEFAULTS = { subscribers: '1000,5000', rounds: 3 };
const QUICK = { subscribers: '1000', rounds: 1 };

export const usage = `${usageHead('mercure')}
  --quick                BENCH_QUICK=1             (off)   defaults become --subscribers ${QUICK.subscribers} --rounds ${QUICK.rounds}
  --subscribers LIST     BENCH_SUBSCRIBERS         ${DEFAULTS.subscribers}  streams on one topic (each size, every target)
  --rounds N             BENCH_ROUNDS              ${DEFAULTS.rounds}       rounds per size, targets rotated; medians reported
  --targets LIST         BENCH_TARGETS             ${TARGETS.join(',')}
                         mixed: one sidecar, half the streams askr, half Mercure match=, same
                         events; askr: native door (anchor); mercure: 1.0 match=;
                         mercure-urlpattern: match_urlpattern; mercure-0x: compatibility=true,
                         topic=, 0.x tokens; node-mercure: npm mercure 0.1.0; -lean: no access
                         log/metrics/history
  --clients N            BENCH_CLIENTS             2       subscriber processes (equal shares)
  --messages N           BENCH_MESSAGES            12      events of the latency run
  --message-rate N       BENCH_MESSAGE_RATE        6       events/s of the latency run
  --seconds N            BENCH_PHASE_SECONDS       1.5     each closed-loop publish phase (sequential, concurrent)
  --concurrency N        BENCH_CONCURRENCY         8       publishes in flight in the concurrent phase
  --settle-ms N          BENCH_SETTLE_MS           1000    after opening the streams, before reading RSS
  --quiet-cores N        BENCH_QUIET_CORES         0.3     before each measurement, wait until other
  --quiet-wait N         BENCH_QUIET_WAIT_S        3         processes use fewer cores (at most N s)
  --json FILE            BENCH_JSON                ""      also write the raw results here`;

/** Open files per process here (ulimit -n): a client process or a server holds at most this. */
const NOFILE = 20_000;

/** Parses `argv` (without node and the script) and the environment; null when --help was asked. */
export function readMercureSettings(argv: string[]): MercureSettings | null {
  const read = readFlagsWithQuick(argv, FLAGS, usage);
  if (read === null) return null;
  const { quick } = read;
  const { get, num, int, pick } = read.flags;
  const d = quick ? QUICK : DEFAULTS;
  const { text, where } = get('subscribers', d.subscribers);
  const subscribers = text.split(',').map((s) => Number(s.trim()));
  if (subscribers.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`${where}=${text}: expected a comma-separated list of positive integers`);
  }
  const clients = int('clients', 2, 1);
  const largest = Math.max(...subscribers);
  // A client process holds its share, a server all the streams; each needs a few files more.
  if (Math.ceil(largest / clients) > NOFILE - 500 || largest > NOFILE - 500) {
    throw new Error(
      `${where}=${text} with --clients ${clients}: a process may hold at most ` +
        `${NOFILE - 500} streams here (ulimit -n ${NOFILE})`,
    );
  }
  const targets = pick('targets', TARGETS);
  if (targets.includes('mixed') && clients < 2) {
    throw new Error(`--targets mixed needs --clients 2 or more (one per door), not ${clients}`);
  }
  return {
    quick,
    subscribers,
    rounds: int('rounds', d.rounds, 1),
    targets,
    clients,
    messages: int('messages', 12, 1),
    messageRate: num('message-rate', 6, 0.1),
    phaseMs: Math.round(num('seconds', 1.5, 0.5) * 1000),
    concurrency: int('concurrency', 8, 1),
    settleMs: int('settle-ms', 1000, 0),
    quietCores: num('quiet-cores', 0.3, 0),
    quietWaitMs: Math.round(num('quiet-wait', 3, 0) * 1000),
    json: get('json', '').text,
  };
}
