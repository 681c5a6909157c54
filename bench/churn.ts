/**
 * `npm run bench:churn`: does memory come back after SSE streams come and go (issue 13)? Starts
 * askr-sidecar with a probe (bench/churn/probe.ts), then per round opens N raw SSE connections,
 * holds them, ends them, and after a forced full GC records RSS, the V8 heap, external memory,
 * the malloc arenas, the process's open fds and the hub's own counts. A JS leak shows as heapUsed
 * growing round after round; allocator retention as heapUsed flat while RSS climbs. Not part of
 * `npm test`. Everything listens on 127.0.0.1; every process started is stopped at the end.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { hubCounts, openMany, publish } from './churn/client.ts';
import { cpuSeconds, fdCount, nativeMemory } from './churn/proc-memory.ts';
import { cleanup, HOST, startSidecar, type ProbeResult, type Sidecar } from './churn/sidecar.ts';
import { readFlags, usageHead } from './lib/flags.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const MIB = 1024 * 1024;

/**
 * How the streams of a round end and what they carry:
 * - idle: no event; the client closes its sockets.
 * - events: events published while they are held; the client closes.
 * - server-close: events, then a publish with `close` ends every stream from the server side.
 * - mercure: as `events`, through the Mercure door (anonymous subscribers of topic x).
 */
const VARIANTS = ['idle', 'events', 'server-close', 'mercure'] as const;
type Variant = (typeof VARIANTS)[number];

interface Setup {
  env: Record<string, string>;
  nodeArgs: string[];
}

/**
 * Process set-ups to compare, each a fresh sidecar. `as-shipped` runs bin/askr-sidecar.js as a
 * user does; `uncapped` opts out of the young-generation cap (server.semi_space_size = 0: V8's
 * own sizing, the curve of the issue); `semiN` gives node the cap itself; `arena2` and `trim` add
 * the glibc malloc knobs the rest of the growth was tested with.
 */
const SETUPS: Record<string, Setup> = {
  'as-shipped': { env: {}, nodeArgs: [] },
  uncapped: { env: { ASKR_SERVER_SEMI_SPACE_SIZE: '0' }, nodeArgs: [] },
  semi16: { env: {}, nodeArgs: ['--max-semi-space-size=16'] },
  semi8: { env: {}, nodeArgs: ['--max-semi-space-size=8'] },
  semi4: { env: {}, nodeArgs: ['--max-semi-space-size=4'] },
  semi1: { env: {}, nodeArgs: ['--max-semi-space-size=1'] },
  arena2: { env: { MALLOC_ARENA_MAX: '2' }, nodeArgs: [] },
  trim: {
    env: {
      GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072',
    },
    nodeArgs: [],
  },
};
const SETUP_NAMES = Object.keys(SETUPS);

const FLAGS = {
  rounds: 'BENCH_ROUNDS',
  connections: 'BENCH_CONNECTIONS',
  'hold-ms': 'BENCH_HOLD_MS',
  events: 'BENCH_EVENTS',
  'event-bytes': 'BENCH_EVENT_BYTES',
  variants: 'BENCH_VARIANTS',
  setups: 'BENCH_SETUPS',
  repeat: 'BENCH_REPEAT',
  'idle-ms': 'BENCH_IDLE_MS',
  'node-args': 'BENCH_SIDECAR_NODE_ARGS',
  sidecars: 'BENCH_SIDECARS',
  snapshots: 'BENCH_PROBE_SNAPSHOT',
  json: 'BENCH_JSON',
} as const;

const usage = `${usageHead('churn')}
  --rounds       BENCH_ROUNDS      (40)    rounds of open, hold, close per variant and setup
  --connections  BENCH_CONNECTIONS (2000)  SSE connections per round, all held together
  --hold-ms      BENCH_HOLD_MS     (500)   how long they are held once all are open
  --events       BENCH_EVENTS      (10)    events published per round while held (not idle)
  --event-bytes  BENCH_EVENT_BYTES (200)   data bytes per event
  --variants     BENCH_VARIANTS    (${VARIANTS.join(',')})
  --setups       BENCH_SETUPS      (as-shipped) of ${SETUP_NAMES.join(', ')}
  --repeat       BENCH_REPEAT      (1)     runs of each setup, alternated (A B A B)
  --idle-ms      BENCH_IDLE_MS     (0)     after the last round, wait this long, read once more
  --node-args    BENCH_SIDECAR_NODE_ARGS ("") extra node flags for every sidecar
  --sidecars     BENCH_SIDECARS    ("")    NAME=DIR,...: compare checkouts (default: this one),
                                           e.g. before=/tmp/head (git archive HEAD | tar -x)
  --snapshots    BENCH_PROBE_SNAPSHOT ("") DIR: heap snapshots after round 1 and the last round
  --json         BENCH_JSON        ("")    also write the raw rows to this file`;

