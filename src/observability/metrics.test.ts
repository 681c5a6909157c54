/**
 * Unit tests of the metric hooks (metrics.ts): each adapter moves exactly its series, SSE streams
 * stay out of the latency histogram, collect()-time gauges read the bound sources, and label
 * values stay inside their allow-lists whatever strings the callers pass (a regression here would
 * show as one series per path or channel name: unbounded memory in every Prometheus).
 */
import { once } from 'node:events';
import { Socket } from 'node:net';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { VERSION } from '../version.ts';
import type { RequestContext } from '../http/request-context.ts';
import { parseFpmStatus } from './fpm-status.ts';
import {
  createMetrics,
  DATAGRAM_REJECT_REASONS,
  REQUEST_REJECT_REASONS,
  statusClass,
  type Metrics,
} from './metrics.ts';

type Labels = Record<string, string | number>;

function setup(): { metrics: Metrics; registry: Registry } {
  const registry = new Registry();
  return { metrics: createMetrics(registry, { defaultMetrics: false }), registry };
}

/** The value of one series (a histogram's `_count` when suffix is 'count'); undefined if absent. */
async function value(
  registry: Registry,
  name: string,
  labels: Labels = {},
  suffix: '' | 'count' | 'sum' = '',
): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`metric ${name} is not registered`);
  const data = await metric.get();
  const wanted = suffix === '' ? undefined : `${name}_${suffix}`;
  const hit = data.values.find(
    (v) =>
      (wanted === undefined || (v as { metricName?: string }).metricName === wanted) &&
      Object.entries(labels).every(([k, want]) => v.labels[k] === want) &&
      (suffix !== '' || Object.keys(v.labels).length === Object.keys(labels).length),
  );
  return hit?.value;
}

async function labelValues(registry: Registry, name: string, label: string): Promise<string[]> {
  const data = await registry.getSingleMetric(name)?.get();
  return [...new Set((data?.values ?? []).map((v) => String(v.labels[label])))].sort();
}

describe('statusClass', () => {
  it.each([
    [100, '1xx'],
    [200, '2xx'],
    [304, '3xx'],
    [499, '4xx'],
    [503, '5xx'],
    [599, '5xx'],
    [600, 'other'],
    [99, 'other'],
    [Number.NaN, 'other'],
  ])('%d -> %s', (status, cls) => {
    expect(statusClass(status)).toBe(cls);
  });
});

