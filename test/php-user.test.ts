/**
 * PHP never runs as root (issue 14): a sidecar started as root runs its managed php-fpm's workers
 * as www-data (or fpm.user), and PHP under Debian's stock pool (workers as www-data) publishes to
 * the datagram socket with the sidecar's defaults. A recurrence looks like a worker with Uid 0 in
 * /proc/<pid>/status, or askr_broadcast() returning false with "Permission denied" and no warning
 * from the sidecar. These tests must run as root (as the CI image does): they fail otherwise.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { request } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ingressSettings } from '../src/broadcast/datagram-ingress.ts';
import { loadConfig } from '../src/config/load.ts';
import { ErrorCodes } from '../src/errors.ts';
import { findPhpFpm, type ManagedFpm } from '../src/fpm/managed-fpm.ts';
import { livePidsInGroup, signalGroup } from '../src/fpm/process-group.ts';
import { startTestFpm } from './helpers/fpm.ts';
import { endProcess, readTextOr } from './helpers/process.ts';
import { rawFastCgiRequest, scriptParams } from './helpers/raw-fastcgi.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { dataFrames, openStream } from './helpers/sse-client.ts';
import { runCleanups, until, type Cleanups } from './helpers/wait.ts';

const SHIM = fileURLToPath(new URL('../php/src/askr.php', import.meta.url));
/** www-data on Debian (and in the official php images): what the workers must run as. */
const WWW_DATA = 33;
const NOGROUP = 65534;

// Who PHP runs as, read by PHP from /proc (php-posix is optional), and a publish when asked.
const WHOAMI_PHP = `<?php
require ${JSON.stringify(SHIM)};
$status = (string) file_get_contents('/proc/self/status');
preg_match('/^Uid:\\s+(\\d+)\\s+(\\d+)/m', $status, $uid);
preg_match('/^Gid:\\s+(\\d+)\\s+(\\d+)/m', $status, $gid);
$channel = $_GET['channel'] ?? '';
$ok = $channel === '' ? null : askr_broadcast($channel, 'from uid ' . $uid[2]);
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'uid' => (int) $uid[2], 'gid' => (int) $gid[2], 'ok' => $ok, 'error' => askr_last_error()]);
`;

/**
 * The effective lines of Debian bookworm's /etc/php/8.2/fpm/pool.d/www.conf (php8.2-fpm), with
 * only `listen` moved to a private path: workers and socket both www-data.
 */
const debianWwwPool = (socketPath: string): string[] => [
  '[www]',
  'user = www-data',
  'group = www-data',
  `listen = ${socketPath}`,
  'listen.owner = www-data',
  'listen.group = www-data',
  'pm = dynamic',
  'pm.max_children = 5',
  'pm.start_servers = 2',
  'pm.min_spare_servers = 1',
  'pm.max_spare_servers = 3',
];

interface WhoAmI {
  pid: number;
  uid: number;
  gid: number;
  ok: boolean | null;
  error: string | null;
}

interface ProcIds {
  uid: number[];
  gid: number[];
  groups: number[];
}

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

beforeAll(() => {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'test/php-user.test.ts checks what a sidecar started as root does with PHP: run it as root',
    );
  }
});

/** A temp dir; `mode` 0755 lets www-data in (mkdtemp makes 0700). */
function tempDir(prefix: string, mode = 0o755): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, mode);
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A document root www-data can read, whose front controller (index.php) is WHOAMI_PHP. */
function docroot(): string {
  const dir = tempDir('askr-php-user-root-');
  fs.writeFileSync(path.join(dir, 'index.php'), WHOAMI_PHP, { mode: 0o644 });
  return dir;
}

/** Real, effective, saved and filesystem ids and supplementary groups of a live process. */
function procIds(pid: number): ProcIds {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number[] =>
    (new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1] ?? '')
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  return { uid: field('Uid'), gid: field('Gid'), groups: field('Groups') };
}