/** One reading, after a full GC in the sidecar. Bytes unless named otherwise. */
interface Row {
  /** Round number; -1 for the reading after --idle-ms. */
  round: number;
  rss: number;
  heapTotal: number;
  heapUsed: number;
  /** V8's young generation (two semi-spaces), committed. */
  newSpace: number;
  /** Resident pages of the whole V8 heap. */
  heapPhysical: number;
  external: number;
  arrayBuffers: number;
  /** Resident bytes of glibc's main arena ([heap], grown with brk). */
  mallocMain: number;
  /** Resident bytes of glibc's per-thread arenas (64 MiB-aligned anonymous regions). */
  mallocThreads: number;
  /** Other anonymous resident memory: RssAnon minus the above (large mallocs, stacks, V8 pages
   * it no longer counts but has not unmapped). */
  otherAnon: number;
  /** Resident pages given back with MADV_FREE: the kernel takes them only under memory pressure. */
  lazyFree: number;
  fds: number;
  /** The hub's open streams and channels (askr_sse_connections, askr_sse_channels). */
  streams: number;
  channels: number;
  /** CPU seconds the sidecar used since the previous reading, and its GCs meanwhile. */
  cpuS: number;
  minorGcs: number;
  majorGcs: number;
  gcMs: number;
}

function log(message: string): void {
  process.stderr.write(`[bench:churn ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** The request of one stream. Mercure streams select topic x with `match` (the 1.0 name; 0.x's
 * `topic` needs mercure.compatibility). */
function requestOf(variant: Variant, port: number): string {
  const path = variant === 'mercure' ? '/.well-known/mercure?match=x' : '/askr/events?channel=x';
  return `GET ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nAccept: text/event-stream\r\n\r\n`;
}

/** Waits until the hub holds no stream and the fds are back to `fdBase`; after 30 s says what
 * is left (the reading that follows shows it too). */
async function waitReleased(s: Sidecar, fdBase: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { streams } = await hubCounts(s.metricsPort);
    const fds = fdCount(s.pid);
    if (streams === 0 && fds <= fdBase) return;
    if (Date.now() > deadline) {
      log(`not released after 30 s: ${streams} streams, ${fds} fds (${fdBase} before)`);
      return;
    }
    await sleep(50);
  }
}

interface RoundOptions {
  connections: number;
  holdMs: number;
  events: number;
  eventBytes: number;
}

async function runRound(
  s: Sidecar,
  variant: Variant,
  opts: RoundOptions,
  fdBase: number,
): Promise<void> {
  const streams = await openMany(opts.connections, s.port, requestOf(variant, s.port));
  if (variant !== 'idle') {
    const data = 'x'.repeat(opts.eventBytes);
    for (let i = 0; i < opts.events; i++) await publish(s.port, { channel: 'x', data });
  }
  await sleep(opts.holdMs);
  if (variant === 'server-close') {
    await publish(s.port, { channel: 'x', data: '', close: true });
    await Promise.all(streams.map((st) => st.ended));
  }
  for (const st of streams) st.socket.destroy();
  await waitReleased(s, fdBase);
}

/** Reads everything after a full GC; `prev` gives the CPU and GC deltas. */
async function measure(
  s: Sidecar,
  round: number,
  prev: { cpu: number; gcs: ProbeResult['gcs'] },
  snapshotPath?: string,
): Promise<Row> {
  const p = await s.probe(snapshotPath);
  const cpu = cpuSeconds(s.pid);
  const native = nativeMemory(s.pid);
  const row: Row = {
    round,
    rss: p.rss,
    heapTotal: p.heapTotal,
    heapUsed: p.heapUsed,
    newSpace: p.spaces['new_space']?.size ?? 0,
    heapPhysical: p.heapPhysical,
    external: p.external,
    arrayBuffers: p.arrayBuffers,
    mallocMain: native.mallocMain,
    mallocThreads: native.mallocThreads,
    otherAnon: native.rssAnon - p.heapPhysical - native.mallocMain - native.mallocThreads,
    lazyFree: native.lazyFree,
    fds: fdCount(s.pid),
    ...(await hubCounts(s.metricsPort)),
    cpuS: cpu - prev.cpu,
    minorGcs: p.gcs.minor - prev.gcs.minor,
    majorGcs: p.gcs.major - prev.gcs.major,
    gcMs: p.gcs.ms - prev.gcs.ms,
  };
  prev.cpu = cpu;
  prev.gcs = p.gcs;
  return row;
}

const COLUMNS: Array<[string, (r: Row) => string]> = [
  ['round', (r) => (r.round < 0 ? 'idle' : String(r.round))],
  ['RSS', (r) => mib(r.rss)],
  ['heapTotal', (r) => mib(r.heapTotal)],
  ['heapUsed', (r) => mib(r.heapUsed)],
  ['new space', (r) => mib(r.newSpace)],
  ['V8 resident', (r) => mib(r.heapPhysical)],
  ['external', (r) => mib(r.external)],
  ['arrayBuffers', (r) => mib(r.arrayBuffers)],
  ['malloc [heap]', (r) => mib(r.mallocMain)],
  ['malloc threads', (r) => mib(r.mallocThreads)],
  ['other anon', (r) => mib(r.otherAnon)],
  ['LazyFree', (r) => mib(r.lazyFree)],
  ['fds', (r) => String(r.fds)],
  ['streams', (r) => String(r.streams)],
  ['channels', (r) => String(r.channels)],
  ['CPU s', (r) => r.cpuS.toFixed(2)],
  ['GCs minor/major', (r) => `${r.minorGcs}/${r.majorGcs}`],
  ['GC ms', (r) => r.gcMs.toFixed(0)],
];

function mib(n: number): string {
  return (n / MIB).toFixed(1);
}

function printHead(): void {
  console.log(`| ${COLUMNS.map(([name]) => name).join(' | ')} |`);
  console.log(`|${COLUMNS.map(() => '---:|').join('')}`);
}

function printRow(r: Row): void {
  console.log(`| ${COLUMNS.map(([, cell]) => cell(r)).join(' | ')} |`);
}

function describe(setup: Setup, extraArgs: string[]): string {
  const parts = [
    ...Object.entries(setup.env).map(([k, v]) => `${k}=${v}`),
    ...setup.nodeArgs,
    ...extraArgs,
  ];
  return parts.length === 0 ? 'as a user runs it' : parts.join(' ');
}

async function main(): Promise<void> {
  const flags = readFlags(process.argv.slice(2), FLAGS, usage);
  if (flags === null) {
    console.log(usage);
    return;
  }
  const rounds = flags.int('rounds', 40, 1);
  const opts: RoundOptions = {
    connections: flags.int('connections', 2000, 1),
    holdMs: flags.int('hold-ms', 500, 0),
    events: flags.int('events', 10, 0),
    eventBytes: flags.int('event-bytes', 200, 0),
  };
  const variants = flags.pick('variants', VARIANTS);
  const setups = flags.pick('setups', SETUP_NAMES, 'as-shipped');
  const repeat = flags.int('repeat', 1, 1);
  const idleMs = flags.int('idle-ms', 0, 0);
  const extraArgs = flags
    .get('node-args', '')
    .text.split(/\s+/)
    .filter((a) => a !== '');
  const snapshotDir = flags.get('snapshots', '').text;
  const jsonFile = flags.get('json', '').text;
  const sidecars = sidecarDirs(flags.get('sidecars', '').text);
  const results: Array<{
    variant: Variant;
    sidecar: string;
    setup: string;
    run: number;
    rows: Row[];
  }> = [];
  for (const variant of variants) {
    for (let run = 1; run <= repeat; run++) {
      for (const [tree, repo] of sidecars) {
        for (const name of setups) {
          const setup = SETUPS[name] ?? { env: {}, nodeArgs: [] };
          const label = `${variant}, ${tree}, ${name}, run ${run}`;
          log(`${label}: ${rounds} rounds of ${opts.connections} streams`);
          const rows = await runSidecar(repo, variant, setup, label, {
            rounds,
            opts,
            idleMs,
            extraArgs,
            snapshot: (round) =>
              snapshotDir === '' || (round !== 1 && round !== rounds)
                ? undefined
                : join(snapshotDir, `${label.replace(/[, ]+/g, '-')}-round${round}.heapsnapshot`),
          });
          results.push({ variant, sidecar: tree, setup: name, run, rows });
        }
      }
    }
  }
  if (jsonFile !== '') writeFileSync(jsonFile, JSON.stringify({ opts, rounds, results }, null, 2));
}

/** `NAME=DIR,...` (empty: this checkout), each DIR holding bin/askr-sidecar.js. */
function sidecarDirs(text: string): Array<[string, string]> {
  if (text === '') return [['this checkout', REPO]];
  return text.split(',').map((pair) => {
    const at = pair.indexOf('=');
    if (at <= 0) throw new Error(`--sidecars: "${pair}" is not NAME=DIR\n\n${usage}`);
    return [pair.slice(0, at), pair.slice(at + 1)];
  });
}

/** One sidecar through every round: its rows, printed as they come. */
async function runSidecar(
  repo: string,
  variant: Variant,
  setup: Setup,
  label: string,
  o: {
    rounds: number;
    opts: RoundOptions;
    idleMs: number;
    extraArgs: string[];
    snapshot: (round: number) => string | undefined;
  },
): Promise<Row[]> {
  const s = await startSidecar({
    repo,
    env: setup.env,
    nodeArgs: [...setup.nodeArgs, ...o.extraArgs],
    mercure: variant === 'mercure',
  });
  const rows: Row[] = [];
  try {
    console.log(`\n### ${label} (${describe(setup, o.extraArgs)})\n`);
    printHead();
    const prev = { cpu: cpuSeconds(s.pid), gcs: { minor: 0, major: 0, ms: 0 } };
    const base = await measure(s, 0, prev);
    rows.push(base);
    printRow(base);
    for (let round = 1; round <= o.rounds; round++) {
      await runRound(s, variant, o.opts, base.fds);
      const row = await measure(s, round, prev, o.snapshot(round));
      rows.push(row);
      printRow(row);
    }
    if (o.idleMs > 0) {
      await sleep(o.idleMs);
      const row = await measure(s, -1, prev);
      rows.push(row);
      printRow(row);
    }
  } finally {
    await s.stop();
  }
  return rows;
}

process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
