/**
 * The hub's options from the [sse] section: the one mapping used at start (`new Hub`) and at
 * reload (`hub.reconfigure`), so a key cannot be honoured at one and forgotten at the other.
 * Pure: config values in, hub options out (durations already in ms, sizes in bytes).
 */
import type { SidecarConfig } from '../config/schema.ts';
import { checkHubTunables, type HubTunables } from './hub.ts';

/** The reloadable hub options of a config (every key the hub takes except its state and hooks). */
export type HubConfigOptions = Required<Omit<HubTunables, 'sweepIntervalMs'>>;

/**
 * Maps `[sse]` to the hub's limits, intervals and history bounds.
 * @throws ConfigError for a value the hub refuses (nothing is applied anywhere then).
 */
export function hubOptionsFrom(config: Pick<SidecarConfig, 'sse'>): HubConfigOptions {
  const sse = config.sse;
  const options: HubConfigOptions = {
    historySize: sse.history_size,
    historyMaxAgeMs: sse.history_max_age,
    subscriberQueueBytes: sse.subscriber_queue_size,
    heartbeatIntervalMs: sse.heartbeat_interval,
    maxLifetimeMs: sse.max_lifetime,
    idleTimeoutMs: sse.idle_timeout,
    retryMs: sse.retry,
    maxConnections: sse.max_connections,
    maxConnectionsPerIp: sse.max_connections_per_ip,
  };
  checkHubTunables(options);
  return options;
}
