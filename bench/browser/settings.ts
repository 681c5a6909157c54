/**
 * Settings of `npm run bench:browser`: command-line flags first, then BENCH_* environment
 * variables, then defaults (bench/lib/flags.ts); `--quick` (or BENCH_QUICK=1) only changes the
 * defaults. A bad value stops the run naming the flag or variable, its value and what is allowed.
 */
import { readFlagsWithQuick, usageHead } from '../lib/flags.ts';

/** The reconnect storm's variants: subscription grants, or the app's auth route per channel. */
export const STORM_VARIANTS = ['grants', 'auth-route'] as const;
export type StormVariant = (typeof STORM_VARIANTS)[number];

/** GRIP publishing: the sidecar and Pushpin, each as shipped and lean. */
export const GRIP_TARGETS = ['sidecar', 'pushpin', 'sidecar-lean', 'pushpin-lean'] as const;
export type GripTarget = (typeof GRIP_TARGETS)[number];

export const PARTS = ['storm', 'grip'] as const;

export interface BrowserSettings {
  parts: (typeof PARTS)[number][];
  /** Storm sizes (clients, 2 private channels each). */
  clients: number[];
  /** GRIP held streams. */
  held: number;
  rounds: number;
  gripTargets: GripTarget[];
  /** php-fpm workers of each pool (the storm's variants, the sidecar's GRIP origin). */
  workers: number;
  messages: number;
  messageRate: number;
  phaseMs: number;
  json: string;
}

const FLAGS = {
  parts: 'BENCH_PARTS',
  clients: 'BENCH_CLIENTS',
  held: 'BENCH_HELD',
  rounds: 'BENCH_ROUNDS',
  targets: 'BENCH_TARGETS',
  workers: 'BENCH_FPM_WORKERS',
  messages: 'BENCH_MESSAGES',
  'message-rate': 'BENCH_MESSAGE_RATE',
  seconds: 'BENCH_PHASE_SECONDS',
  json: 'BENCH_JSON',
} as const;

const DEFAULTS = { clients: '500,2000', held: 1000, rounds: 3 };
const QUICK = { clients: '300', held: 500, rounds: 1 };

export const usage = `${usageHead('browser')}
  --quick                BENCH_QUICK=1             (off)   defaults become --clients ${QUICK.clients} --held ${QUICK.held} --rounds ${QUICK.rounds}
  --parts LIST           BENCH_PARTS               storm,grip
  --clients LIST         BENCH_CLIENTS             ${DEFAULTS.clients}  storm sizes: clients with 2 private channels each
  --held N               BENCH_HELD                ${DEFAULTS.held}     GRIP: held streams on one channel
  --rounds N             BENCH_ROUNDS              ${DEFAULTS.rounds}       rounds, variants rotated; medians reported
  --targets LIST         BENCH_TARGETS             ${GRIP_TARGETS.join(',')}
  --workers N            BENCH_FPM_WORKERS         8       php-fpm workers of each pool
  --messages N           BENCH_MESSAGES            12      GRIP: events of the latency run
  --message-rate N       BENCH_MESSAGE_RATE        6       GRIP: events/s of the latency run
  --seconds N            BENCH_PHASE_SECONDS       1.5     GRIP: the closed-loop publish phase
  --json FILE            BENCH_JSON                ""      also write the raw results here`;

/** Parses `argv` (without node and the script) and the environment; null when --help was asked. */
export function readBrowserSettings(argv: string[]): BrowserSettings | null {
  const read = readFlagsWithQuick(argv, FLAGS, usage);
  if (read === null) return null;
  const { quick } = read;
  const { get, num, int, pick } = read.flags;
  const d = quick ? QUICK : DEFAULTS;
  const { text, where } = get('clients', d.clients);
  const clients = text.split(',').map((s) => Number(s.trim()));
  if (clients.some((n) => !Number.isInteger(n) || n < 1 || n > 15_000)) {
    throw new Error(`${where}=${text}: expected a comma-separated list of integers 1..15000`);
  }
  return {
    parts: pick('parts', PARTS),
    clients,
    held: int('held', d.held, 1),
    rounds: int('rounds', d.rounds, 1),
    gripTargets: pick('targets', GRIP_TARGETS),
    workers: int('workers', 8, 1),
    messages: int('messages', 12, 1),
    messageRate: num('message-rate', 6, 0.1),
    phaseMs: Math.round(num('seconds', 1.5, 0.5) * 1000),
    json: get('json', '').text,
  };
}
