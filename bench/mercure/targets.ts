/**
 * The servers bench:mercure compares and how each door is spoken to: how a stream subscribes to a
 * topic and the HTTP request that publishes event `seq` to it. Sidecars start as users run them
 * (bench/sse/servers.ts startSidecar: `node bin/askr-sidecar.js serve`, env config, temp dir, free
 * port); node-mercure as bench/mercure/node-mercure-hub.ts. All sidecar targets enable the Mercure
 * hub (HS256 key, an issuer), so the askr anchor differs from the Mercure targets by the door only.
 * Invariant: every process started here is registered in bench/sse/procs.ts (stopAll on exit).
 */
import { fileURLToPath } from 'node:url';
import { detail, mintToken, type MintOptions } from '../../test/helpers/mercure.ts';
import { freePort, spawnServer, waitForPort, type Server } from '../sse/procs.ts';
import { benchPayload } from '../sse/publisher.ts';
import { HOST, startSidecar } from '../sse/servers.ts';
import type { RequestOf } from './publisher.ts';
import type { TargetName } from './settings.ts';

const SECRET = 'askr-bench-mercure-secret-0123456789abcdef';
const ISSUER = 'https://bench.askr.test';
const HUB_PATH = '/.well-known/mercure';
const NODE_MERCURE_PATH = '/hub'; // hard-coded in the package
const NODE_MERCURE = fileURLToPath(new URL('./node-mercure-hub.ts', import.meta.url));

/** A started server and how to use its door. */
export interface Running {
  readonly name: TargetName;
  readonly server: Server;
  readonly port: number;
  /** Root of the server's process tree (memory, CPU). */
  readonly pid: number;
  /**
   * Request target (path and query) of a stream on `topic`, for bench/sse/client-proc.ts. `half`
   * matters in `mixed` only: 0 subscribes through the askr door, 1 through Mercure `match=`.
   */
  subscribePath(topic: string, half: 0 | 1): string;
  /** The request publishing event `seq` (data `b <seq> <ns>`) on `topic`. */
  requestOf(topic: string): RequestOf;
}

/**
 * bench/sse/client-proc.ts writes `GET <path> HTTP/1.1` and its own headers only: the token rides
 * in the request target, which ends the request line, as one more header line (loopback only).
 */
function withBearer(target: string, token: string): string {
  return `${target} HTTP/1.1\r\nAuthorization: Bearer ${token}\r\nX-Bench-Request-Line:`;
}

function post(
  port: number,
  path: string,
  token: string,
  contentType: string,
  body: string,
): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nAuthorization: Bearer ${token}\r\n` +
    `Content-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

function formPublish(port: number, path: string, token: string): (topic: string) => RequestOf {
  return (topic) => (seq) =>
    post(
      port,
      path,
      token,
      'application/x-www-form-urlencoded',
      `topic=${encodeURIComponent(topic)}&data=${encodeURIComponent(benchPayload(seq))}`,
    );
}

/** A 0.x token (the `mercure` claim, no typ/aud/exp/iss), as node-mercure and 0.x clients use. */
function legacyToken(claim: Record<string, string[]>): Promise<string> {
  const none: Partial<MintOptions> = { iss: null, aud: null, exp: null, typ: null };
  return mintToken({ key: SECRET, ...none, mercureClaim: claim });
}

/** Which door a sidecar target uses. */
type Door = 'askr' | 'match' | 'urlpattern' | 'topic' | 'mixed';

const SIDECAR_DOOR: Partial<Record<TargetName, Door>> = {
  mixed: 'mixed',
  askr: 'askr',
  'askr-lean': 'askr',
  mercure: 'match',
  'mercure-lean': 'match',
  'mercure-urlpattern': 'urlpattern',
  'mercure-0x': 'topic',
};

/**
 * As shipped: the sidecar's defaults (access log on, info logs, metrics on, history of 1,000 per
 * topic) except what a benchmark from one address needs (connection limits of 20,000, the
 * datagram socket and metrics listener on private addresses). Lean: no access log, warn logs, no
 * metrics listener, no history.
 */
