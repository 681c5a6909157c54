/**
 * Stream admission: sse.max_connections and sse.max_connections_per_ip, counted over open streams
 * and places reserved for streams still waiting (channel auth, the response head). A place is
 * taken synchronously where a stream is added, so no burst of concurrent connects can overtake
 * the limits while they wait.
 * Invariants: every counted place is given back exactly once (release, the sink's 'close', or the
 * stream leaving); nothing here writes to a sink.
 */
import { ErrorCodes, SidecarError } from '../errors.ts';

/** A place for one stream, taken by {@link Admission.reserve} before the stream can start. */
export interface StreamSlot {
  readonly clientIp: string;
  /** Gives the place back; a no-op once released or taken by a stream. */
  release(): void;
}

/** What admission needs of a sink: whether it is gone, and its 'close'. */
export interface AdmissionSink {
  readonly destroyed: boolean;
  once(event: 'close', listener: () => void): unknown;
}

export interface AdmissionLimits {
  maxConnections: number;
  maxConnectionsPerIp: number;
}

const noop = (): void => {};

export class Admission {
  readonly #limits: () => AdmissionLimits;
  /** Streams and reserved slots per client address. */
  readonly #perIp = new Map<string, number>();
  /** Places taken by reserve() and not yet entered or released, by the sink they are for. */
  readonly #slots = new Map<AdmissionSink, StreamSlot>();
  #streams = 0;
  /** Set on shutdown: every new place is refused. */
  draining = false;

  constructor(limits: () => AdmissionLimits) {
    this.#limits = limits;
  }

  /** Open streams (reserved places not included). */
  get streams(): number {
    return this.#streams;
  }

  /** Why a new stream from `clientIp` would be refused now, else null (advisory). */
  problem(clientIp: string): string | null {
    if (this.draining) return 'the sidecar is shutting down';
    return this.#limitProblem(clientIp);
  }

  #limitProblem(clientIp: string): string | null {
    const { maxConnections, maxConnectionsPerIp } = this.#limits();
    if (this.#streams + this.#slots.size >= maxConnections) {
      return `too many streams: ${maxConnections} (sse.max_connections)`;
    }
    if ((this.#perIp.get(clientIp) ?? 0) >= maxConnectionsPerIp) {
      return `too many streams from ${clientIp}: ${maxConnectionsPerIp} (sse.max_connections_per_ip)`;
    }
    return null;
  }

  /**
   * Takes a place now for the stream `sink` will carry; the sink's 'close' gives it back unless
   * a stream entered with it. A second reserve() for the same sink returns the same slot.
   * @throws SidecarError(LIMIT) naming the config key, or while draining.
   */
  reserve(sink: AdmissionSink, clientIp: string): StreamSlot {
    const existing = this.#slots.get(sink);
    if (existing !== undefined) return existing;
    const problem = this.problem(clientIp);
    if (problem !== null) throw new SidecarError(ErrorCodes.LIMIT, problem);
    // A sink already closed will not emit 'close' again: its place would never come back.
    if (sink.destroyed) return { clientIp, release: noop };
    this.#countIp(clientIp, 1);
    const slot: StreamSlot = {
      clientIp,
      release: () => {
        if (this.#slots.get(sink) !== slot) return;
        this.#slots.delete(sink);
        this.#countIp(clientIp, -1);
      },
    };
    this.#slots.set(sink, slot);
    sink.once('close', () => slot.release());
    return slot;
  }

  /**
   * A stream is about to start on `sink`: it takes the sink's reserved place, or one checked
   * against the limits now (a drain does not refuse here: the caller ends such a stream with a
   * retry hint). Returns false, counting nothing, when `starts` is false (the sink is gone or the
   * hub drains); call leave() once a stream that entered ends.
   * @throws SidecarError(LIMIT) when the sink has no slot and a limit is reached.
   */
  enter(sink: AdmissionSink, clientIp: string, starts: boolean): boolean {
    const slot = this.#slots.get(sink);
    if (slot !== undefined) {
      this.#slots.delete(sink);
      this.#countIp(slot.clientIp, -1);
    } else {
      const problem = this.#limitProblem(clientIp);
      if (problem !== null) throw new SidecarError(ErrorCodes.LIMIT, problem);
    }
    if (!starts) return false;
    this.#streams++;
    this.#countIp(clientIp, 1);
    return true;
  }

  /** A stream that entered has ended. */
  leave(clientIp: string): void {
    this.#streams--;
    this.#countIp(clientIp, -1);
  }

  #countIp(clientIp: string, delta: 1 | -1): void {
    const count = (this.#perIp.get(clientIp) ?? 0) + delta;
    if (count <= 0) this.#perIp.delete(clientIp);
    else this.#perIp.set(clientIp, count);
  }
}