describe('createMetrics', () => {
  it('counts requests by kind and status class and times all but sse in the latency histogram', async () => {
    const { metrics, registry } = setup();
    metrics.onRequestDone('php', 200, 12);
    metrics.onRequestDone('php', 502, 30);
    metrics.onRequestDone('static', 304, 1);
    metrics.onRequestDone('sse', 499, 3_600_000);

    const requests = 'askr_http_requests_total';
    expect(await value(registry, requests, { kind: 'php', status_class: '2xx' })).toBe(1);
    expect(await value(registry, requests, { kind: 'php', status_class: '5xx' })).toBe(1);
    expect(await value(registry, requests, { kind: 'static', status_class: '3xx' })).toBe(1);
    expect(await value(registry, requests, { kind: 'sse', status_class: '4xx' })).toBe(1);
    expect(await value(registry, requests, { kind: 'publish', status_class: '2xx' })).toBe(0);

    const latency = 'askr_http_request_duration_seconds';
    expect(await value(registry, latency, { kind: 'php' }, 'count')).toBe(2);
    expect(await value(registry, latency, { kind: 'php' }, 'sum')).toBeCloseTo(0.042, 6);
    expect(await value(registry, latency, { kind: 'static' }, 'count')).toBe(1);
    expect(await value(registry, latency, { kind: 'sse' }, 'count')).toBeUndefined();
    expect(await value(registry, 'askr_sse_stream_duration_seconds', {}, 'count')).toBe(1);
    expect(await value(registry, 'askr_sse_stream_duration_seconds', {}, 'sum')).toBe(3600);
  });

  it('httpHooks() records the request and its upstream time from the context', async () => {
    const { metrics, registry } = setup();
    const hooks = metrics.httpHooks();
    hooks.onRequestDone({ kind: 'php', upstreamMs: 250 } as RequestContext, 200, 300);
    hooks.onRequestDone({ kind: 'static', upstreamMs: null } as RequestContext, 200, 1);
    hooks.onRejected('header_too_large');
    const upstream = 'askr_fastcgi_upstream_duration_seconds';
    expect(await value(registry, upstream, {}, 'count')).toBe(1);
    expect(await value(registry, upstream, {}, 'sum')).toBe(0.25);
    expect(
      await value(registry, 'askr_rejected_requests_total', { reason: 'header_too_large' }),
    ).toBe(1);
  });

  it('pool hooks move the FastCGI series', async () => {
    const { metrics, registry } = setup();
    const hooks = metrics.poolHooks();
    hooks.onConnectError?.(new Error('ECONNREFUSED'));
    hooks.onRetry?.();
    hooks.onRetry?.();
    hooks.onTimeout?.('queue');
    hooks.onTimeout?.('read');
    hooks.onQueueWait?.(0);
    hooks.onQueueWait?.(1500);
    expect(await value(registry, 'askr_fastcgi_connect_errors_total')).toBe(1);
    expect(await value(registry, 'askr_fastcgi_retries_total')).toBe(2);
    expect(await value(registry, 'askr_fastcgi_timeouts_total', { kind: 'queue' })).toBe(1);
    expect(await value(registry, 'askr_fastcgi_timeouts_total', { kind: 'read' })).toBe(1);
    expect(await value(registry, 'askr_fastcgi_timeouts_total', { kind: 'connect' })).toBe(0);
    expect(await value(registry, 'askr_fastcgi_queue_wait_seconds', {}, 'count')).toBe(2);
    expect(await value(registry, 'askr_fastcgi_queue_wait_seconds', {}, 'sum')).toBe(1.5);
  });

  it('hub hooks move the SSE series; deliveries to nobody add no lag sample', async () => {
    const { metrics, registry } = setup();
    const hooks = metrics.hubHooks();
    hooks.onPublish?.('datagram', 3);
    hooks.onPublish?.('http', 1);
    hooks.onDeliver?.(5, 2);
    hooks.onDeliver?.(0, 0.1);
    hooks.onSlowConsumer?.();
    hooks.onReplay?.(7);
    hooks.onReplay?.(0);
    hooks.onLost?.('epoch');
    hooks.onSubscribersChanged?.();
    const published = 'askr_events_published_total';
    expect(await value(registry, published, { ingress: 'datagram' })).toBe(1);
    expect(await value(registry, published, { ingress: 'http' })).toBe(1);
    expect(await value(registry, published, { ingress: 'grip' })).toBe(0);
    expect(await value(registry, 'askr_events_delivered_total')).toBe(5);
    expect(await value(registry, 'askr_delivery_lag_seconds', {}, 'count')).toBe(1);
    expect(await value(registry, 'askr_delivery_lag_seconds', {}, 'sum')).toBe(0.002);
    expect(await value(registry, 'askr_sse_slow_consumer_disconnects_total')).toBe(1);
    expect(await value(registry, 'askr_sse_replay_events_total')).toBe(7);
    expect(await value(registry, 'askr_sse_lost_total', { reason: 'epoch' })).toBe(1);
    expect(await value(registry, 'askr_sse_lost_total', { reason: 'too_old' })).toBe(0);
  });

  it('gauges read the bound pool and hub stats at scrape time, plus passthrough', async () => {
    const { metrics, registry } = setup();
    // Unbound sources read as zero rather than failing the scrape.
    expect(await value(registry, 'askr_fastcgi_connections_open')).toBe(0);
    let pool = { open: 3, busy: 2, idle: 1, queued: 4 };
    metrics.bindSources({ pool: () => pool });
    metrics.bindSources({
      hub: () => ({ connections: 5, channels: 2, byKind: { hold: 3, events: 2, mercure: 0 } }),
    });
    metrics.passthrough(1);
    metrics.passthrough(1);
    metrics.passthrough(-1);
    expect(await value(registry, 'askr_fastcgi_connections', { state: 'busy' })).toBe(2);
    expect(await value(registry, 'askr_fastcgi_connections', { state: 'idle' })).toBe(1);
    expect(await value(registry, 'askr_fastcgi_connections_open')).toBe(3);
    expect(await value(registry, 'askr_fastcgi_queue_length')).toBe(4);
    expect(await value(registry, 'askr_sse_connections', { kind: 'hold' })).toBe(3);
    expect(await value(registry, 'askr_sse_connections', { kind: 'events' })).toBe(2);
    expect(await value(registry, 'askr_sse_connections', { kind: 'passthrough' })).toBe(1);
    expect(await value(registry, 'askr_sse_channels')).toBe(2);
    pool = { open: 0, busy: 0, idle: 0, queued: 0 };
    expect(await value(registry, 'askr_fastcgi_connections_open')).toBe(0);
  });

  it('counts datagram rejections and FPM restarts', async () => {
    const { metrics, registry } = setup();
    metrics.onDatagramReject('bad_json');
    metrics.onDatagramReject('rejected_by_hub');
    metrics.onFpmRestart();
    const rejected = 'askr_rejected_datagrams_total';
    expect(await value(registry, rejected, { reason: 'bad_json' })).toBe(1);
    expect(await value(registry, rejected, { reason: 'rejected_by_hub' })).toBe(1);
    expect(await value(registry, rejected, { reason: 'empty' })).toBe(0);
    expect(await value(registry, 'askr_fpm_restarts_total')).toBe(1);
  });

  it('keeps label values inside their allow-lists whatever the callers pass', async () => {
    const { metrics, registry } = setup();
    const hostile = ['/admin/users/42', 'private-user.42', 'a'.repeat(500), '', 'other', '\n'];
    for (const s of hostile) {
      metrics.onRejected(s);
      metrics.onDatagramReject(s);
      // RouteKind is a closed type; the runtime guard is what keeps a bad caller bounded.
      metrics.onRequestDone(s as RequestContext['kind'], 200, 1);
    }
    metrics.onRequestDone('php', 1234, 1);
    metrics.poolHooks().onTimeout?.('weird' as 'read');
    metrics.hubHooks().onPublish?.('redis' as 'http', 1);
    metrics.hubHooks().onLost?.('nope' as 'epoch');

    expect(await labelValues(registry, 'askr_rejected_requests_total', 'reason')).toEqual(
      [...REQUEST_REJECT_REASONS].sort(),
    );
    expect(await value(registry, 'askr_rejected_requests_total', { reason: 'other' })).toBe(
      hostile.length,
    );
    expect(await labelValues(registry, 'askr_rejected_datagrams_total', 'reason')).toEqual(
      [...DATAGRAM_REJECT_REASONS].sort(),
    );
    expect(await labelValues(registry, 'askr_http_requests_total', 'kind')).toEqual(
      ['error', 'internal', 'php', 'publish', 'sse', 'static', 'upstream'].sort(),
    );
    expect(await labelValues(registry, 'askr_http_requests_total', 'status_class')).toEqual(
      ['1xx', '2xx', '3xx', '4xx', '5xx', 'other'].sort(),
    );
    expect(await labelValues(registry, 'askr_fastcgi_timeouts_total', 'kind')).toEqual(
      ['connect', 'queue', 'read', 'send'].sort(),
    );
    expect(await labelValues(registry, 'askr_events_published_total', 'ingress')).toEqual(
      ['datagram', 'grip', 'http', 'internal', 'mercure', 'whisper'].sort(),
    );
    expect(await labelValues(registry, 'askr_sse_lost_total', 'reason')).toEqual(
      ['bus', 'epoch', 'too_old', 'unknown_id'].sort(),
    );
    const text = await registry.metrics();
    expect(text).not.toContain('/admin');
    expect(text).not.toContain('private-user');
  });

  it('registers Node default metrics under their standard names unless turned off', async () => {
    const withDefaults = new Registry();
    createMetrics(withDefaults);
    const text = await withDefaults.metrics();
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(text).toMatch(/^# TYPE nodejs_active_handles gauge$/m);
    expect(text).not.toContain('askr_process_');
    const { registry } = setup();
    expect(await registry.metrics()).not.toContain('process_cpu_user_seconds_total');
  });

  it('drops the three Node gauges named *_total that promtool rejects (sum the labelled ones)', async () => {
    const withDefaults = new Registry();
    createMetrics(withDefaults);
    const text = await withDefaults.metrics();
    // A recurrence shows as: promtool check metrics exits 3, 'non-counter metrics should not
    // have "_total" suffix'.
    expect(text).not.toMatch(/^nodejs_active_(handles|requests|resources)_total/m);
    const gaugesNamedTotal = text
      .split('\n')
      .filter((l) => /^# TYPE \S+_total (gauge|histogram|summary)$/.test(l));
    expect(gaugesNamedTotal).toEqual([]);
  });

  it('exports askr_build_info = 1 with the version, git revision and Node version', async () => {
    const registry = new Registry();
    createMetrics(registry, {
      defaultMetrics: false,
      buildInfo: { version: '1.2.3', revision: 'unknown', nodeVersion: 'v24.0.0' },
    });
    expect(
      await value(registry, 'askr_build_info', {
        version: '1.2.3',
        revision: 'unknown',
        node_version: 'v24.0.0',
      }),
    ).toBe(1);
    const { registry: defaults } = setup();
    expect(await labelValues(defaults, 'askr_build_info', 'version')).toEqual([VERSION]);
    expect(await labelValues(defaults, 'askr_build_info', 'node_version')).toEqual([
      process.version,
    ]);
    expect((await labelValues(defaults, 'askr_build_info', 'revision'))[0]).toMatch(
      /^(?:[0-9a-f]{7,64}|unknown)$/,
    );
  });

  it('counts client connections: open until the socket closes, accepted for good', async () => {
    const { metrics, registry } = setup();
    const { onConnection } = metrics.httpHooks();
    // Unconnected sockets: destroy() emits 'close' as a client's disconnect does.
    const sockets = [new Socket(), new Socket(), new Socket()];
    for (const socket of sockets) onConnection(socket);
    expect(await value(registry, 'askr_http_client_connections')).toBe(3);
    for (const socket of sockets.slice(0, 2)) {
      const closed = once(socket, 'close');
      socket.destroy();
      await closed;
    }
    expect(await value(registry, 'askr_http_client_connections')).toBe(1);
    expect(await value(registry, 'askr_http_client_connections_accepted_total')).toBe(3);
    sockets[2]?.destroy();
  });

  it('refuses a second createMetrics on the same registry', () => {
    const { registry } = setup();
    expect(() => createMetrics(registry, { defaultMetrics: false })).toThrow(
      /already been registered/,
    );
  });
});

describe('parseFpmStatus', () => {
  const good = {
    pool: 'askr',
    'accepted conn': 12,
    'listen queue': 1,
    'max listen queue': 3,
    'idle processes': 1,
    'active processes': 1,
    'total processes': 2,
    'max children reached': 4,
    'slow requests': 0,
  };

  it('reads the fields of the JSON status page', () => {
    expect(parseFpmStatus(JSON.stringify(good))).toEqual({
      activeProcesses: 1,
      idleProcesses: 1,
      totalProcesses: 2,
      listenQueue: 1,
      maxListenQueue: 3,
      maxChildrenReached: 4,
      slowRequests: 0,
      acceptedConnections: 12,
    });
  });

  it.each([
    ['not JSON', 'File not found.', /not JSON/],
    ['an array', '[]', /not an object/],
    [
      'a missing field',
      JSON.stringify({ ...good, 'total processes': undefined }),
      /total processes/,
    ],
    ['a string field', JSON.stringify({ ...good, 'listen queue': '1' }), /listen queue/],
    ['a negative total', JSON.stringify({ ...good, 'accepted conn': -1 }), /accepted conn/],
  ])('reports %s', (_name, body, message) => {
    const result = parseFpmStatus(body);
    expect(typeof result).toBe('string');
    expect(result).toMatch(message);
  });
});
