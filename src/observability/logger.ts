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
 * 'exit') nor on a fatal start error (`flushSync()`). Per line, the cost is the JSON itself: the
 * time is a cached second plus milliseconds, and the batch holds each line's bytes (no string
 * that grows and is copied again for every line, as sonic-boom's text mode does).
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
    // In text mode sonic-boom appends each line to the batch string and measures that string
    // with Buffer.byteLength, which flattens it: every line copies the whole batch again (an
    // 8 KiB batch of 300-byte lines: ~4 KiB copied per line). In buffer mode a line's bytes are
    // kept in a list and the batch is joined once, when it is written.
    contentMode: 'buffer',
  });
  // pino writes strings; buffer mode takes the line's UTF-8 bytes (its own write counts
  // `data.length`, so it must be given bytes, never a string).
  const writeBytes = stream.write.bind(stream) as unknown as (data: Buffer) => boolean;
  stream.write = (line: string): boolean => writeBytes(Buffer.from(line, 'utf8'));
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

/** `${ms}Z"` for every millisecond of a second: the tail of a time field. */
const MS_TAILS = Array.from({ length: 1000 }, (_, ms) => `${String(ms).padStart(3, '0')}Z"`);
let timeSecond = Number.NaN;
let timeHead = '';

/**
 * The `time` field exactly as pino.stdTimeFunctions.isoTime writes it
 * (`,"time":"2026-12-01T04:14:37.951Z"`), without a Date and an ISO formatting per line: the
 * text up to the second is made once per second, the milliseconds come from a table.
 */
export function isoTime(now = Date.now()): string {
  const second = Math.floor(now / 1000);
  if (second !== timeSecond) {
    // toISOString of the whole second ends in ".000Z": keep everything before the "000Z".
    timeHead = `,"time":"${new Date(second * 1000).toISOString().slice(0, -4)}`;
    timeSecond = second;
  }
  return timeHead + (MS_TAILS[now - second * 1000] as string);
}

/** The logger: `destination` is a `createLogOutput` (batched), any pino stream, or stdout. */
export function createLogger(level: string, destination?: DestinationStream | LogOutput): Logger {
  const output = destination !== undefined && 'droppedLines' in destination ? destination : null;
  const stream = output === null ? (destination as DestinationStream | undefined) : output.stream;
  const logger = pino(
    {
      level,
      base: { service: 'askr-sidecar' },
      timestamp: () => isoTime(),
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

/** The fields of one access-log line, in the order they are written. */
export interface AccessFields {
  readonly requestId: string;
  /** Left out of the line when undefined (as pino leaves out undefined values). */
  readonly method: string | undefined;
  readonly path: string;
  readonly status: number;
  readonly bytes: number;
  readonly durationMs: number;
  readonly upstreamMs: number | null;
  readonly kind: string;
  readonly client: string;
  /** Only on lines of requests that failed. */
  readonly error?: string | undefined;
}

/** pino's numeric level of `info`, the access log's level. */
const INFO_LEVEL = 30;

const {
  chindingsSym,
  endSym,
  formattersSym,
  hooksSym,
  lsCacheSym,
  messageKeySym,
  mixinSym,
  needsMetadataGsym,
  nestedKeySym,
  serializersSym,
  streamSym,
  stringifiersSym,
  timeSym,
} = pino.symbols;

/**
 * A pino logger's internals, read through pino.symbols (exported for integrations). Typed at
 * each use: pino's types give the symbols but not what they hold.
 */
type PinoInternals = Record<symbol, unknown>;

/** What writeAccessLine writes to: pino's stream for the logger. */
interface LineStream {
  write(line: string): unknown;
}

/** Keys of AccessFields: a serializer or stringifier on one of them changes its output. */
const ACCESS_KEYS = [
  'requestId',
  'method',
  'path',
  'status',
  'bytes',
  'durationMs',
  'upstreamMs',
  'kind',
  'client',
  'error',
];

/** Whether a logger writes lines the way writeAccessLine reproduces (decided once per logger). */
const plainLoggers = new WeakMap<Logger, boolean>();

function isPlain(logger: Logger): boolean {
  let plain = plainLoggers.get(logger);
  if (plain === undefined) {
    const internals = logger as unknown as PinoInternals;
    const serializers = internals[serializersSym] as Record<string, unknown>;
    const stringifiers = internals[stringifiersSym] as object;
    const stream = internals[streamSym] as Record<symbol, unknown>;
    plain =
      internals[messageKeySym] === 'msg' &&
      !internals[mixinSym] &&
      !internals[nestedKeySym] &&
      (internals[formattersSym] as { log?: unknown }).log === undefined &&
      (internals[hooksSym] as { streamWrite?: unknown }).streamWrite === undefined &&
      stream[needsMetadataGsym] !== true &&
      Reflect.ownKeys(stringifiers).length === 0 &&
      ACCESS_KEYS.every((key) => serializers[key] === undefined) &&
      typeof logger.msgPrefix !== 'string';
    plainLoggers.set(logger, plain);
  }
  return plain;
}

/**
 * A JSON string exactly as pino writes one (lib/tools.js asString): up to 100 characters, only
 * `"` and `\` are escaped unless a control character calls for JSON.stringify; longer ones go
 * through JSON.stringify. The same function, so the line stays byte for byte pino's.
 */
function pinoString(text: string): string {
  const length = text.length;
  if (length > 100) return JSON.stringify(text);
  let result = '';
  let last = 0;
  let found = false;
  let point = 255;
  for (let i = 0; i < length && point >= 32; i += 1) {
    point = text.charCodeAt(i);
    if (point === 34 || point === 92) {
      result += text.slice(last, i) + '\\';
      last = i;
      found = true;
    }
  }
  if (!found) result = text;
  else result += text.slice(last);
  return point < 32 ? JSON.stringify(text) : `"${result}"`;
}

/** A number as pino writes one: itself, or null when not finite. */
function pinoNumber(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}

/**
 * One access-log line, byte for byte what `logger.info(fields, 'request')` writes, without
 * pino's generic path (rest arguments, message formatting, a for-in over the object and a type
 * switch per field): the fields are known, so the line is concatenated directly. A logger set up
 * otherwise than this one (serializers or stringifiers on these keys, a mixin, a nested key, a
 * message prefix, a stream that wants metadata) gets the plain logger.info call.
 */
export function writeAccessLine(logger: Logger, fields: AccessFields): void {
  if (logger.levelVal > INFO_LEVEL) return;
  if (!isPlain(logger)) {
    logger.info({ ...fields }, 'request');
    return;
  }
  const internals = logger as unknown as PinoInternals;
  const levelText = (internals[lsCacheSym] as Record<number, string>)[INFO_LEVEL] as string;
  let line = levelText + (internals[timeSym] as () => string)();
  line += internals[chindingsSym] as string;
  line += ',"requestId":' + pinoString(fields.requestId);
  if (fields.method !== undefined) line += ',"method":' + pinoString(fields.method);
  line += ',"path":' + pinoString(fields.path);
  line += ',"status":' + pinoNumber(fields.status);
  line += ',"bytes":' + pinoNumber(fields.bytes);
  line += ',"durationMs":' + pinoNumber(fields.durationMs);
  line += ',"upstreamMs":' + (fields.upstreamMs === null ? 'null' : pinoNumber(fields.upstreamMs));
  line += ',"kind":' + pinoString(fields.kind);
  line += ',"client":' + pinoString(fields.client);
  if (fields.error !== undefined) line += ',"error":' + pinoString(fields.error);
  line += ',"msg":"request"' + (internals[endSym] as string);
  (internals[streamSym] as LineStream).write(line);
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
