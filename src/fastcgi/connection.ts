/**
 * One socket to PHP-FPM. It owns the socket listeners and the record decoder for the socket's
 * whole life and routes records to the exchange (request) currently running on it, if any.
 * Invariants: at most one exchange at a time (FPM never multiplexes); no socket event handler
 * throws, whatever the peer sends; `onClose` is called exactly once, when the socket is gone.
 * Reads land in one buffer shared by every FPM socket (net's `onread`: no stream machinery and
 * no allocation per read); a record's content is a view into it, valid only while the record is
 * handled, so whatever outlives that (STDOUT, STDERR) is copied by the exchange.
 */
import net from 'node:net';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { parseFcgiAddress } from './address.ts';
import { RecordType } from './constants.ts';
import { Exchange, type ExchangeInit, type ExchangeListener } from './exchange.ts';
import { READ_BUFFER } from './read-buffer.ts';
import { RecordDecoder, type FcgiRecord } from './record-codec.ts';

/** The error for a socket that went away before END_REQUEST. */
export function connectionClosedError(cause?: Error): SidecarError {
  const errno = (cause as NodeJS.ErrnoException | undefined)?.code;
  return new SidecarError(
    ErrorCodes.FCGI_CONNECTION_CLOSED,
    `FPM closed the connection before END_REQUEST (worker killed or request_terminate_timeout?)${errno === undefined ? '' : ` [${errno}]`}`,
    { cause },
  );
}

export class FcgiConnection {
  readonly socket: net.Socket;
  readonly address: string;
  /** Exchanges that ended with END_REQUEST on this socket; above 0 it is a reused connection. */
  requestsCompleted = 0;
  /** Called once when the socket is closed or destroyed, for whatever reason. */
  onClose: ((connection: FcgiConnection) => void) | null = null;
  #exchange: Exchange | null = null;
  #closed = false;
  readonly #decoder: RecordDecoder;

  /**
   * Open a socket. Rejects with SidecarError FCGI_CONNECT (502; message has the address and
   * errno) or FCGI_TIMEOUT (504) after timeoutMs. Throws ConfigError on a malformed address.
   */
  static connect(address: string, timeoutMs: number): Promise<FcgiConnection> {
    const target = parseFcgiAddress(address);
    return new Promise((resolve, reject) => {
      let connection: FcgiConnection | null = null;
      const onread = {
        buffer: READ_BUFFER,
        callback: (bytes: number): boolean => {
          // Nothing arrives before 'connect' (we have sent nothing yet); guard anyway.
          if (connection !== null) connection.#onData(READ_BUFFER.subarray(0, bytes));
          return true; // false would pause the socket; the exchange pauses it when it must
        },
      };
      const socket =
        target.kind === 'unix'
          ? net.connect({ path: target.path, onread })
          : net.connect({ host: target.host, port: target.port, noDelay: true, onread });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new SidecarError(
            ErrorCodes.FCGI_TIMEOUT,
            `connect timeout: no connection to FastCGI at ${address} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const onError = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        reject(
          new SidecarError(
            ErrorCodes.FCGI_CONNECT,
            `cannot connect to FastCGI at ${address}: ${err.code ?? err.message}`,
            { cause: err },
          ),
        );
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        connection = new FcgiConnection(socket, address);
        resolve(connection);
      });
    });
  }

  private constructor(socket: net.Socket, address: string) {
    this.socket = socket;
    this.address = address;
    this.#decoder = new RecordDecoder((record) => this.#onRecord(record));
    socket.on('drain', () => this.#exchange?.onDrain());
    socket.on('end', () => this.destroy(connectionClosedError()));
    socket.on('error', (err) => this.destroy(connectionClosedError(err)));
    socket.on('close', () => this.destroy(connectionClosedError()));
  }

  get closed(): boolean {
    return this.#closed;
  }

  get busy(): boolean {
    return this.#exchange !== null;
  }

  /**
   * Run one request on this socket. The listener hears exactly one of onEnd / onError, after
   * at most one onStart. `allowRetry` says whether a failure before any byte may be retried.
   */
  startExchange(init: ExchangeInit, listener: ExchangeListener, allowRetry: boolean): Exchange {
    if (this.#exchange !== null) throw new Error('FcgiConnection: exchange already running');
    const exchange = new Exchange(this, init, listener, allowRetry && this.requestsCompleted > 0);
    if (this.#closed) {
      // Died between release and reuse: fail like any dead pooled socket, but after the caller
      // got its Exchange back.
      queueMicrotask(() => exchange.fail(connectionClosedError()));
      return exchange;
    }
    this.socket.ref();
    this.#exchange = exchange;
    exchange.start();
    return exchange;
  }

  /** Called by the exchange at END_REQUEST: detach it, keep the socket only if reusable. */
  finishExchange(exchange: Exchange, reusable: boolean): void {
    if (this.#exchange !== exchange) return;
    this.#exchange = null;
    this.requestsCompleted += 1;
    if (!reusable) {
      this.destroy();
      return;
    }
    // The consumer's backpressure may have paused the socket; an idle socket must keep
    // reading so that FPM closing it is noticed at once.
    this.socket.resume();
  }

  /**
   * Destroy the socket. With an error, the running exchange (if any) fails with it. Idempotent.
   */
  destroy(err?: SidecarError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
    const exchange = this.#exchange;
    this.#exchange = null;
    exchange?.fail(err ?? connectionClosedError());
    this.onClose?.(this);
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    this.#exchange?.onBytes(chunk.length);
    try {
      this.#decoder.push(chunk);
    } catch (err) {
      // A bad version byte, a malformed END_REQUEST, a record on the wrong request id: the
      // byte stream can no longer be trusted, so the socket goes.
      this.destroy(
        err instanceof SidecarError
          ? err
          : new SidecarError(ErrorCodes.FCGI_PROTOCOL, 'bad FastCGI record', { cause: err }),
      );
    }
  }

  #onRecord(record: FcgiRecord): void {
    if (this.#closed) return;
    if (this.#exchange !== null) {
      this.#exchange.onRecord(record);
      return;
    }
    // GET_VALUES_RESULT / UNKNOWN_TYPE answer management records we never send; a stray one
    // is harmless. Anything else on an idle socket means it is out of step: drop it.
    if (
      record.type === RecordType.FCGI_GET_VALUES_RESULT ||
      record.type === RecordType.FCGI_UNKNOWN_TYPE
    ) {
      return;
    }
    this.destroy();
  }
}
