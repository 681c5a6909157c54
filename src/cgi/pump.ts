/**
 * Writes a response body to a client at the client's pace: waits for 'drain' whenever a write
 * is not taken at once, and closes a client that has not taken a write for `sendTimeoutMs`
 * (nginx send_timeout: the time between two successful writes, not the whole transfer).
 * Invariant: never more than one write pending beyond the sink's high-water mark.
 */
import type { Writable } from 'node:stream';
import { ErrorCodes, SidecarError } from '../errors.ts';

/** The next body bytes, or null at the end. */
export type BodyReader = () => Promise<Buffer | null>;

/** A BodyReader over an async iterator. */
export function readerOf(iterator: AsyncIterator<Buffer>): BodyReader {
  return async () => {
    const next = await iterator.next();
    return next.done === true ? null : next.value;
  };
}

export interface PumpOptions {
  /** Longest wait for the client to take a write; then it is destroyed (SEND_TIMEOUT). */
  sendTimeoutMs: number;
  /** The sink was closed because of the send timeout (metrics, log). */
  onSendTimeout?(): void;
}

/**
 * Copies `first` then everything `read` yields into `sink`. Rejects with CLIENT_GONE when the
 * client closes, SEND_TIMEOUT when it stops reading, or the reader's own error.
 */
export async function pump(
  sink: Writable,
  first: Buffer,
  read: BodyReader,
  options: PumpOptions,
): Promise<void> {
  if (first.length > 0 && !sink.write(first)) await drained(sink, options);
  for (;;) {
    const chunk = await read();
    if (chunk === null) return;
    if (sink.destroyed) throw clientGone();
    if (!sink.write(chunk)) await drained(sink, options);
  }
}

function clientGone(): SidecarError {
  return new SidecarError(ErrorCodes.CLIENT_GONE, 'client connection closed');
}

/** Resolves on 'drain'; rejects when the sink closes or the send timeout passes. */
export function drained(sink: Writable, options: PumpOptions): Promise<void> {
  if (sink.destroyed) return Promise.reject(clientGone());
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      sink.off('drain', onDrain);
      sink.off('close', onClose);
    };
    const onDrain = (): void => {
      done();
      resolve();
    };
    const onClose = (): void => {
      done();
      reject(clientGone());
    };
    const timer = setTimeout(() => {
      done();
      options.onSendTimeout?.();
      sink.destroy();
      reject(
        new SidecarError(
          ErrorCodes.SEND_TIMEOUT,
          `the client took no data for ${options.sendTimeoutMs} ms (server.send_timeout)`,
        ),
      );
    }, options.sendTimeoutMs);
    sink.once('drain', onDrain);
    sink.once('close', onClose);
  });
}