/**
 * The master's ids and each worker's (the master leads the group of its workers), once `count`
 * workers are up. A worker names itself "php-fpm: pool NAME" only after it switched users (FPM's
 * fpm_child_init: fpm_unix_init_child, then fpm_env_init_child sets the title): reading its ids
 * before that would catch the instant between fork() and setuid().
 */
async function fpmProcesses(
  masterPid: number,
  count: number,
): Promise<{ master: ProcIds; workers: ProcIds[] }> {
  const workerPids = (): number[] =>
    livePidsInGroup(masterPid).filter((pid) =>
      readTextOr(`/proc/${pid}/cmdline`, '').startsWith('php-fpm: pool '),
    );
  await until(() => workerPids().length === count, 5000, `${count} php-fpm workers`);
  return { master: procIds(masterPid), workers: workerPids().map(procIds) };
}

async function whoami(s: TestSidecar, channel = ''): Promise<WhoAmI> {
  const res = await request(`${s.url}/?channel=${encodeURIComponent(channel)}`);
  expect(res.statusCode).toBe(200);
  return (await res.body.json()) as WhoAmI;
}

async function sidecar(overrides: Record<string, unknown>): Promise<TestSidecar> {
  const s = await startTestSidecar({ 'metrics.enabled': 'false', ...overrides });
  cleanups.push(() => s.close());
  return s;
}

/** Publishes from PHP (through the sidecar) and awaits the event on an SSE stream. */
async function publishReachesSubscriber(s: TestSidecar, channel: string): Promise<WhoAmI> {
  const stream = await openStream(`${s.url}/askr/events?channel=${channel}`);
  cleanups.push(() => stream.close());
  await until(() => s.hub.stats().connections >= 1, 5000, 'the subscriber');
  const php = await whoami(s, channel);
  expect(php).toMatchObject({ ok: true, error: null });
  const frame = await stream.waitFor((f) => f.data !== undefined && dataFrames([f]).length === 1);
  expect(frame.data).toBe(`from uid ${php.uid}`);
  return php;
}

const refusals = (s: TestSidecar): Array<Record<string, unknown>> =>
  s.logs.filter((l) => String(l['msg']).includes('cannot publish to the datagram socket'));

