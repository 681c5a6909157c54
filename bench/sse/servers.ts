/**
 * Starts the servers the SSE benchmark compares, each in a fresh temp directory on a free port
 * of 127.0.0.1: askr-sidecar (bin/askr-sidecar.js), nginx with nchan, php-fpm (8 static workers)
 * and nginx in front of that php-fpm, each in a bench mode (lib/modes.ts: as shipped, or lean)
 * when given one. Everything returned has stop(); procs.stopAll() is the net.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { nginxAccessLog, sidecarModeEnv, type ServerMode } from '../lib/modes.ts';
import { freePort, spawnServer, waitForPort, type Server } from './procs.ts';

export const HOST = '127.0.0.1';
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const NCHAN_MODULE = '/usr/lib/nginx/modules/ngx_nchan_module.so';
/** Open files per process here (ulimit -n); nginx may not ask for more than the hard limit. */
const NOFILE = 20_000;

export interface HttpTarget {
  server: Server;
  port: number;
  /** Root pid whose process tree is the server's memory (nginx master + workers, or node). */
  pid: number;
  dir: string;
}

export interface SidecarTarget extends HttpTarget {
  socketPath: string;
  token: string;
  /** With `probe`: full GC in the sidecar, then its process.memoryUsage() (mem-probe.ts). */
  probe?: () => Promise<ProbeResult>;
}

/** process.memoryUsage() of the sidecar after a full GC, bytes. */
export interface ProbeResult {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** v8.getHeapSpaceStatistics() by space name, bytes. */
  spaces?: Record<string, { size: number; used: number; physical: number }>;
}

const PROBE_MODULE = new URL('./mem-probe.ts', import.meta.url).href;

const dirs: string[] = [];

