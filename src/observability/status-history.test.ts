/**
 * Unit tests of the status page's history (status-history.ts) and its latency histogram
 * (latency-histogram.ts), driven by hand with a fake clock: rates are per second over the
 * measured interval, p50/p99 come from that interval's requests only (streams left out), gauges
 * keep the interval's peak, the ring never holds more than `points` samples, and a source that
 * throws on the timer is counted, never thrown.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RequestContext } from '../http/request-context.ts';
import type { HttpServerDeps } from '../http/server.ts';
import { ConfigError } from '../errors.ts';
import type { FpmStatus } from './fpm-status.ts';
import {
  bucketDelta,
  LatencyHistogram,
  LATENCY_BOUNDS_MS,
  quantileMs,
} from './latency-histogram.ts';
import { StatusHistory } from './status-history.ts';
import { fpmReading, StatusTally, type FpmReading, type StatusSources } from './status-sources.ts';

const silent = pino({ level: 'silent' });

const FPM: FpmStatus = {
  activeProcesses: 3,
  idleProcesses: 5,
  totalProcesses: 8,
  listenQueue: 2,
  maxListenQueue: 4,
  maxChildrenReached: 1,
  slowRequests: 0,
  acceptedConnections: 100,
};

/** Sources over mutable state, with a real tally behind totals(). */
function fakeSources() {
  const state = {
    hold: 0,
    events: 0,
    busy: 0,
    queued: 0,
    max: 8,
    fpm: { state: 'off' } as FpmReading,
  };
  const tally = new StatusTally();
  const inner: Pick<HttpServerDeps, 'onRequestDone'> = { onRequestDone: () => undefined };
  const http = tally.httpHooks(inner);
  const hub = tally.hubHooks({});
  const sources: StatusSources = {
    hub: () => ({ byKind: { hold: state.hold, events: state.events }, channels: 1 }),
    passthroughStreams: () => tally.passthroughStreams(),
    totals: () => tally.totals(),
    pool: () => ({
      open: state.busy,
      busy: state.busy,
      idle: 0,
      queued: state.queued,
      max: state.max,
    }),
    fpm: () => state.fpm,
  };
  const request = (kind: RequestContext['kind'], status: number, ms: number): void =>
    http.onRequestDone?.({ kind } as RequestContext, status, ms); // only `kind` is read
  return { state, tally, sources, request, hub };
}

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('StatusHistory', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('computes per-second rates over the measured interval', () => {
    const f = fakeSources();
    const c = clock();
    const h = new StatusHistory({ sources: f.sources, logger: silent, now: c.now, sampleMs: 5000 });
    for (let i = 0; i < 50; i++) f.request('php', i < 5 ? 502 : 200, 10);
    for (let i = 0; i < 10; i++) {
      f.hub.onPublish?.('http', 1);
      f.hub.onDeliver?.(3, 0);
    }
    f.tally.passthrough(1);
    f.state.hold = 2;
    f.state.events = 4;
    c.advance(5000);
    const s = h.sample();
    expect(s).toMatchObject({
      seq: 1,
      seconds: 5,
      requestsPerS: 10,
      serverErrorsPerS: 1,
      publishesPerS: 2,
      deliveriesPerS: 6,
      streams: 7,
    });
    // The next interval counts only what happened in it.
    f.request('static', 200, 1);
    c.advance(2000);
    expect(h.sample()).toMatchObject({ seq: 2, seconds: 2, requestsPerS: 0.5, publishesPerS: 0 });
  });

  it("takes p50/p99 from the interval's requests only, streams left out", () => {
    const f = fakeSources();
    const c = clock();
    const h = new StatusHistory({ sources: f.sources, logger: silent, now: c.now });
    for (let i = 0; i < 98; i++) f.request('php', 200, 7); // (5, 10] ms
    f.request('php', 200, 400); // (250, 500]
    f.request('static', 200, 400);
    f.request('sse', 200, 3_600_000); // a stream of an hour is no latency
    c.advance(5000);
    const first = h.sample();
    expect(first.p50Ms).toBeGreaterThan(5);
    expect(first.p50Ms).toBeLessThanOrEqual(10);
    expect(first.p99Ms).toBeGreaterThan(250);
    expect(first.p99Ms).toBeLessThanOrEqual(500);
    expect(first.requestsPerS).toBeCloseTo(101 / 5);

    // Nothing finished: no latency (null), not 0 ms.
    c.advance(5000);
    expect(h.sample()).toMatchObject({ p50Ms: null, p99Ms: null, requestsPerS: 0 });
  });

  it('keeps the peak of the pool gauges within an interval, then starts from the current value', () => {
    const f = fakeSources();
    const c = clock();
    const h = new StatusHistory({ sources: f.sources, logger: silent, now: c.now });
    f.state.busy = 6;
    f.state.queued = 3;
    h.probe();
    f.state.busy = 1;
    f.state.queued = 0;
    h.probe();
    c.advance(5000);
    expect(h.sample()).toMatchObject({ poolBusy: 6, poolQueued: 3, poolMax: 8 });
    c.advance(5000);
    expect(h.sample()).toMatchObject({ poolBusy: 1, poolQueued: 0 });
  });

  it('records FPM figures when the last scrape succeeded and null otherwise', () => {
    const f = fakeSources();
    const c = clock();
    const h = new StatusHistory({ sources: f.sources, logger: silent, now: c.now });
    c.advance(5000);
    expect(h.sample()).toMatchObject({ fpmActive: null, fpmTotal: null, fpmListenQueue: null });
    f.state.fpm = { state: 'ok', status: FPM, at: c.now() };
    c.advance(5000);
    expect(h.sample()).toMatchObject({ fpmActive: 3, fpmTotal: 8, fpmListenQueue: 2 });
    f.state.fpm = { state: 'failed', error: 'refused' };
    c.advance(5000);
    expect(h.sample().fpmActive).toBeNull();
  });

  it('holds at most `points` samples, oldest first', () => {
    const f = fakeSources();
    const c = clock();
    const h = new StatusHistory({ sources: f.sources, logger: silent, now: c.now, points: 3 });
    for (let i = 0; i < 7; i++) {
      c.advance(5000);
      h.sample();
    }
    expect(h.samples().map((s) => s.seq)).toEqual([5, 6, 7]);
    expect(h.seq).toBe(7);
    expect(h.windowMs).toBe(15_000);
  });

  it('defaults to 15 minutes of 5 s samples', () => {
    const h = new StatusHistory({ sources: fakeSources().sources, logger: silent });
    expect([h.sampleMs, h.points, h.windowMs]).toEqual([5000, 180, 900_000]);
  });

  it('refuses a sample interval under 100 ms or fewer than 2 points', () => {
    const { sources } = fakeSources();
    expect(() => new StatusHistory({ sources, logger: silent, sampleMs: 10 })).toThrow(ConfigError);
    expect(() => new StatusHistory({ sources, logger: silent, points: 1 })).toThrow(ConfigError);
  });

  it('samples on its timer and counts a throwing source instead of throwing', () => {
    vi.useFakeTimers();
    const f = fakeSources();
    const h = new StatusHistory({ sources: f.sources, logger: silent, sampleMs: 2000 });
    h.start();
    f.request('php', 200, 1);
    // Probes every second (two per sample), one sample per 2 s.
    f.state.busy = 5;
    vi.advanceTimersByTime(1000);
    f.state.busy = 0;
    vi.advanceTimersByTime(1000);
    expect(h.samples()).toHaveLength(1);
    expect(h.samples()[0]).toMatchObject({ poolBusy: 5, requestsPerS: 0.5 });
    f.sources.pool = () => {
      throw new Error('boom');
    };
    vi.advanceTimersByTime(2000);
    expect(h.sampleErrors).toBe(2);
    expect(h.samples()).toHaveLength(1);
    h.stop();
    vi.advanceTimersByTime(10_000);
    expect(h.sampleErrors).toBe(2);
  });
});

