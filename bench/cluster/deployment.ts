/**
 * The sidecars one setup of bench:cluster runs, started as users run them: `node
 * bin/askr-sidecar.js serve` with env config (bench/sse/servers.ts startSidecar), each on its own
 * free port with its own php-fpm (idle: PHP is not in the measured path), and for the Redis setups
 * one redis-server on a free loopback port without persistence (test/helpers/redis.ts), named in
 * ASKR_CLUSTER_REDIS_URL. Invariant: stop() ends every process it started, and so does the exit
 * of this process (SIGKILL to their groups), so a crash leaves nothing holding 10,000 sockets.
 */
import { startRedis, type TestRedis } from '../../test/helpers/redis.ts';
import { datagramPublisher, httpPublisher, type Publisher } from '../sse/publisher.ts';
import type { Server } from '../sse/procs.ts';
import { HOST, startFpm, startSidecar, type SidecarTarget } from '../sse/servers.ts';
import type { PublisherKind, SetupName } from './settings.ts';

/** One sidecar of a setup and the php-fpm it is configured with. */
export interface Node {
  readonly id: string;
  readonly sidecar: SidecarTarget;
  readonly fpm: Server;
}

export interface Deployment {
  readonly setup: SetupName;
  readonly nodes: readonly Node[];
  readonly redis: TestRedis | null;
  /** redis-server's pid (from INFO server), 0 without Redis. */
  readonly redisPid: number;
  /** Pids whose process trees are this setup's servers (sidecars, php-fpm, Redis). */
  pids(): number[];
  /** Throws, with its output, when a sidecar or php-fpm has exited (figures would be garbage). */
  checkAlive(): void;
  stop(): Promise<void>;
}

/** Process groups still running, SIGKILLed if this process exits before stopping them. */
const groups = new Set<number>();
const redises = new Set<TestRedis>();
process.on('exit', () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // ESRCH: already gone, which is what we want.
    }
  }
});

/** Stops every Redis still running (on Ctrl-C; sidecars and FPM go with procs.stopAll()). */
export async function stopRedises(): Promise<void> {
  await Promise.allSettled([...redises].map((r) => r.stop()));
  redises.clear();
}

/** The value of `field` in an INFO reply (`field:value` lines). */
export function infoField(info: string, field: string): string | null {
  const m = new RegExp(`^${field}:(.*)$`, 'm').exec(info);
  return m?.[1]?.trim() ?? null;
}

/** CPU seconds Redis used so far (INFO cpu: used_cpu_sys + used_cpu_user, µs precision). */
export async function redisCpuSeconds(redis: TestRedis): Promise<number> {
  const info = await redis.cli('INFO', 'cpu');
  return Number(infoField(info, 'used_cpu_sys')) + Number(infoField(info, 'used_cpu_user'));
}

