/**
 * The ordinary visitor: one client doing sequential GETs of a tiny PHP page, each on a fresh
 * connection with a client timeout, recording when it started, how long it took and how it ended.
 * Invariants: a request is never abandoned unrecorded: one still running when the probe is
 * stopped is waited for (at most the timeout); a timeout is recorded as an error with the time
 * waited, not dropped.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProbeResult {
  /** Milliseconds since the phase started, when the request was sent. */
  tMs: number;
  /** Until the whole body arrived, or until the failure. */
  latencyMs: number;
  /** HTTP status; null when no answer head arrived. */
  status: number | null;
  /** 'timeout', or the socket error code (ECONNRESET, ...); absent on a complete answer. */
  error?: string;
}

export interface ProbeTarget {
  host: string;
  port: number;
  path: string;
  timeoutMs: number;
  /** Pause between the end of a request and the start of the next. */
  gapMs: number;
}

/** One GET on a fresh connection; never throws. */
export function probeOnce(target: ProbeTarget, startMs: number): Promise<ProbeResult> {
  const sentAt = performance.now();
  const tMs = Math.round(sentAt - startMs);
  // The deadline covers the whole exchange (connect, wait, body), as a visitor's patience does.
  const signal = AbortSignal.timeout(target.timeoutMs);
  return new Promise((resolve) => {
    let status: number | null = null;
    let settled = false;
    const finish = (err?: NodeJS.ErrnoException): void => {
      if (settled) return;
      settled = true;
      const latencyMs = performance.now() - sentAt;
      if (err === undefined) resolve({ tMs, latencyMs, status });
      else
        resolve({
          tMs,
          latencyMs,
          status,
          error: signal.aborted ? 'timeout' : (err.code ?? err.message),
        });
    };
    // agent: false: a fresh connection each time, as a new visitor; no pooled socket to go stale.
    const req = http.get(
      { host: target.host, port: target.port, path: target.path, agent: false, signal },
      (res) => {
        status = res.statusCode ?? null;
        res.on('data', () => undefined);
        res.once('end', () => finish());
        res.once('error', finish);
        // Closed mid-body without an error event: a failure too, never a silent success.
        res.once('close', () => {
          if (!res.complete)
            finish(Object.assign(new Error('closed mid-body'), { code: 'CLOSED_MID_BODY' }));
        });
      },
    );
    req.once('error', finish);
  });
}

/** Sequential probe requests from construction until stop(). */
export class Prober {
  readonly results: ProbeResult[] = [];
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(target: ProbeTarget, startMs: number) {
    this.#done = (async () => {
      while (!this.#stopped) {
        this.results.push(await probeOnce(target, startMs));
        if (target.gapMs > 0 && !this.#stopped) await sleep(target.gapMs);
      }
    })();
  }

  /** Stops after the request in flight, which is waited for and recorded. */
  async stop(): Promise<ProbeResult[]> {
    this.#stopped = true;
    await this.#done;
    return this.results;
  }
}
