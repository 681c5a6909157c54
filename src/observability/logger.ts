/**
 * pino logger construction and its output. The logger is created once in the CLI and passed down;
 * nothing here is a module-level singleton. (Rate-limited warnings live where they are counted: the
 * datagram ingress and the hub.)
 *
 * Output (issue 13, item 3): pino's asynchronous destination (sonic-boom) with batching, so a
 * request does not pay a write(2) per access line:
 *
 *   line -> [ buffer: written once it holds log.buffer bytes, or every log.flush_interval ]
 *           -> fs.write (libuv pool)          warn and above: written at once
 *   buffer > log.max_buffer (stdout blocked) -> the line is dropped, counted
 *           (askr_log_dropped_lines_total), and one warning says how many once output resumes
 *
 * Nothing is lost on a graceful stop (`flush()`), on `process.exit` (pino flushes synchronously on
 * 'exit') nor on a fatal start error (`flushSync()`).
 */
import { pino, type Logger, type DestinationStream } from 'pino';
import { Counter, type Registry } from 'prom-client';

export type { Logger };

/** The `[log]` keys that shape the output (sizes in bytes, interval in ms). */
export interface LogOutputOptions {
  /** Bytes gathered before a write; 0 writes each line as soon as the previous write is done. */
  buffer: number;
  /** Longest a buffered line waits before it is written, ms. */
  flush_interval: number;
  /** Bytes buffered at most while the output is blocked; beyond, lines are dropped. 0: no bound. */
  max_buffer: number;
}

/** An asynchronous, batched log output on a file descriptor (stdout by default). */
export interface LogOutput {
  readonly stream: ReturnType<typeof pino.destination>;
  /** Lines dropped because the output was blocked past `max_buffer`, since the start. */
  droppedLines(): number;
  /** Writes everything buffered; resolves once it is written (graceful stop). */
  flush(): Promise<void>;
  /** Writes everything buffered synchronously: for paths that exit without an event loop. */
  flushSync(): void;
  /** Called once output resumes after drops, with how many lines that episode lost. */
  onDropsEnded: ((dropped: number) => void) | null;
}

/** sonic-boom's largest single write (its `maxWrite` default); `buffer` must stay below it. */
const MAX_WRITE_BYTES = 16 * 1024;

/** Longest a graceful stop waits for the buffered lines to be written, ms. */
const FLUSH_WAIT_MS = 5000;

/** Builds the batched asynchronous output. `fd` is 1 (stdout) except in tests. */
export function createLogOutput(options: LogOutputOptions, fd = 1): LogOutput {
  const stream = pino.destination({
    dest: fd,
    sync: false,
    minLength: Math.min(options.buffer, MAX_WRITE_BYTES - 1),
    maxLength: options.max_buffer,
    periodicFlush: options.flush_interval,
  });
  // sonic-boom's flush() does nothing while a write is in flight, leaving what came meanwhile (less
  // than `buffer`) to the interval. A flush asked for then is done once that write is over
  // ('drain'); at worst one extra, possibly empty, write.
  const flushNow = stream.flush.bind(stream);
  let flushAsked = false;
  stream.flush = (cb?: (err?: Error) => void): void => {
    flushAsked = true;
    flushNow(cb);
  };
  stream.on('drain', () => {
    if (!flushAsked) return;
    flushAsked = false;
    flushNow();
  });
  let dropped = 0;
  let episode = 0;
  const output: LogOutput = {
    stream,
    droppedLines: () => dropped,
    flush: () =>
      new Promise<void>((resolve) => {
        // A stalled reader must not hold the stop forever: after FLUSH_WAIT_MS the stop goes on
        // (pino still tries once more, synchronously, on 'exit').
        setTimeout(resolve, FLUSH_WAIT_MS).unref();
        // The callback comes on 'drain' after an fsync, whose error (EINVAL on a pipe or a tty)
        // says nothing about the lines: they were written. What came in meanwhile (at most
        // `buffer` bytes) is written synchronously, in order, now that no write is in flight.
        flushNow(() => {
          output.flushSync();
          resolve();
        });
      }),
    flushSync: () => {
      stream.flushSync();
    },
    onDropsEnded: null,
  };
  stream.on('drop', () => {
    dropped += 1;
    episode += 1;
  });
  // 'write': a write completed, so the output moves again; report the episode once.
  stream.on('write', () => {
    if (episode === 0) return;
    const lost = episode;
    episode = 0;
    output.onDropsEnded?.(lost);
  });
  return output;
}

/** pino's numeric level of `warn`. */
const WARN_LEVEL = 40;

/** The logger: `destination` is a `createLogOutput` (batched), any pino stream, or stdout. */
export function createLogger(level: string, destination?: DestinationStream | LogOutput): Logger {
  const output = destination !== undefined && 'droppedLines' in destination ? destination : null;
  const stream = output === null ? (destination as DestinationStream | undefined) : output.stream;
  const logger = pino(
    {
      level,
      base: { service: 'askr-sidecar' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        // A warning or an error is written at once, not after the batch interval.
        logMethod(args, method, levelValue) {
          method.apply(this, args);
          if (output !== null && levelValue >= WARN_LEVEL) output.stream.flush();
        },
      },
    },
    stream ?? pino.destination({ dest: 1, sync: false }),
  );
  if (output !== null) {
    output.onDropsEnded = (lost) => {
      logger.warn({ dropped: lost }, 'log output was blocked: lines dropped');
    };
  }
  return logger;
}

/** Registers askr_log_dropped_lines_total on `registry`, read from `output` at each scrape. */
export function registerLogMetrics(registry: Registry, output: LogOutput): void {
  new Counter({
    name: 'askr_log_dropped_lines_total',
    help: 'Log lines dropped because the output (stdout) was blocked past log.max_buffer.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(output.droppedLines());
    },
  });
}
