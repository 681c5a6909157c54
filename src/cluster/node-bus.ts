/**
 * This node's event bus and what hangs off it: the hub alone (LocalBus) on a single node, or a
 * cluster node on Redis with cluster-wide presence, one liveness heartbeat shared by presence and
 * the Mercure subscription mirror, and that mirror. One place decides which, from keys that need
 * a restart (cluster.*, mercure.enabled, mercure.subscriptions), so main.ts wires the result only.
 */
import type { Logger } from 'pino';
import type { SidecarConfig } from '../config/schema.ts';
import { SubscriptionRegistry } from '../mercure/subscriptions.ts';
import { LocalBus, type EventBus } from '../sse/event-bus.ts';
import type { Hub, PublishFn, SharedHistoryFn } from '../sse/hub.ts';
import { PresenceRegistry, type Presence } from '../sse/presence.ts';
import { ClusterNode, type ClusterHooks } from './cluster-node.ts';
import { ClusterPresence } from './cluster-presence.ts';
import { ClusterSubscriptions } from './cluster-subscriptions.ts';
import { NodeLiveness } from './node-liveness.ts';
import { defaultNodeId } from './redis-bus.ts';

export interface NodeBusOptions {
  /** The config at start: which bus, and its restart keys. */
  config: SidecarConfig;
  /** The config in effect (history bounds and mercure.path are read live). */
  live: () => SidecarConfig;
  hub: Hub;
  /** Called once, in a cluster only: registers the cluster metrics and returns their hooks. */
  clusterHooks: () => ClusterHooks;
  /** True when sse.state_file restored a history, which a cluster ignores (a warning says so). */
  restoredState: boolean;
  logger: Logger;
}

export interface NodeBus {
  readonly bus: EventBus;
  readonly publish: PublishFn;
  readonly sharedHistory: SharedHistoryFn;
  readonly presence: Presence;
  readonly mercureRegistry: SubscriptionRegistry;
  /** True on a cluster node (its readiness reports the bus as degraded while Redis is away). */
  readonly clustered: boolean;
  /** Shutdown, streams closing: this node's presence members leave (announced in a cluster). */
  leave(): Promise<void>;
  /** Shutdown, after the streams closed: the subscription mirror, then the bus. */
  close(): Promise<void>;
}

/** Starts the bus (in a cluster: connects to Redis) and what depends on it. */
export async function startNodeBus(options: NodeBusOptions): Promise<NodeBus> {
  const { config, live, hub, logger } = options;
  // Several sidecars: every publish goes through Redis and comes back numbered in cluster order.
  const cluster =
    config.cluster.redis_url === ''
      ? null
      : new ClusterNode({
          url: config.cluster.redis_url,
          keyPrefix: config.cluster.key_prefix,
          nodeId: config.cluster.node_id === '' ? defaultNodeId() : config.cluster.node_id,
          hub,
          historySize: () => live().sse.history_size,
          historyMaxAgeMs: () => live().sse.history_max_age,
          logger,
          hooks: options.clusterHooks(),
        });
  if (cluster !== null) {
    if (options.restoredState) {
      logger.warn('sse.state_file is ignored in a cluster: history and ids live in Redis');
    }
    await cluster.start();
  }
  const bus: EventBus = cluster ?? new LocalBus(hub);
  const publish: PublishFn = (input) => bus.publish(input);
  const sharedHistory: SharedHistoryFn = (channels, lastEventId) =>
    bus.sharedHistory(channels, lastEventId);
  const mercureRegistry = new SubscriptionRegistry({
    hubPath: () => live().mercure.path,
    publish,
    logger,
    ...(cluster === null ? {} : { nodeId: cluster.nodeId }),
  });
  if (cluster === null) {
    const presence = new PresenceRegistry(hub, publish);
    return {
      bus,
      publish,
      sharedHistory,
      presence,
      mercureRegistry,
      clustered: false,
      leave: () => {
        presence.close();
        return Promise.resolve();
      },
      close: () => bus.close(),
    };
  }

  // One liveness key per node and one heartbeat: presence and the Mercure mirror sweep on it.
  const liveness = new NodeLiveness({
    bus: cluster.bus,
    nodeId: cluster.nodeId,
    ttlMs: config.cluster.presence_ttl,
    logger,
  });
  const presence = new ClusterPresence({
    bus: cluster.bus,
    hub,
    publish,
    keyPrefix: config.cluster.key_prefix,
    nodeId: cluster.nodeId,
    ttlMs: config.cluster.presence_ttl,
    logger,
    liveness,
  });
  cluster.observer = (event) => {
    presence.observe(event);
    mercureRegistry.observe(event);
  };
  // The registry's own subscriptions kept in Redis: listed by nodes that start later, ended
  // (active: false) by a live node when this one dies.
  let mirror: ClusterSubscriptions | null = null;
  if (config.mercure.enabled && config.mercure.subscriptions) {
    const started = new ClusterSubscriptions({
      bus: cluster.bus,
      keyPrefix: config.cluster.key_prefix,
      liveness,
      registry: mercureRegistry,
      logger,
    });
    cluster.onBusUp = () => started.resume();
    mirror = started;
  }
  return {
    bus,
    publish,
    sharedHistory,
    presence,
    mercureRegistry,
    clustered: true,
    leave: () => presence.leaveAll(),
    close: async () => {
      // The subscription ends of the streams just closed reach Redis and the bus first.
      await mirror?.close();
      await bus.close();
    },
  };
}
