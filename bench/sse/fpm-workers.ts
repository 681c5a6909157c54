/**
 * "FPM workers needed": the same php-fpm pool shape (8 static workers, same binary and php.ini;
 * a fresh pool of its own for each ramp, so no server inherits another's connections) behind
 * nginx serving a PHP flush-loop SSE script, and behind askr-sidecar serving a PHP script that
 * holds the stream (askr_subscribe), both in the given mode (as shipped or lean). Streams are
 * ramped up in steps; at each step a hello-world PHP load runs while the streams are held, and
 * we count live streams, FPM workers held and hello errors.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SubscriberClient } from './client.ts';
import { helloLoad, type HelloLoad } from './hello-load.ts';
import { httpPublisher } from './publisher.ts';
import type { Quiet, QuietReading } from '../lib/cpu.ts';
import type { ServerMode } from '../lib/modes.ts';
import { awaitQuiet, OthersCpu, processTree } from './procs.ts';
import { HOST, startFpm, startNginxFpm, startSidecar, type HttpTarget } from './servers.ts';

const PHP_ROOT = fileURLToPath(new URL('./php/', import.meta.url));
/** Kernel wait channel of a worker in PHP's sleep(): a flush loop between two events. */
const SLEEP_WCHAN = /nanosleep/;

/** `flush`: nginx + a PHP flush loop; `hold`: askr-sidecar + a PHP script that holds the stream. */
export type StreamMode = 'flush' | 'hold';

export interface RampStep {
  streams: number;
  /** Streams whose response head (200) arrived. */
  started: number;
  /** Streams proven live at this step: flush loop: bytes in the last 2.5 s; hold: got the publish. */
  live: number;
  /** FPM workers held by streams (in the flush loop's sleep), sampled every 200 ms. */
  fpmHeldMax: number;
  fpmHeldMean: number;
  hello: HelloLoad;
}

export interface RampResult {
  mode: StreamMode;
  /** The servers' configuration (as shipped or lean). */
  serverMode: ServerMode;
  /** The machine just before the pool started (idle share, others' cores, wait). */
  quiet: QuietReading;
  /** What ran, for the report (e.g. "askr-sidecar + PHP hold, ulimit -n 1024"). */
  label: string;
  workers: number;
  steps: RampStep[];
  /** Most live streams at a step where hello-world had no error. */
  maxLiveWithHealthyHello: number;
  /** Cores other processes of the machine used during the ramp (noise; want ~0). */
  othersCores: number;
}

/**
 * FPM workers held by a stream: in PHP's sleep() (wchan). A flush loop spends ~all its time
 * there; a hello-world request never sleeps, so the hello load is not counted.
 */
function heldWorkers(fpmMasterPid: number): number {
  let held = 0;
  for (const pid of processTree(fpmMasterPid).slice(1)) {
    try {
      if (SLEEP_WCHAN.test(readFileSync(`/proc/${pid}/wchan`, 'utf8'))) held++;
    } catch {
      // the worker exited meanwhile
    }
  }
  return held;
}

async function sampleHeld(
  fpmPid: number,
  durationMs: number,
): Promise<{ max: number; mean: number }> {
  const samples: number[] = [];
  const end = Date.now() + durationMs;
  while (Date.now() < end) {
    samples.push(heldWorkers(fpmPid));
    await sleep(200);
  }
  const max = Math.max(0, ...samples);
  const mean = samples.length === 0 ? 0 : samples.reduce((a, b) => a + b, 0) / samples.length;
  return { max, mean };
}

/** Ramps streams of one mode on a fresh php-fpm + front server; see the file header. */
export async function measureRamp(
  mode: StreamMode,
  client: SubscriberClient,
  opts: {
    workers: number;
    steps: readonly number[];
    helloSeconds: number;
    helloConnections: number;
    /** hold only: the sidecar's open-files limit (ulimit -n); default inherited. */
    nofile?: number;
    serverMode: ServerMode;
    quiet: Quiet;
  },
): Promise<RampResult> {
  const quiet = await awaitQuiet(() => [process.pid, client.pid], opts.quiet);
  const fpm = await startFpm(opts.workers);
  const fpmPid = fpm.server.child.pid ?? 0;
  let front: HttpTarget | null = null;
  let publish: ((seq: number) => Promise<void>) | null = null;
  let closePublisher = (): void => {};
  try {
    let streamPath: string;
    if (mode === 'flush') {
      front = await startNginxFpm(PHP_ROOT, fpm.address, opts.serverMode);
      streamPath = '/flush.php?seconds=300';
    } else {
      const sidecar = await startSidecar({
        fpm: fpm.address,
        root: PHP_ROOT,
        mode: opts.serverMode,
        // Needed: the scripts are named in the URL (/hold.php, /hello.php), as behind nginx.
        env: { ASKR_SERVER_PHP_SCRIPTS: 'true' },
        ...(opts.nofile === undefined ? {} : { nofile: opts.nofile }),
      });
      front = sidecar;
      streamPath = '/hold.php?channel=bench';
      const pub = httpPublisher({
        name: 'http',
        host: HOST,
        port: sidecar.port,
        path: '/askr/publish?channel=bench',
        headers: { authorization: `Bearer ${sidecar.token}` },
        connections: 1,
      });
      publish = (seq) => pub.publish(seq);
      closePublisher = () => pub.close();
    }
    const port = front.port;
    const helloUrl = `http://${HOST}:${port}/hello.php`;
    await helloLoad(helloUrl, 1, opts.helloConnections); // warm-up
    const steps: RampStep[] = [];
    let opened = 0;
    const frontPid = front.pid;
    const others = new OthersCpu(() => [process.pid, client.pid, fpmPid, frontPid]);
    for (const target of opts.steps) {
      if (target > opened) {
        await client.open(HOST, port, streamPath, target - opened, {
          concurrency: 50,
          headTimeoutMs: 3000,
        });
        opened = target;
      }
      const [hello, held] = await Promise.all([
        helloLoad(helloUrl, opts.helloSeconds, opts.helloConnections),
        sampleHeld(fpmPid, opts.helloSeconds * 1000),
      ]);
      let live: number;
      if (publish === null) {
        live = (await client.stats(2500)).active;
      } else {
        await client.reset(1);
        await publish(0);
        const deadline = Date.now() + 5000;
        let s = await client.stats();
        while (s.events < s.headOk && Date.now() < deadline) {
          await sleep(100);
          s = await client.stats();
        }
        live = s.events;
      }
      const stats = await client.stats();
      steps.push({
        streams: target,
        started: stats.headOk,
        live,
        fpmHeldMax: held.max,
        fpmHeldMean: held.mean,
        hello,
      });
    }
    const healthy = steps.filter((s) => s.hello.errors === 0 && s.hello.ok > 0);
    const label =
      mode === 'flush'
        ? 'nginx + PHP flush loop'
        : `askr-sidecar + PHP hold${opts.nofile === undefined ? '' : `, ulimit -n ${opts.nofile}`}`;
    return {
      mode,
      serverMode: opts.serverMode,
      quiet,
      label,
      workers: opts.workers,
      steps,
      maxLiveWithHealthyHello: Math.max(0, ...healthy.map((s) => s.live)),
      othersCores: others.cores(),
    };
  } finally {
    closePublisher();
    await client.closeAll();
    if (front) await front.server.stop();
    await fpm.server.stop();
  }
}
