/**
 * `askr-sidecar relay`: the datagram socket alone, forwarding every publish to the cluster bus,
 * for containers that run PHP but no sidecar (queue workers, the scheduler). The PHP shim talks
 * to it exactly as to a sidecar. While Redis is away it keeps up to `cluster.relay_buffer` events
 * (the oldest dropped and counted beyond that) and sends them in order once Redis is back.
 * Invariant: events leave in the order they arrived; nothing from a publisher or Redis crashes it.
 */
import type { Logger } from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import type { SidecarConfig } from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import { namingListenKey } from '../http/listen.ts';
import {
  ingressSettings,
  startDatagramIngress,
  type DatagramIngress,
} from '../broadcast/datagram-ingress.ts';
import type { DatagramMessage } from '../broadcast/datagram-codec.ts';
import { startAdminServer, unixSocketPresent } from '../observability/admin-server.ts';
import { registerBuildInfo, registerNodeMetrics } from '../observability/metrics.ts';
import { RateLimitedLog } from '../observability/rate-limited-log.ts';
import { defaultNodeId, RedisBus } from './redis-bus.ts';

export interface Relay {
  readonly socketPath: string;
  readonly adminUrl: string | null;
  /** Events waiting for Redis. */
  buffered(): number;
  close(): Promise<void>;
}

/** Starts the relay; `socketPath` is the datagram socket to bind (already made usable). */
export async function startRelay(
  config: SidecarConfig,
  socketPath: string,
  logger: Logger,
): Promise<Relay> {
  if (config.cluster.redis_url === '') {
    throw new ConfigError(
      'askr-sidecar relay needs cluster.redis_url (or ASKR_CLUSTER_REDIS_URL, or --redis): it forwards to the cluster',
    );
  }
  if (socketPath === '') {
    throw new ConfigError(
      'askr-sidecar relay needs broadcast.socket: it is the socket PHP writes to',
    );
  }
  const registry = new Registry();
  registerNodeMetrics(registry);
  registerBuildInfo(registry);
  const forwarded = new Counter({
    name: 'askr_relay_forwarded_total',
    help: 'Events the relay sent to the cluster bus.',
    registers: [registry],
  });
  const dropped = new Counter({
    name: 'askr_relay_dropped_total',
    help: 'Events the relay dropped because its buffer (cluster.relay_buffer) was full while Redis was away.',
    registers: [registry],
  });
  const rejected = new Counter({
    name: 'askr_rejected_datagrams_total',
    help: 'Datagrams rejected by the ingress, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const buffer: DatagramMessage[] = [];
  const bufferGauge: Gauge = new Gauge({
    name: 'askr_relay_buffered',
    help: 'Events waiting for Redis.',
    registers: [registry],
    collect: () => bufferGauge.set(buffer.length),
  });
  const busUp: Gauge = new Gauge({
    name: 'askr_cluster_bus_up',
    help: '1 while the Redis cluster bus is connected.',
    registers: [registry],
  });
  const dropLog = new RateLimitedLog(logger, 'warn', 10_000);
  let flushing = false;

  const bus = new RedisBus({
    url: config.cluster.redis_url,
    keyPrefix: config.cluster.key_prefix,
    nodeId: config.cluster.node_id === '' ? `relay-${defaultNodeId()}` : config.cluster.node_id,
    historySize: () => config.sse.history_size,
    historyMaxAgeMs: () => config.sse.history_max_age,
    onEvent: () => undefined, // a relay only publishes
    onState: (state, info) => {
      busUp.set(state === 'up' ? 1 : 0);
      if (state === 'up') {
        logger.info(
          { epoch: info.epoch, buffered: buffer.length },
          'relay: connected to the cluster',
        );
        void flush();
      } else if (state === 'down') {
        logger.warn({ error: info.error }, 'relay: lost Redis; buffering events until it is back');
      }
    },
  });

  /** Sends buffered events in order, one at a time, while the bus is up. */
  async function flush(): Promise<void> {
    if (flushing) return;
    flushing = true;
    try {
      while (buffer.length > 0 && bus.state === 'up') {
        const next = buffer[0] as DatagramMessage;
        try {
          await bus.publish({
            channels: next.channels,
            data: next.data,
            event: next.event,
            publisherId: next.id,
            socket: next.socket,
            close: next.close,
          });
        } catch {
          return; // down again: the event stays first in line
        }
        buffer.shift();
        forwarded.inc();
      }
    } finally {
      flushing = false;
    }
  }

  function enqueue(message: DatagramMessage): void {
    const max = config.cluster.relay_buffer;
    if (max === 0) {
      dropped.inc();
      dropLog.log(
        { buffer: max },
        'relay: Redis is away and cluster.relay_buffer is 0: event dropped',
      );
      return;
    }
    if (buffer.length >= max) {
      buffer.shift();
      dropped.inc();
      dropLog.log(
        { buffer: max },
        'relay: buffer full while Redis is away (cluster.relay_buffer): oldest events dropped',
      );
    }
    buffer.push(message);
  }

  await bus.start(3000);
  let ingress: DatagramIngress;
  try {
    ingress = await namingListenKey(
      'broadcast.socket',
      socketPath,
      startDatagramIngress({
        path: socketPath,
        ...ingressSettings(config),
        logger,
        onReject: (reason) => rejected.inc({ reason }),
        onMessage: (message) => {
          // Order: while anything waits, new events wait behind it.
          enqueue(message);
          if (bus.state === 'up') void flush();
        },
      }),
    );
  } catch (err) {
    await bus.close();
    throw err;
  }
  const admin = config.metrics.enabled
    ? await startAdminServer({
        listen: config.metrics.listen,
        registry,
        logger,
        checks: { datagram_socket: () => unixSocketPresent(ingress.path) },
        degraded: {
          cluster: () =>
            Promise.resolve(
              bus.state === 'up'
                ? null
                : `cluster bus (Redis) ${bus.state}: ${bus.lastError}; ${buffer.length} events buffered`,
            ),
        },
      })
    : null;
  logger.info(
    { socket: ingress.path, metrics: admin?.url ?? null, bus: bus.state },
    'askr-sidecar relay: forwarding datagrams to the cluster',
  );
  return {
    socketPath: ingress.path,
    adminUrl: admin?.url ?? null,
    buffered: () => buffer.length,
    async close(): Promise<void> {
      await ingress.close();
      // What is still waiting goes out if Redis is there to take it.
      await flush();
      if (buffer.length > 0) {
        logger.warn({ lost: buffer.length }, 'relay: stopping with events Redis never took');
      }
      await bus.close();
      await admin?.close();
    },
  };
}