describe('the managed php-fpm of a sidecar started as root', () => {
  it('runs its workers as www-data, never root, and they publish with the defaults', async () => {
    // A stand-in for /run: the sidecar creates askr/ in it, as it creates /run/askr.
    const run = tempDir('askr-php-user-run-');
    const socket = path.join(run, 'askr', 'askr.sock');
    const s = await sidecar({
      'fastcgi.address': '',
      'server.root': docroot(),
      'broadcast.socket': socket,
      'fpm.max_children': '2',
    });
    const fpm = s.fpm as ManagedFpm;
    const { master, workers } = await fpmProcesses(fpm.pid() ?? -1, 2);
    expect(master.uid).toEqual([0, 0, 0, 0]); // the master stays root to manage its workers
    expect(workers).toHaveLength(2);
    for (const w of workers) {
      expect(w.uid).toEqual([WWW_DATA, WWW_DATA, WWW_DATA, WWW_DATA]);
      expect(w.gid).toEqual([WWW_DATA, WWW_DATA, WWW_DATA, WWW_DATA]);
      expect(w.groups).not.toContain(0);
    }
    expect(fpm.workers).toMatchObject({ user: 'www-data', uid: WWW_DATA, gid: WWW_DATA });
    expect(s.logs.find((l) => l['msg'] === 'managed php-fpm started')).toMatchObject({
      phpUser: 'www-data:www-data',
    });

    // The socket got the workers' group, its new directory is searchable, and PHP publishes.
    const st = fs.statSync(socket);
    expect({ gid: st.gid, mode: st.mode & 0o777 }).toEqual({ gid: WWW_DATA, mode: 0o660 });
    expect(fs.statSync(path.dirname(socket)).mode & 0o777).toBe(0o755);
    const php = await publishReachesSubscriber(s, 'managed-www-data');
    expect({ uid: php.uid, gid: php.gid }).toEqual({ uid: WWW_DATA, gid: WWW_DATA });
    expect(refusals(s)).toEqual([]);
  });

  it('runs the workers as fpm.user / fpm.group', async () => {
    const { fpm } = await managed({ user: 'nobody', group: 'nogroup' });
    const { workers } = await fpmProcesses(fpm.pid() ?? -1, 2);
    for (const w of workers) {
      expect({ uid: w.uid[1], gid: w.gid[1] }).toEqual({ uid: NOGROUP, gid: NOGROUP });
    }
    const php = await rawWhoami(fpm);
    expect({ uid: php.uid, gid: php.gid }).toEqual({ uid: NOGROUP, gid: NOGROUP });
  });

  it('refuses fpm.user = root: a config error from the config, and from the managed pool', async () => {
    for (const [key, value] of [
      ['fpm.user', 'root'],
      ['fpm.group', '0'],
    ] as const) {
      expect(() => loadConfig({ env: {}, overrides: { [key]: value } })).toThrow(
        new RegExp(
          `${key.replace('.', '\\.')} = "${value}": expected a user or group other than root: PHP never runs as root`,
        ),
      );
    }
    const runDir = tempDir('askr-php-user-fpm-', 0o700);
    await expect(startTestFpm(runDir, { user: 'root' })).rejects.toMatchObject({
      code: ErrorCodes.CONFIG,
      message: expect.stringContaining('PHP must never run as root') as unknown,
    });
    // Refused before anything was written or spawned.
    expect(fs.readdirSync(runDir)).toEqual([]);
  });

  it('warns, naming the path and the user, when www-data cannot read the document root', async () => {
    const closed = tempDir('askr-php-user-closed-', 0o700);
    const { records } = await managed({ documentRoot: closed });
    const warning = records.find((r) => String(r['msg']).includes('cannot read the document root'));
    expect(warning).toMatchObject({ documentRoot: closed, user: 'www-data', group: 'www-data' });
    expect(String(warning?.['obstacle'])).toContain(`${closed} (uid 0, gid 0, mode 0700)`);

    const { records: quiet } = await managed({ documentRoot: docroot() });
    expect(quiet.filter((r) => String(r['msg']).includes('document root'))).toEqual([]);
  });
});

describe("Debian's stock php-fpm pool (workers as www-data) beside a sidecar started as root", () => {
  it('publishes from the stock workers with the default settings', async () => {
    const fpmAddress = await stockFpm();
    const run = tempDir('askr-php-user-run-');
    const socket = path.join(run, 'askr', 'askr.sock');
    const s = await sidecar({
      'fastcgi.address': fpmAddress,
      'server.root': docroot(),
      'broadcast.socket': socket,
    });
    const php = await publishReachesSubscriber(s, 'stock-fpm');
    expect({ uid: php.uid, gid: php.gid }).toEqual({ uid: WWW_DATA, gid: WWW_DATA });
    expect(fs.statSync(socket).gid).toBe(WWW_DATA);
    expect(refusals(s)).toEqual([]);
  });

  it.each([
    [
      'the socket group is not the FPM group',
      { 'broadcast.socket_group': 'nogroup' },
      /does not let www-data write it/,
    ],
    [
      'the socket directory is not searchable by www-data',
      { dirMode: 0o700 },
      /is a directory www-data cannot search/,
    ],
  ])('warns when %s, and PHP is indeed refused', async (_name, setup, obstacle) => {
    const fpmAddress = await stockFpm();
    const { dirMode, ...overrides } = { dirMode: 0o755, ...setup };
    const socket = path.join(tempDir('askr-php-user-run-', dirMode), 'askr.sock');
    const s = await sidecar({
      'fastcgi.address': fpmAddress,
      'server.root': docroot(),
      'broadcast.socket': socket,
      ...overrides,
    });
    const [warning, ...more] = refusals(s);
    expect(more).toEqual([]);
    expect(warning).toMatchObject({ level: 40, socket, php: 'www-data:www-data' });
    expect(String(warning?.['obstacle'])).toMatch(obstacle);
    const php = await whoami(s, 'refused');
    expect(php.ok).toBe(false);
    expect(php.error).toContain('Permission denied');
  });
});