async function sidecarEnv(name: TargetName): Promise<Record<string, string>> {
  const lean = name.endsWith('-lean');
  return {
    ASKR_MERCURE_ENABLED: 'true',
    ASKR_MERCURE_JWT_KEY: SECRET,
    ASKR_MERCURE_ISSUERS: ISSUER,
    ...(name === 'mercure-0x' ? { ASKR_MERCURE_COMPATIBILITY: 'true' } : {}),
    ...(lean
      ? { ASKR_SSE_HISTORY_SIZE: '0' }
      : {
          ASKR_LOG_ACCESS_LOG: 'true',
          ASKR_LOG_LEVEL: 'info',
          ASKR_METRICS_ENABLED: 'true',
          ASKR_METRICS_LISTEN: `${HOST}:${await freePort()}`,
        }),
  };
}

async function startSidecarTarget(name: TargetName, door: Door): Promise<Running> {
  // Extra node flags for the sidecar (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"), as bench:proxy.
  const nodeArgs = (process.env['BENCH_SIDECAR_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  const s = await startSidecar({ env: await sidecarEnv(name), nodeArgs });
  const hubUrl = `http://${HOST}:${s.port}${HUB_PATH}`;
  const base = { name, server: s.server, port: s.port, pid: s.pid };
  const askrPath = (topic: string): string => `/askr/events?channel=${topic}`;
  if (door === 'askr') {
    return {
      ...base,
      subscribePath: askrPath,
      requestOf: (topic) => (seq) =>
        post(s.port, `/askr/publish?channel=${topic}`, s.token, 'text/plain', benchPayload(seq)),
    };
  }
  if (door === 'topic') {
    const sub = await legacyToken({ subscribe: ['*'] });
    const pub = await legacyToken({ publish: ['*'] });
    return {
      ...base,
      subscribePath: (topic) => withBearer(`${HUB_PATH}?topic=${topic}`, sub),
      requestOf: formPublish(s.port, HUB_PATH, pub),
    };
  }
  const token = (action: string): Promise<string> =>
    mintToken({
      key: SECRET,
      iss: ISSUER,
      aud: hubUrl,
      details: [detail([action], ['bench', 'warmup'])],
    });
  const sub = await token('subscribe');
  const pub = await token('publish');
  const mercurePath = (topic: string): string =>
    withBearer(
      door === 'urlpattern'
        ? // Relative, resolved against the hub URL: every topic one segment under /.well-known/.
          `${HUB_PATH}?match_urlpattern=${encodeURIComponent('/.well-known/:topic')}`
        : `${HUB_PATH}?match=${topic}`,
      sub,
    );
  return {
    ...base,
    subscribePath: (topic, half) =>
      door === 'mixed' && half === 0 ? askrPath(topic) : mercurePath(topic),
    // mixed: published through the Mercure door; it reaches the askr streams as well.
    requestOf: formPublish(s.port, HUB_PATH, pub),
  };
}

async function startNodeMercure(): Promise<Running> {
  const port = await freePort();
  const server = spawnServer('node-mercure', process.execPath, [
    NODE_MERCURE,
    String(port),
    SECRET,
  ]);
  await waitForPort(server, HOST, port);
  const sub = await legacyToken({ subscribe: ['*'] });
  const pub = await legacyToken({ publish: ['*'] });
  return {
    name: 'node-mercure',
    server,
    port,
    pid: server.child.pid ?? 0,
    subscribePath: (topic) => withBearer(`${NODE_MERCURE_PATH}?topic=${topic}`, sub),
    requestOf: formPublish(port, NODE_MERCURE_PATH, pub),
  };
}

/** Starts a fresh server for `name`. */
export async function startTarget(name: TargetName): Promise<Running> {
  const door = SIDECAR_DOOR[name];
  return door === undefined ? startNodeMercure() : startSidecarTarget(name, door);
}

/** Throws, with its output, when the server has exited (its figures would be garbage). */
export function checkAlive(r: Running): void {
  const { exitCode, signalCode } = r.server.child;
  if (exitCode !== null || signalCode !== null) {
    throw new Error(
      `${r.name} exited (${String(exitCode ?? signalCode)}) during the measurement:\n${r.server.output()}`,
    );
  }
}
