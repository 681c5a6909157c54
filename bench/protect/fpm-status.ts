/**
 * Reads a php-fpm pool's full status page (`?json&full`) straight over FastCGI (never through the server under test)
 * and samples it on a fixed period. The pool answers it on its own `pm.status_listen` socket,
 * served by FPM's hidden status pool, so a pool whose workers are all pinned still answers.
 * Invariant: a sample that fails or times out is recorded as an error, never as "0 busy".
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { rawFastCgiRequest } from '../../test/helpers/raw-fastcgi.ts';

/** One reading of the pool's scoreboard. */
export interface FpmStatus {
  /**
   * Workers not in the "Idle" state, counted from the per-process list: reading a request (also
   * waiting on a kept FastCGI connection), running PHP or writing its answer. Busy for others.
   */
  busy: number;
  /** Worker processes listed. */
  total: number;
  /** Workers per state ("Idle", "Reading headers", "Running", "Finishing", ...). */
  states: Record<string, number>;
  /**
   * FPM's own "active processes" counter. Kept for the record only: FPM 8.2 miscounts it when
   * connections are kept (FCGI_KEEP_CONN), reporting more active workers than max_children.
   */
  fpmActive: number;
  /** Connections waiting in the pool's backlog: FPM only measures it for TCP, 0 on a Unix socket. */
  listenQueue: number;
  /** FPM's counter of "pm.max_children reached" since the pool started. */
  maxChildrenReached: number;
}

export interface StatusSample {
  /** Milliseconds since the phase started. */
  tMs: number;
  status: FpmStatus | null;
  error?: string;
}

const STATUS_TIMEOUT_MS = 2_000;

function field(json: Record<string, unknown>, name: string): number {
  const v = json[name];
  if (typeof v !== 'number') throw new Error(`FPM status has no numeric "${name}"`);
  return v;
}

/**
 * GET `statusPath`?json&full from the FPM listening at `address` ('unix:/path' or 'host:port').
 * Throws when FPM does not answer within 2 s or the answer is not FPM's JSON status.
 */
export async function readFpmStatus(address: string, statusPath: string): Promise<FpmStatus> {
  const request = rawFastCgiRequest(address, {
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: 'GET',
    SCRIPT_NAME: statusPath,
    SCRIPT_FILENAME: statusPath,
    REQUEST_URI: `${statusPath}?json&full`,
    QUERY_STRING: 'json&full',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REMOTE_ADDR: '127.0.0.1',
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`FPM status: no answer in ${STATUS_TIMEOUT_MS} ms`));
    }, STATUS_TIMEOUT_MS);
  });
  // A late answer after the timeout is dropped: the sample is already recorded as an error.
  request.catch(() => undefined);
  try {
    const res = await Promise.race([request, timeout]);
    const text = res.stdout.toString('utf8');
    const body = text.slice(text.indexOf('\r\n\r\n') + 4);
    const json = JSON.parse(body) as Record<string, unknown>;
    const processes = json['processes'];
    if (!Array.isArray(processes)) throw new Error('FPM status has no "processes" list');
    const states: Record<string, number> = {};
    for (const p of processes as unknown[]) {
      const state =
        typeof p === 'object' && p !== null && 'state' in p && typeof p.state === 'string'
          ? p.state
          : '?';
      states[state] = (states[state] ?? 0) + 1;
    }
    return {
      busy: processes.length - (states['Idle'] ?? 0),
      total: processes.length,
      states,
      fpmActive: field(json, 'active processes'),
      listenQueue: field(json, 'listen queue'),
      maxChildrenReached: field(json, 'max children reached'),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Samples the status every `periodMs` from `startMs` (performance.now()) until stop() is called. */
export class StatusSampler {
  readonly samples: StatusSample[] = [];
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(address: string, statusPath: string, periodMs: number, startMs: number) {
    this.#done = (async () => {
      for (let i = 0; !this.#stopped; i++) {
        const due = startMs + i * periodMs;
        const wait = due - performance.now();
        // Behind schedule (a slow answer): skip the missed ticks rather than bunch samples up.
        if (wait < 0 && -wait > periodMs) continue;
        if (wait > 0) await sleep(wait);
        if (this.#stopped) break;
        const tMs = Math.round(performance.now() - startMs);
        try {
          this.samples.push({ tMs, status: await readFpmStatus(address, statusPath) });
        } catch (err) {
          this.samples.push({
            tMs,
            status: null,
            error: err instanceof Error ? err.message : String(err),
          });
        }
      }
    })();
  }

  /** Stops sampling; resolves once the sample in flight is recorded. */
  async stop(): Promise<StatusSample[]> {
    this.#stopped = true;
    await this.#done;
    return this.samples;
  }
}