describe('ingressSettings: whose group the datagram socket gets', () => {
  const config = (address: string, user = '', group = '') => ({
    broadcast: { socket_mode: '0660', socket_group: '', max_datagram_size: 65536 },
    sse: { max_channel_name_length: 128, max_channels_per_connection: 32 },
    fastcgi: { address },
    fpm: { user, group },
  });
  it.each([
    ['managed, as root', config(''), 0, 'the managed pool'],
    ['managed, not root: PHP runs as the sidecar', config(''), 1000, undefined],
    ['managed, not root, fpm.user set (ignored)', config('', 'app'), 1000, undefined],
    [
      'external, fpm.user set',
      config('unix:/run/php.sock', 'app', 'web'),
      1000,
      'fpm.user/fpm.group',
    ],
    ['external, nothing set', config('127.0.0.1:9000'), 0, /^a stock php-fpm pool/],
  ])('%s', (_name, c, uid, source) => {
    const { php } = ingressSettings(c, uid);
    if (source === undefined) expect(php).toBeUndefined();
    else expect(php?.source).toMatch(source);
  });
});

/** A managed pool started directly (not through a sidecar), its log records kept. */
async function managed(
  overrides: Parameters<typeof startTestFpm>[1],
): Promise<{ fpm: ManagedFpm; records: Array<Record<string, unknown>> }> {
  const records: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => records.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const fpm = await startTestFpm(tempDir('askr-php-user-fpm-', 0o700), { logger, ...overrides });
  cleanups.push(() => fpm.stop(2_000));
  return { fpm, records };
}

/** whoami.php over raw FastCGI, from a document root the test makes. */
async function rawWhoami(fpm: ManagedFpm): Promise<WhoAmI> {
  const r = await rawFastCgiRequest(fpm.address, scriptParams(path.join(docroot(), 'index.php')));
  return JSON.parse(r.stdout.toString().split('\r\n\r\n')[1] ?? '') as WhoAmI;
}

/**
 * Starts php-fpm as root with Debian's stock pool (never -R: FPM itself switches the workers to
 * www-data) and resolves with its address once the socket accepts.
 */
async function stockFpm(): Promise<string> {
  const binary = findPhpFpm(process.env['ASKR_TEST_FPM_BINARY'] ?? '');
  if (binary === null) {
    throw new Error(
      'No php-fpm found: run "node scripts/ensure-system.mjs test" or set ASKR_TEST_FPM_BINARY',
    );
  }
  const dir = tempDir('askr-php-user-stock-', 0o700);
  const socketPath = path.join(dir, 'php-fpm.sock');
  const logPath = path.join(dir, 'php-fpm.log');
  const confPath = path.join(dir, 'php-fpm.conf');
  fs.writeFileSync(
    confPath,
    [
      '[global]',
      `pid = ${path.join(dir, 'php-fpm.pid')}`,
      `error_log = ${logPath}`,
      'daemonize = no',
      ...debianWwwPool(socketPath),
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(binary, ['-F', '-y', confPath], {
    stdio: 'ignore',
    detached: true,
  });
  const pid = child.pid ?? -1;
  cleanups.push(() =>
    endProcess(child, { killAfterMs: 3_000, send: (signal) => void signalGroup(pid, signal) }),
  );
  const deadline = Date.now() + 10_000;
  // No event says when php-fpm listens: try its socket.
  while (!(await canConnect(socketPath))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`stock php-fpm did not start:\n${readTextOr(logPath, '(no log)')}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  // The stock pool's socket is www-data's, 0660: the sidecar (root) connects all the same.
  expect(fs.statSync(socketPath)).toMatchObject({ uid: WWW_DATA, gid: WWW_DATA });
  return `unix:${socketPath}`;
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}