describe('fpmReading', () => {
  it('tells off, pending, failed and ok apart', () => {
    const poller = (last: { sample: FpmStatus; at: number } | null, error: string | null) => ({
      lastStatus: () => last,
      lastError: () => error,
    });
    expect(fpmReading(null)).toEqual({ state: 'off' });
    expect(fpmReading(poller(null, null))).toEqual({ state: 'pending' });
    expect(fpmReading(poller(null, 'refused'))).toEqual({ state: 'failed', error: 'refused' });
    expect(fpmReading(poller({ sample: FPM, at: 5 }, null))).toEqual({
      state: 'ok',
      status: FPM,
      at: 5,
    });
  });
});

describe('latency histogram', () => {
  it('counts each duration in the first bucket whose bound is at or above it', () => {
    const h = new LatencyHistogram();
    for (const ms of [0, 0.5, 0.6, 1, 60_000, 60_001, Number.NaN, -3]) h.record(ms);
    const counts = h.counts();
    expect(counts).toHaveLength(LATENCY_BOUNDS_MS.length + 1);
    expect(counts[0]).toBe(4); // 0, 0.5, NaN, -3
    expect(counts[1]).toBe(2); // 0.6, 1
    expect(counts[LATENCY_BOUNDS_MS.length - 1]).toBe(1); // 60 000
    expect(counts[LATENCY_BOUNDS_MS.length]).toBe(1); // overflow
  });

  it.each([
    { name: 'empty', counts: [], q: 0.5, want: null },
    { name: 'all zero', counts: [0, 0, 0], q: 0.99, want: null },
    { name: 'half of the first bucket', counts: [10], q: 0.5, want: 0.25 },
    { name: 'interpolated in (5, 10]', counts: [0, 0, 0, 0, 4], q: 0.5, want: 7.5 },
    { name: 'p99 at the top of the first bucket', counts: [99, 1], q: 0.99, want: 0.5 },
    { name: 'p99 past the first', counts: [98, 2], q: 0.99, want: 0.75 },
    {
      name: 'overflow reads as the last bound',
      counts: [...new Array<number>(LATENCY_BOUNDS_MS.length).fill(0), 5],
      q: 0.5,
      want: 60_000,
    },
  ])('quantile: $name', ({ counts, q, want }) => {
    expect(quantileMs(counts, q)).toBe(want);
  });

  it('takes one interval as the bucket-wise difference of two reads', () => {
    expect(bucketDelta([5, 7, 9], [1, 7, 2])).toEqual([4, 0, 7]);
    // A shorter earlier read (none yet) counts as zeros; a decrease never goes negative.
    expect(bucketDelta([3, 1], [])).toEqual([3, 1]);
    expect(bucketDelta([1], [4])).toEqual([0]);
  });
});