/** A fresh temp directory, removed by removeTempDirs(). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `askr-bench-${prefix}-`));
  // PHP runs as www-data when the benchmark runs as root: it must reach what is in here.
  chmodSync(dir, 0o755);
  dirs.push(dir);
  return dir;
}

/** Removes every directory tempDir() made (call after the servers are stopped). */
export function removeTempDirs(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/**
 * askr-sidecar as a user runs it; `fpm` is an FPM address, or a dead one when PHP is not used.
 * With `mode` (bench:sse): its defaults but for the mode (lib/modes.ts) and what the benchmark
 * needs (listen, root, FPM, the publish token, the datagram socket in its directory, connection
 * limits above 10,000 streams), stdout (access log, app log) to `<dir>/sidecar.log`, no inherited
 * ASKR_* variable. Without (the other benchmarks): access log and metrics off, warn-level logs.
 */
export async function startSidecar(opts: {
  fpm?: string;
  root?: string;
  env?: Record<string, string>;
  nodeArgs?: string[];
  /** Preload mem-probe.ts (with --expose-gc) and return `probe`. */
  probe?: boolean;
  /** Run the sidecar with this open-files limit (ulimit -n) instead of the inherited one. */
  nofile?: number;
  mode?: ServerMode;
}): Promise<SidecarTarget> {
  const dir = tempDir('sidecar');
  const root = opts.root ?? join(dir, 'public');
  mkdirSync(root, { recursive: true });
  const port = await freePort();
  const socketPath = join(dir, 'askr.sock');
  const token = 'bench-token';
  const probeFile = join(dir, 'probe.json');
  const nodeArgv = [
    ...(opts.probe === true ? ['--expose-gc', '--import', PROBE_MODULE] : []),
    ...(opts.nodeArgs ?? []),
    join(REPO, 'bin/askr-sidecar.js'),
    'serve',
    '--listen',
    `${HOST}:${port}`,
    '--root',
    root,
    '--fpm',
    opts.fpm ?? `${HOST}:1`,
  ];
  // `sh -c 'ulimit -n N && exec "$0" "$@"' node ARGS...` lowers the limit for node alone.
  const [cmd, args] =
    opts.nofile === undefined
      ? [process.execPath, nodeArgv]
      : [
          '/bin/sh',
          ['-c', `ulimit -n ${opts.nofile} && exec "$0" "$@"`, process.execPath, ...nodeArgv],
        ];
  const modeEnv =
    opts.mode === undefined
      ? {
          ASKR_BROADCAST_SOCKET: socketPath,
          ASKR_LOG_ACCESS_LOG: 'false',
          ASKR_LOG_LEVEL: 'warn',
          ASKR_METRICS_ENABLED: 'false',
        }
      : sidecarModeEnv(opts.mode, {
          metricsListen: `${HOST}:${await freePort()}`,
          broadcastSocket: socketPath,
        });
  const server = spawnServer(
    'askr-sidecar',
    cmd,
    args,
    {
      ...modeEnv,
      ASKR_SSE_PUBLISH_TOKEN: token,
      // Needed to hold 10,000 streams from one client address (the defaults stop below that).
      ASKR_SSE_MAX_CONNECTIONS_PER_IP: String(NOFILE),
      ASKR_SSE_MAX_CONNECTIONS: String(NOFILE),
      ASKR_SERVER_MAX_CONNECTIONS: String(NOFILE),
      BENCH_PROBE_FILE: probeFile,
      ...opts.env,
    },
    // Not the repository: a ./sidecar.toml there would be read as this run's config.
    dir,
    opts.mode === undefined ? {} : { stdoutFile: join(dir, 'sidecar.log'), withoutAskrEnv: true },
  );
  await waitForPort(server, HOST, port);
  const target: SidecarTarget = {
    server,
    port,
    pid: server.child.pid ?? 0,
    dir,
    socketPath,
    token,
  };
  if (opts.probe === true) {
    let n = 0;
    target.probe = async () => {
      n++;
      server.child.kill('SIGUSR2');
      const deadline = Date.now() + 120_000; // a heap snapshot of 10,000 streams takes a while
      while (Date.now() < deadline) {
        try {
          const r = JSON.parse(readFileSync(probeFile, 'utf8')) as ProbeResult & { n: number };
          if (r.n === n) return r;
        } catch {
          // not written yet
        }
        await sleep(100);
      }
      throw new Error(`the sidecar's memory probe did not answer:\n${server.output()}`);
    };
  }
  return target;
}

/**
 * Main settings of every nginx here, beyond Debian's: the open-file and connection limits needed
 * to hold 10,000 streams (the sidecar's are raised alike), and multi_accept, which takes every
 * pending connection per wake-up as libuv's accept loop does for Node.
 */
const NGINX_COMMON = (dir: string, workers: number): string => `
worker_processes ${workers};
worker_rlimit_nofile ${NOFILE};
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections ${NOFILE - 500}; multi_accept on; }
`;

/**
 * The http settings of every nginx here. `mode` undefined (other benchmarks) or lean: no access
 * log; as-shipped: Debian's (combined format) to `<dir>/access.log`. keepalive_requests: the
 * publisher's keep-alive connections are never closed by nginx, as Node (no request limit per
 * connection by default) never closes the sidecar's.
 */
const NGINX_HTTP_COMMON = (dir: string, mode?: ServerMode): string => `
  ${nginxAccessLog(mode ?? 'lean', `${dir}/access.log`)}
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
`;

async function startNginx(dir: string, conf: string, port: number): Promise<Server> {
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const server = spawnServer('nginx', '/usr/sbin/nginx', [
    '-p',
    dir,
    '-c',
    confPath,
    '-g',
    'daemon off;',
  ]);
  await waitForPort(server, HOST, port);
  return server;
}

/** The plain node:http SSE server of node-baseline.ts (the floor of a Node server, for comparison). */
export async function startNodeBaseline(nodeArgs: readonly string[] = []): Promise<HttpTarget> {
  const dir = tempDir('node-http');
  const port = await freePort();
  const script = fileURLToPath(new URL('./node-baseline.ts', import.meta.url));
  const server = spawnServer('node-http', process.execPath, [...nodeArgs, script, String(port)]);
  await waitForPort(server, HOST, port);
  return { server, port, pid: server.child.pid ?? 0, dir };
}

/**
 * nginx + nchan: subscribers `GET /sub?channel=NAME` (EventSource), publishers
 * `POST /pub?channel=NAME` (raw body = data). `workers` = worker_processes.
 */
export async function startNchan(workers: number, mode?: ServerMode): Promise<HttpTarget> {
  const dir = tempDir('nchan');
  const port = await freePort();
  const conf = `load_module ${NCHAN_MODULE};
${NGINX_COMMON(dir, workers)}
http {
${NGINX_HTTP_COMMON(dir, mode)}
  nchan_shared_memory_size 256M;
  server {
    listen ${HOST}:${port} backlog=4096;
    location = /sub {
      nchan_subscriber eventsource;
      nchan_channel_id $arg_channel;
    }
    location = /pub {
      nchan_publisher;
      nchan_channel_id $arg_channel;
      nchan_message_buffer_length 1000;
      nchan_message_timeout 10m;
    }
  }
}
`;
  const server = await startNginx(dir, conf, port);
  return { server, port, pid: server.child.pid ?? 0, dir };
}

/** php-fpm with `workers` static children on a Unix socket; PHP output unbuffered. */
export async function startFpm(workers: number): Promise<{ server: Server; address: string }> {
  const dir = tempDir('fpm');
  // nginx's workers run as another user: they must reach the socket inside.
  chmodSync(dir, 0o755);
  const sock = join(dir, 'fpm.sock');
  const conf = `[global]
pid = ${dir}/fpm.pid
error_log = ${dir}/fpm.log
log_level = warning
daemonize = no

[bench]
listen = ${sock}
listen.mode = 0666
listen.backlog = 4096
pm = static
pm.max_children = ${workers}
pm.max_requests = 0
clear_env = no
catch_workers_output = yes
php_admin_value[output_buffering] = 0
php_admin_flag[zlib.output_compression] = off
php_admin_value[max_execution_time] = 0
`;
  const confPath = join(dir, 'php-fpm.conf');
  writeFileSync(confPath, conf);
  const args = ['-F', '-O', '-y', confPath, ...(process.getuid?.() === 0 ? ['-R'] : [])];
  const server = spawnServer('php-fpm', '/usr/sbin/php-fpm8.2', args);
  const deadline = Date.now() + 10_000;
  while (!existsSync(sock)) {
    if (Date.now() > deadline || server.child.exitCode !== null) {
      throw new Error(`php-fpm did not start:\n${server.output()}`);
    }
    await sleep(50);
  }
  return { server, address: `unix:${sock}` };
}

/**
 * nginx in front of php-fpm (Laravel-style fastcgi), unbuffered so PHP's flush() reaches the
 * client; `mode` as for nchan.
 */
export async function startNginxFpm(
  root: string,
  fpmAddress: string,
  mode?: ServerMode,
): Promise<HttpTarget> {
  const dir = tempDir('nginx-fpm');
  const port = await freePort();
  const conf = `${NGINX_COMMON(dir, 1)}
http {
${NGINX_HTTP_COMMON(dir, mode)}
  server {
    listen ${HOST}:${port} backlog=4096;
    root ${root};
    location ~ \\.php$ {
      include /etc/nginx/fastcgi.conf;
      fastcgi_pass ${fpmAddress};
      fastcgi_buffering off;
      fastcgi_read_timeout 600s;
    }
  }
}
`;
  const server = await startNginx(dir, conf, port);
  return { server, port, pid: server.child.pid ?? 0, dir };
}
