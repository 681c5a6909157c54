/**
 * The read buffer every FPM socket reads into (net's `onread`: no stream machinery and no
 * allocation per read), and how bytes are kept beyond the read that brought them. Safe to share:
 * each read is decoded synchronously, to the end, before the event loop performs the next one.
 */

/** Bytes per read; FPM's records carry at most 65535 content bytes. */
export const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * `bytes` as a Buffer that outlives the current read: a copy when they are a view into
 * READ_BUFFER (the next read overwrites them), else `bytes` itself (a record that straddled
 * reads was already gathered into a Buffer of its own).
 */
export function keepable(bytes: Buffer): Buffer {
  return bytes.buffer === READ_BUFFER.buffer ? Buffer.from(bytes) : bytes;
}
