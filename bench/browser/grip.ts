/**
 * GRIP publishing of bench:browser: the sidecar vs Pushpin 1.36, the same PHP origin page
 * (fixtures-php/app/public/grip-app.php: `Grip-Hold: stream`, `Grip-Channel: bench`) and the same
 * publish request (`POST /publish/`, Pushpin's items body, `http-stream` content) to Pushpin's
 * control port and the sidecar's admin listener. The sidecar runs the page on its php-fpm pool;
 * Pushpin needs an HTTP origin: `php -S` with as many workers (PHP_CLI_SERVER_WORKERS), outside
 * both servers' memory. Each measurement starts fresh servers and stops them before returning.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { pacedPublish } from '../lib/pace.ts';
import { Publisher, type RequestOf } from '../mercure/publisher.ts';
import { freePort, spawnServer, treeMemory, waitForPort, type Server } from '../sse/procs.ts';
import { benchPayload } from '../sse/publisher.ts';
import { HOST, startFpm, startSidecar, tempDir } from '../sse/servers.ts';
import type { GripTarget } from './settings.ts';
import { StreamSet } from './streams.ts';

const APP_ROOT = fileURLToPath(new URL('../../fixtures-php/app/public', import.meta.url));
const KEY = 'askr-bench-browser-grip-key';
const READY = 'grip-ready';
const STREAM_PATH =
  '/stream?instruct=' +
  encodeURIComponent(JSON.stringify({ 'Grip-Hold': 'stream', 'Grip-Channel': 'bench' })) +
  `&first=${READY}%0A`;

export interface GripMeasurement {
  target: GripTarget;
  held: number;
  round: number;
  opened: number;
  rssPerStreamBytes: number;
  expected: number;
  received: number;
  p50Ms: number;
  p99Ms: number;
  publishesPerS: number;
  loopExpected: number;
  loopReceived: number;
}

interface Started {
  streamPort: number;
  publishPort: number;
  /** Root of the server's process tree (its memory). */
  pid: number;
  servers: Server[];
}

async function startSidecarTarget(lean: boolean, workers: number): Promise<Started> {
  const fpm = await startFpm(workers);
  const publishPort = await freePort();
  const s = await startSidecar({
    fpm: fpm.address,
    root: APP_ROOT,
    env: {
      ASKR_SERVER_INDEX: 'grip-app.php',
      ASKR_GRIP_PUBLISH_KEY: KEY,
      // The admin listener serves /publish/: on in both; as shipped adds the access log and info logs.
      ASKR_METRICS_ENABLED: 'true',
      ASKR_METRICS_LISTEN: `${HOST}:${publishPort}`,
      ...(lean ? {} : { ASKR_LOG_ACCESS_LOG: 'true', ASKR_LOG_LEVEL: 'info' }),
    },
  });
  return { streamPort: s.port, publishPort, pid: s.pid, servers: [s.server, fpm.server] };
}

/** Pushpin from a temp config (Debian's, ports and dirs replaced); lean: log level 1, not 2. */
async function startPushpin(lean: boolean, workers: number): Promise<Started> {
  const dir = tempDir('pushpin');
  const originPort = await freePort();
  const origin = spawnServer(
    'php-origin',
    'php',
    ['-S', `${HOST}:${originPort}`, '-t', APP_ROOT, join(APP_ROOT, 'grip-app.php')],
    { PHP_CLI_SERVER_WORKERS: String(workers) },
  );
  await waitForPort(origin, HOST, originPort);
  const streamPort = await freePort();
  const publishPort = await freePort();
  const pushIn = await freePort();
  const pushSub = await freePort();
  const command = await freePort();
  const run = join(dir, 'run');
  mkdirSync(run);
  mkdirSync(join(dir, 'log'));
  const conf = readFileSync('/etc/pushpin/pushpin.conf', 'utf8')
    .replace(/^include=.*$/m, 'include=/usr/lib/pushpin/internal.conf')
    // Debian's runner expects the system zurl service (/var/run/zurl): run our own instead.
    .replace(/^services=.*$/m, 'services=condure,zurl,pushpin-proxy,pushpin-handler')
    .replace(/^rundir=.*$/m, `rundir=${run}`)
    .replace(/^logdir=.*$/m, `logdir=${join(dir, 'log')}`)
    .replace(/^http_port=.*$/m, `http_port=${streamPort}`)
    .replace(/^push_in_spec=.*$/m, `push_in_spec=tcp://${HOST}:${pushIn}`)
    .replace(/^push_in_sub_specs=.*$/m, `push_in_sub_specs=tcp://${HOST}:${pushSub}`)
    .replace(/^push_in_http_port=.*$/m, `push_in_http_port=${publishPort}`)
    .replace(/^command_spec=tcp.*$/m, `command_spec=tcp://${HOST}:${command}`)
    .replace(/^routesfile=.*$/m, `routesfile=${join(dir, 'routes')}`)
    .replace(
      /^\[proxy\]$/m,
      '[proxy]\nzurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\n' +
        'zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\n' +
        'zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out',
    );
  writeFileSync(join(dir, 'pushpin.conf'), conf);
  writeFileSync(join(dir, 'routes'), `* ${HOST}:${originPort}\n`);
  const args = ['--config', join(dir, 'pushpin.conf'), ...(lean ? ['--loglevel', '1'] : [])];
  const server = spawnServer('pushpin', 'pushpin', args, {}, dir);
  await waitForPort(server, HOST, streamPort);
  await waitForPort(server, HOST, publishPort);
  return { streamPort, publishPort, pid: server.child.pid ?? 0, servers: [server, origin] };
}

