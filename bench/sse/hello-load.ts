/**
 * The hello-world PHP load of the "FPM workers needed" comparison: `connections` loops, each
 * sending GET requests back to back on a keep-alive connection for `seconds`. Unlike wrk, a
 * request that gets no answer within `timeoutMs` is counted (as a timeout) and its connection
 * replaced, which is exactly what happens when every FPM worker is pinned by a stream.
 */
import http from 'node:http';
import { LatencyHistogram } from './histogram.ts';

export interface HelloLoad {
  /** Requests answered 2xx. */
  ok: number;
  perSecond: number;
  /** Timeouts, connection errors and non-2xx answers. */
  errors: number;
  timeouts: number;
  non2xx: number;
  p50Ms: number;
  p99Ms: number;
}

type Outcome = 'ok' | 'non2xx' | 'error' | 'timeout';

function once(agent: http.Agent, url: URL, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Outcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(o);
    };
    const req = http.get(url, { agent }, (res) => {
      res.resume();
      res.once('end', () => finish(res.statusCode === 200 ? 'ok' : 'non2xx'));
      res.once('error', () => finish('error'));
    });
    req.once('error', () => finish('error'));
    const timer = setTimeout(() => {
      finish('timeout');
      req.destroy();
    }, timeoutMs);
  });
}

/** Runs the load and summarises it. Stops by itself after `seconds` (plus one timeout at most). */
export async function helloLoad(
  url: string,
  seconds: number,
  connections: number,
  timeoutMs = 2000,
): Promise<HelloLoad> {
  const target = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const hist = new LatencyHistogram();
  const counts: Record<Outcome, number> = { ok: 0, non2xx: 0, error: 0, timeout: 0 };
  const end = performance.now() + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const started = performance.now();
      const outcome = await once(agent, target, timeoutMs);
      counts[outcome]++;
      if (outcome === 'ok') hist.record((performance.now() - started) * 1000);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, loop));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  const lat = hist.summary();
  return {
    ok: counts.ok,
    perSecond: counts.ok / elapsed,
    errors: counts.non2xx + counts.error + counts.timeout,
    timeouts: counts.timeout,
    non2xx: counts.non2xx,
    p50Ms: lat.p50,
    p99Ms: lat.p99,
  };
}
