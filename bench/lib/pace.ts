/**
 * A publish-rate step of bench:sse and bench:cluster: events 0..total-1 are published at `rate`/s
 * (open loop: due events are sent whether or not the earlier ones were answered); more than a
 * second of events waiting for answers ends the step early, as failed. Then the counts every step
 * reports, and whether it kept up.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** A publisher's running counts (bench/sse/publisher.ts). */
export interface PublishCounts {
  readonly accepted: number;
  readonly failed: number;
}

/** What a paced publish did. */
export interface Paced {
  accepted: number;
  failed: number;
  /** Publishes accepted per second, over the time until the last one was answered. */
  achieved: number;
  /** Over a second of events waited for answers: the step ended early. */
  gaveUp: boolean;
}

/** The counts every rate step reports. */
export interface StepCounts {
  rate: number;
  /** Publishes accepted per second, over the time until the last one was answered. */
  achieved: number;
  accepted: number;
  failed: number;
  expected: number;
  received: number;
}

/** Deliveries seen by the subscribers during a step. */
export interface Delivered {
  events: number;
  latency: { p99: number };
}

/**
 * Publishes `total` events through `publish` (called with 0, 1, ...) at `rate`/s, then waits for
 * the answers (at most 5 s after the last one); accepted and failed are `counts`' growth.
 */
export async function pacedPublish(
  counts: PublishCounts,
  publish: (seq: number) => Promise<unknown>,
  rate: number,
  total: number,
): Promise<Paced> {
  const acceptedBefore = counts.accepted;
  const failedBefore = counts.failed;
  const start = performance.now();
  let sent = 0;
  let done = 0;
  let lastAck = start;
  let gaveUp = false;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    if (due - done > rate) {
      gaveUp = true; // over a second of events waits for answers: the servers do not keep up
      break;
    }
    while (sent < due) {
      void publish(sent++).then(() => {
        done++;
        lastAck = performance.now();
      });
    }
    await sleep(1);
  }
  while (done < sent && performance.now() - lastAck < 5000) await sleep(5);
  const accepted = counts.accepted - acceptedBefore;
  return {
    accepted,
    failed: counts.failed - failedBefore,
    achieved: (accepted * 1000) / Math.max(1, lastAck - start),
    gaveUp,
  };
}

/** A step's counts: `expected` deliveries (events x streams), `received` of them. */
export function stepCounts(
  rate: number,
  paced: Paced,
  expected: number,
  received: number,
): StepCounts {
  const { achieved, accepted, failed } = paced;
  return { rate, achieved, accepted, failed, expected, received };
}

/**
 * A step kept up when it ran to the end, no publish failed, every event reached every stream, at
 * least 95 % of the rate was accepted and the p99 delivery latency stayed within `maxP99Ms`.
 */
export function keptUp(
  rate: number,
  paced: Paced,
  expected: number,
  delivered: Delivered,
  maxP99Ms: number,
): boolean {
  return (
    !paced.gaveUp &&
    paced.failed === 0 &&
    delivered.events === expected &&
    paced.achieved >= rate * 0.95 &&
    delivered.latency.p99 <= maxP99Ms
  );
}