function publishRequest(port: number): RequestOf {
  return (seq) => {
    const body = JSON.stringify({
      items: [
        {
          channel: 'bench',
          formats: { 'http-stream': { content: `data: ${benchPayload(seq)}\n\n` } },
        },
      ],
    });
    return (
      `POST /publish/ HTTP/1.1\r\nHost: ${HOST}:${port}\r\nAuthorization: Bearer ${KEY}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
    );
  };
}

function quantile(values: readonly number[], q: number): number {
  const v = [...values].sort((a, b) => a - b);
  return v.length === 0 ? NaN : (v[Math.min(v.length - 1, Math.floor(q * v.length))] ?? NaN);
}

async function settle(set: StreamSet, seqs: readonly number[], expected: number): Promise<void> {
  let last = -1;
  let quietSince = Date.now();
  for (;;) {
    const n = seqs.reduce((sum, seq) => sum + set.deliveries(seq).length, 0);
    if (n >= expected || Date.now() - quietSince > 2000) return;
    if (n !== last) quietSince = Date.now();
    last = n;
    await sleep(50);
  }
}

/** One measurement of `target` with `held` streams. */
export async function measureGrip(
  target: GripTarget,
  held: number,
  round: number,
  opts: { workers: number; messages: number; messageRate: number; phaseMs: number },
  log: (line: string) => void,
): Promise<GripMeasurement> {
  const lean = target.endsWith('-lean');
  const t = target.startsWith('pushpin')
    ? await startPushpin(lean, opts.workers)
    : await startSidecarTarget(lean, opts.workers);
  const set = new StreamSet(t.streamPort, READY);
  const request = (): string =>
    `GET ${STREAM_PATH} HTTP/1.1\r\nHost: ${HOST}:${t.streamPort}\r\nAccept: text/event-stream\r\n\r\n`;
  try {
    // Warm-up: a few streams and publishes, then the measured streams.
    for (let i = 0; i < 20; i++) set.add(request);
    await set.openAll(20, 100, 10_000);
    const warm = new Publisher(HOST, t.publishPort, 2, publishRequest(t.publishPort));
    await warm.closedLoop(300, 1_000_000);
    warm.close();
    await set.dropAll();
    await sleep(300);
    const streams = new StreamSet(t.streamPort, READY);
    for (let i = 0; i < held; i++) streams.add(request);
    const memBefore = treeMemory(t.pid);
    const open = await streams.openAll(64, 100, 60_000);
    await sleep(1000);
    const memAfter = treeMemory(t.pid);
    const pub = new Publisher(HOST, t.publishPort, 1, publishRequest(t.publishPort));
    const seqs = Array.from({ length: opts.messages }, (_, i) => i);
    const paced = await pacedPublish(
      pub,
      (seq) => pub.publish(seq),
      opts.messageRate,
      opts.messages,
    );
    const expected = paced.accepted * open.ok;
    await settle(streams, seqs, expected);
    const lat = seqs.flatMap((seq) => streams.deliveries(seq));
    const loop = await pub.closedLoop(opts.phaseMs, 10_000);
    const loopSeqs = Array.from({ length: loop.accepted + loop.failed }, (_, i) => 10_000 + i);
    const loopExpected = loop.accepted * open.ok;
    await settle(streams, loopSeqs, loopExpected);
    pub.close();
    const m: GripMeasurement = {
      target,
      held,
      round,
      opened: open.ok,
      rssPerStreamBytes: (memAfter.rssBytes - memBefore.rssBytes) / Math.max(1, open.ok),
      expected,
      received: lat.length,
      p50Ms: quantile(lat, 0.5),
      p99Ms: quantile(lat, 0.99),
      publishesPerS: (loop.accepted * 1000) / Math.max(1, loop.elapsedMs),
      loopExpected,
      loopReceived: loopSeqs.reduce((n, seq) => n + streams.deliveries(seq).length, 0),
    };
    log(
      `  ${target}: ${open.ok}/${held} held, ${(m.rssPerStreamBytes / 1024).toFixed(1)} KiB/stream, ` +
        `p50 ${m.p50Ms.toFixed(1)} / p99 ${m.p99Ms.toFixed(1)} ms, ${m.received}/${expected}; ` +
        `${m.publishesPerS.toFixed(0)} publishes/s (${m.loopReceived}/${loopExpected})`,
    );
    await streams.dropAll();
    return m;
  } finally {
    await set.dropAll();
    for (const s of t.servers) await s.stop();
  }
}
