/**
 * Runs wrk (closed-loop HTTP load: each connection sends its next request when the previous
 * answer arrived) and parses its `--latency` report. Invariants: a report that cannot be parsed
 * is an error carrying wrk's output, never a silent zero; latencies are in milliseconds.
 */
import type { ChildServer, ProcessSet } from './processes.ts';
import { spawnChild } from './processes.ts';

export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  /** wrk duration syntax: '10s', '1m'. */
  duration: string;
  /** Per-request timeout ('10s'); slower answers count as timeouts and leave the histogram. */
  timeout: string;
}

export interface WrkResult {
  requestsPerSec: number;
  requests: number;
  /** Latency percentiles in ms. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Responses outside 2xx/3xx. */
  non2xx: number;
  /** connect + read + write errors. */
  socketErrors: number;
  timeouts: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** '1.23ms' -> 1.23; throws on an unknown unit. */
export function parseDurationMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  const unit = m?.[2];
  if (m === null || unit === undefined) throw new Error(`unparsable wrk latency "${text}"`);
  return Number(m[1]) * (UNIT_MS[unit] ?? NaN);
}

/** Parses wrk 4.x output (with --latency). Throws, quoting the output, when a field is missing. */
export function parseWrkOutput(out: string): WrkResult {
  const need = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(out);
    if (m === null) throw new Error(`wrk output has no ${what}:\n${out}`);
    return m;
  };
  const percentile = (p: number): number =>
    parseDurationMs(need(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm'), `${p}% latency`)[1] ?? '');
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const latencyLine = need(/^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)/m, 'latency line');
  return {
    requestsPerSec: Number(need(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec')[1]),
    requests: Number(need(/^\s+(\d+) requests in /m, 'request count')[1]),
    p50Ms: percentile(50),
    p90Ms: percentile(90),
    p99Ms: percentile(99),
    maxMs: parseDurationMs(latencyLine[3] ?? ''),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: errors === null ? 0 : Number(errors[1]) + Number(errors[2]) + Number(errors[3]),
    timeouts: errors === null ? 0 : Number(errors[4]),
  };
}

/** wrk's arguments for `options`. */
export function wrkArgs(options: WrkOptions): string[] {
  return [
    '--latency',
    '-t',
    String(options.threads),
    '-c',
    String(options.connections),
    '-d',
    options.duration,
    '--timeout',
    options.timeout,
    options.url,
  ];
}

/**
 * Runs wrk once and parses its report. wrk is registered in `processes` while it runs, so
 * Ctrl-C stops it too. Throws when wrk fails or its report cannot be parsed.
 */
export async function runWrk(
  binary: string,
  options: WrkOptions,
  processes: ProcessSet,
  onStart?: (wrk: ChildServer) => void,
): Promise<WrkResult> {
  const wrk = processes.add(
    await spawnChild('wrk', binary, wrkArgs(options), { stopSignal: 'SIGINT', graceMs: 2_000 }),
  );
  let out = '';
  wrk.child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  onStart?.(wrk);
  const { code, signal } = await wrk.exited;
  await processes.stop(wrk);
  if (code !== 0) {
    throw new Error(
      `wrk ${wrkArgs(options).join(' ')} failed (${signal ?? `exit ${code}`}):\n${wrk.output()}`,
    );
  }
  return parseWrkOutput(out);
}
