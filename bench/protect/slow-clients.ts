/**
 * The two kinds of slow client of bench:protect, held for the length of a phase.
 * - Slow readers: php-cli runs php/slow-reader.php (N connections with a small SO_RCVBUF, one GET
 *   of a big PHP answer each, never read); a child process, so ProcessSet kills it on any exit.
 * - Slow uploaders: N sockets in this process sending a POST with a large Content-Length at a
 *   trickle; a connection the server closes is opened again at once, so the pressure is constant.
 * Invariant: loopback only; stop() closes every connection it opened.
 */
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { spawnChild, type ChildServer, type ProcessSet } from '../lib/processes.ts';

const SLOW_READER_SCRIPT = fileURLToPath(new URL('./php/slow-reader.php', import.meta.url));
const READY_TIMEOUT_MS = 10_000;
/** Upload ticks: 100 bytes/s goes out as 10 bytes every 100 ms. */
const UPLOAD_TICK_MS = 100;

/** What the slow clients saw, for the report. */
export interface SlowClientStats {
  kind: 'slow-readers' | 'slow-uploaders';
  clients: number;
  /** Connections opened (the first ones plus reopenings). */
  connections: number;
  /** Slow readers: connections with unread answer bytes waiting at the last check. */
  withData?: number;
  /** Connections the server closed or reset while the phase ran. */
  closedByServer: number;
  /** Slow uploaders: request body bytes sent in all. */
  bytesSent?: number;
  /** Answer statuses received (e.g. 408 from a body timeout), status -> count. */
  statuses: Record<string, number>;
}

export interface SlowClients {
  stop(): Promise<SlowClientStats>;
}

/** Starts `count` slow readers of `path` and resolves once every request is sent. */
export async function startSlowReaders(opts: {
  php: string;
  host: string;
  port: number;
  path: string;
  count: number;
  rcvbufBytes: number;
  processes: ProcessSet;
}): Promise<SlowClients> {
  const child: ChildServer = opts.processes.add(
    await spawnChild(
      'slow-readers',
      opts.php,
      [
        SLOW_READER_SCRIPT,
        opts.host,
        String(opts.port),
        opts.path,
        String(opts.count),
        String(opts.rcvbufBytes),
      ],
      { stopSignal: 'SIGTERM', graceMs: 2_000 },
    ),
  );
  let last = { withData: 0, closed: 0 };
  let pending = '';
  let onReady: (() => void) | null = null;
  child.child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const state = /^state \d+ (\d+) (\d+)$/.exec(line);
      if (state !== null) last = { withData: Number(state[1]), closed: Number(state[2]) };
      else if (line.startsWith('ready ')) onReady?.();
    }
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`slow readers not connected in ${READY_TIMEOUT_MS} ms`));
      }, READY_TIMEOUT_MS);
      onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      void child.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`slow readers exited (${signal ?? `exit ${code}`})`));
      });
    });
  } catch (err) {
    await opts.processes.stop(child);
    throw new Error(`${err instanceof Error ? err.message : String(err)}:\n${child.output()}`, {
      cause: err,
    });
  }
  return {
    async stop(): Promise<SlowClientStats> {
      const exitedEarly = child.child.exitCode !== null || child.child.signalCode !== null;
      await opts.processes.stop(child);
      if (exitedEarly) {
        throw new Error(`slow readers died during the phase:\n${child.output()}`);
      }
      return {
        kind: 'slow-readers',
        clients: opts.count,
        connections: opts.count,
        withData: last.withData,
        closedByServer: last.closed,
        statuses: {},
      };
    },
  };
}

/** Starts `count` slow uploaders; resolves at once (connections open in the background). */
export function startSlowUploaders(opts: {
  host: string;
  port: number;
  path: string;
  count: number;
  contentLength: number;
  bytesPerSec: number;
}): SlowClients {
  const stats: SlowClientStats = {
    kind: 'slow-uploaders',
    clients: opts.count,
    connections: 0,
    closedByServer: 0,
    bytesSent: 0,
    statuses: {},
  };
  const sockets = new Set<net.Socket>();
  let stopped = false;
  const perTick = Math.max(1, Math.round((opts.bytesPerSec * UPLOAD_TICK_MS) / 1000));
  const chunk = Buffer.alloc(perTick, 'x');
  const head =
    `POST ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\n` +
    `User-Agent: bench-protect-slow-uploader\r\nContent-Type: application/octet-stream\r\n` +
    `Content-Length: ${opts.contentLength}\r\n\r\n`;

  const open = (): void => {
    if (stopped) return;
    stats.connections++;
    const socket = net.connect({ host: opts.host, port: opts.port });
    sockets.add(socket);
    socket.setNoDelay(true);
    let sent = 0;
    let answered = false;
    let ticker: NodeJS.Timeout | undefined;
    socket.once('connect', () => {
      socket.write(head);
      ticker = setInterval(() => {
        const n = Math.min(chunk.length, opts.contentLength - sent);
        if (n <= 0) {
          clearInterval(ticker);
          return;
        }
        socket.write(chunk.subarray(0, n));
        sent += n;
        stats.bytesSent = (stats.bytesSent ?? 0) + n;
      }, UPLOAD_TICK_MS);
    });
    socket.on('data', (data: Buffer) => {
      if (answered) return;
      answered = true;
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(data.toString('latin1'))?.[1] ?? 'garbled';
      stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
    });
    // Errors (ECONNRESET from a server that gave up) end in 'close'; counted there.
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearInterval(ticker);
      sockets.delete(socket);
      if (stopped) return;
      stats.closedByServer++;
      // Keep `count` uploads going, as a patient attacker would; a short pause avoids a hot loop
      // against a server that refuses connections.
      setTimeout(open, 100);
    });
  };
  for (let i = 0; i < opts.count; i++) open();

  return {
    stop(): Promise<SlowClientStats> {
      stopped = true;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      return Promise.resolve(stats);
    },
  };
}
