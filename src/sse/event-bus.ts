/**
 * How events enter the hubs, the seam between one node and a cluster: `LocalBus` hands a publish
 * to this process's hub; the cluster's implementation (src/cluster/cluster-node.ts) sends it
 * through Redis so every sidecar's hub gets it, numbered in the cluster's order, and reads the
 * shared history for resumes this node did not see live. Ingresses (datagram socket, HTTP
 * publish, presence) only know this interface.
 */
import type { Hub, PublishInput, PublishResult, SharedHistory } from './hub.ts';

export interface EventBus {
  /** Publishes one event. Throws as Hub.publish for bad input (SSE_ENCODE, BAD_REQUEST). */
  publish(input: PublishInput): Promise<PublishResult>;
  /** The events a stream resuming from `lastEventId` needs that this node never held, if any. */
  sharedHistory(
    channels: readonly string[],
    lastEventId: string | null | undefined,
  ): Promise<SharedHistory | undefined>;
  /** Null when healthy, else why events are not shared right now (readiness: degraded). */
  degraded(): string | null;
  close(): Promise<void>;
}

/** One node: the hub numbers, stores and delivers every event itself. */
export class LocalBus implements EventBus {
  readonly #hub: Hub;

  constructor(hub: Hub) {
    this.#hub = hub;
  }

  publish(input: PublishInput): Promise<PublishResult> {
    return Promise.resolve(this.#hub.publish(input));
  }

  sharedHistory(): Promise<SharedHistory | undefined> {
    return Promise.resolve(undefined);
  }

  degraded(): string | null {
    return null;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