/** Starts the setup's servers; on a failure, what was started is stopped before rethrowing. */
export async function startDeployment(
  setup: SetupName,
  opts: { fpmWorkers: number },
): Promise<Deployment> {
  const started: { stop(): Promise<void> }[] = [];
  const stopAllStarted = async (): Promise<void> => {
    for (const s of started.splice(0).reverse()) await s.stop();
  };
  try {
    let redis: TestRedis | null = null;
    let redisPid = 0;
    if (setup !== 'baseline') {
      const r = await startRedis();
      redis = r;
      redises.add(r);
      started.push({
        stop: async () => {
          redises.delete(r);
          await r.stop();
        },
      });
      redisPid = Number(infoField(await r.cli('INFO', 'server'), 'process_id') ?? 0);
    }
    const count = setup === 'split' ? 2 : 1;
    const nodes: Node[] = [];
    for (let i = 0; i < count; i++) {
      const id = `bench-${String.fromCharCode(97 + i)}`;
      const fpm = await startFpm(opts.fpmWorkers);
      track(fpm.server, started);
      const sidecar = await startSidecar({
        fpm: fpm.address,
        env: redis === null ? {} : { ASKR_CLUSTER_REDIS_URL: redis.url, ASKR_CLUSTER_NODE_ID: id },
      });
      track(sidecar.server, started);
      nodes.push({ id, sidecar, fpm: fpm.server });
    }
    if (redis !== null) await checkBus(nodes, redis);
    return {
      setup,
      nodes,
      redis,
      redisPid,
      pids: () => [
        ...nodes.flatMap((n) => [n.sidecar.pid, n.fpm.child.pid ?? 0]),
        ...(redisPid > 0 ? [redisPid] : []),
      ],
      checkAlive: () => {
        for (const n of nodes) {
          for (const server of [n.sidecar.server, n.fpm]) {
            const { exitCode, signalCode } = server.child;
            if (exitCode !== null || signalCode !== null) {
              throw new Error(
                `${server.name} of ${n.id} exited (${String(exitCode ?? signalCode)}) during the ` +
                  `measurement:\n${server.output()}`,
              );
            }
          }
        }
      },
      stop: stopAllStarted,
    };
  } catch (err) {
    await stopAllStarted();
    throw err;
  }
}

function track(server: Server, started: { stop(): Promise<void> }[]): void {
  const pgid = server.child.pid;
  if (pgid !== undefined) groups.add(pgid);
  started.push({
    stop: async () => {
      await server.stop();
      if (pgid !== undefined) groups.delete(pgid);
    },
  });
}

/**
 * Every node must publish through the bus before anything is measured: a publish answered with
 * an id in the cluster's epoch (the `askr:epoch` key) went through Redis; a local epoch ("l…")
 * means the node is degraded and would measure a single node instead.
 */
async function checkBus(nodes: readonly Node[], redis: TestRedis): Promise<void> {
  for (const node of nodes) {
    const { sidecar } = node;
    const res = await fetch(`http://${HOST}:${sidecar.port}/askr/publish?channel=bench-check`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sidecar.token}` },
      body: 'check',
      signal: AbortSignal.timeout(10_000),
    });
    const body = await res.text();
    let id = '';
    try {
      const reply = JSON.parse(body) as { id?: unknown };
      if (typeof reply.id === 'string') id = reply.id;
    } catch {
      id = body.slice(0, 200); // not JSON: shown in the error below
    }
    const epoch = (await redis.cli('GET', 'askr:epoch')).trim();
    if (res.status !== 202 || epoch === '' || !id.startsWith(`${epoch}-`)) {
      throw new Error(
        `sidecar ${node.id} does not publish through Redis (status ${res.status}, id "${id}", ` +
          `cluster epoch "${epoch}"):\n${sidecar.server.output()}`,
      );
    }
  }
}

/**
 * A publisher that sends event `seq` to node `seq % nodes` (round robin), as PHP on each host
 * publishes to its own sidecar. With one node it is that node's publisher.
 */
export function setupPublisher(
  nodes: readonly Node[],
  channel: string,
  kind: PublisherKind,
  connections: number,
): Publisher {
  const each = nodes.map(({ sidecar }) =>
    kind === 'datagram'
      ? datagramPublisher(sidecar.socketPath, channel)
      : httpPublisher({
          name: 'http',
          host: HOST,
          port: sidecar.port,
          path: `/askr/publish?channel=${channel}`,
          headers: { authorization: `Bearer ${sidecar.token}` },
          connections,
        }),
  );
  return {
    name: kind,
    get accepted() {
      return each.reduce((n, p) => n + p.accepted, 0);
    },
    get failed() {
      return each.reduce((n, p) => n + p.failed, 0);
    },
    publish(seq: number): Promise<void> {
      const p = each[seq % each.length];
      return p === undefined ? Promise.resolve() : p.publish(seq);
    },
    close(): void {
      for (const p of each) p.close();
    },
  };
}
