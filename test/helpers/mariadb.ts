/**
 * A private MariaDB for integration tests (the WordPress suite): Debian's mariadbd on a fresh
 * datadir made by mariadb-install-db in a temp dir, reachable only over a Unix socket there
 * (skip-networking), with one database and one user made for the test. Binaries missing is a
 * failure naming `node scripts/ensure-system.mjs test`, never a skip.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { phpTempDir } from './php-temp.ts';
import { endProcess, readTextOr } from './process.ts';
import { findProgram } from './programs.ts';

const run = promisify(execFile);

export interface TestMariaDb {
  /** Absolute path of the server's Unix socket (WordPress: DB_HOST = 'localhost:' + socket). */
  readonly socket: string;
  /** The database made for the test; `user` has every privilege on it. */
  readonly database: string;
  readonly user: string;
  readonly password: string;
  /** mariadbd's error log so far: for failure messages. */
  log(): string;
  /** Runs `sql` as root with the `mariadb` client; resolves its tab-separated output. */
  query(sql: string, database?: string): Promise<string>;
  /** SIGTERM (SIGKILL after 10 s), then removes the datadir. Idempotent. */
  stop(): Promise<void>;
}

export interface TestMariaDbOptions {
  /** Name of the database to create (default `wordpress`). */
  database?: string;
  /** How long the server may take to answer on its socket, ms (default 20 s). */
  readyTimeoutMs?: number;
}

const INSTALL_HINT =
  'Run "node scripts/ensure-system.mjs test" (as root it installs Debian\'s mariadb-server, ' +
  'which brings mariadb-install-db and the mariadb client).';

/** The first executable `name` (or alias) in PATH, /usr/sbin or /usr/bin; throws naming the fix. */
function requireProgram(...names: string[]): string {
  const found = findProgram(names, ['/usr/sbin', '/usr/bin']);
  if (found !== null) return found;
  throw new Error(
    `The WordPress tests need a real MariaDB and ${names.join(' / ')} was not found in PATH, /usr/sbin or /usr/bin. ${INSTALL_HINT}`,
  );
}

/**
 * Resolves the first packet the server sends on a new connection: a handshake (protocol version
 * 10) once it accepts clients. Rejects when the socket refuses, or the server sends an error
 * packet (0xff) or nothing within `timeoutMs`.
 */
async function greeting(socketPath: string, timeoutMs: number): Promise<void> {
  const socket = net.connect({ path: socketPath });
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no greeting in ${timeoutMs} ms`)));
  try {
    await once(socket, 'connect');
    let packet = Buffer.alloc(0);
    // 4-byte header (3-byte length, sequence id), then the payload's first byte.
    while (packet.length < 5) {
      const [chunk] = (await once(socket, 'data')) as [Buffer];
      packet = Buffer.concat([packet, chunk]);
    }
    if (packet[4] !== 10) {
      throw new Error(`the server answered ${packet.subarray(4, 80).toString('latin1')}`);
    }
  } finally {
    socket.destroy();
  }
}

const quote = (s: string): string => `'${s.replace(/[\\']/g, (c) => `\\${c}`)}'`;

/**
 * Makes a datadir with mariadb-install-db, starts mariadbd as root on a Unix socket in a new temp
 * dir PHP's workers may search (phpTempDir), waits for its handshake, creates `database` and a user with a random password that owns
 * it. Rejects with the install output or the server's error log when a step fails (and cleans up).
 */
export async function startMariaDb(options: TestMariaDbOptions = {}): Promise<TestMariaDb> {
  const server = requireProgram('mariadbd', 'mysqld');
  const installDb = requireProgram('mariadb-install-db', 'mysql_install_db');
  const client = requireProgram('mariadb', 'mysql');
  const database = options.database ?? 'wordpress';
  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  // PHP's workers (www-data as root) connect to the socket in it; the datadir inside stays 0700.
  const dir = fs.realpathSync(await phpTempDir('askr-mariadb-'));
  const datadir = path.join(dir, 'data');
  const socket = path.join(dir, 'mysqld.sock');
  const errorLog = path.join(dir, 'error.log');
  const log = (): string => readTextOr(errorLog, '(no mariadbd error log)');

  try {
    // --auth-root-authentication-method=normal: root@localhost without a password, whatever the
    // OS user, so the client below never depends on unix_socket authentication.
    await run(
      installDb,
      [
        '--no-defaults',
        `--datadir=${datadir}`,
        '--user=root',
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        '--skip-name-resolve',
      ],
      { timeout: 60_000 },
    );
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${installDb} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, {
      cause: err,
    });
  }

  const child: ChildProcess = spawn(
    server,
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      `--socket=${socket}`,
      `--pid-file=${path.join(dir, 'mysqld.pid')}`,
      `--log-error=${errorLog}`,
      `--tmpdir=${dir}`,
      '--skip-networking',
      '--user=root',
      '--skip-log-bin',
      '--skip-name-resolve',
      '--character-set-server=utf8mb4',
      '--collation-server=utf8mb4_unicode_ci',
      // A throwaway server: small, and no fsync per commit.
      '--innodb-buffer-pool-size=32M',
      '--innodb-flush-log-at-trx-commit=0',
      '--performance-schema=OFF',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  let spawnError: Error | null = null;
  child.on('error', (err) => {
    spawnError = err;
  });
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  // A process that failed to spawn may never emit 'exit': it does not count as running.
  const running = (): boolean =>
    spawnError === null && child.exitCode === null && child.signalCode === null;

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.off('exit', killOnExit);
      await endProcess(child, { killAfterMs: 10_000, running });
      fs.rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  const query = async (sql: string, db?: string): Promise<string> => {
    const args = ['--no-defaults', `--socket=${socket}`, '-uroot', '-N', '-B', '-e', sql];
    const { stdout } = await run(client, db === undefined ? args : [...args, db], {
      timeout: 30_000,
    });
    return stdout;
  };

  try {
    const deadline = Date.now() + readyTimeoutMs;
    let last = 'not started';
    for (;;) {
      if (spawnError !== null) {
        throw new Error(`cannot run ${server}: ${(spawnError as Error).message}. ${INSTALL_HINT}`);
      }
      if (!running()) {
        throw new Error(
          `mariadbd exited (${String(child.exitCode ?? child.signalCode)}) during start:\n${log()}\n${stderr}`,
        );
      }
      try {
        await greeting(socket, 2_000);
        break;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `mariadbd did not answer on ${socket} within ${readyTimeoutMs} ms (last: ${last}):\n${log()}`,
        );
      }
      // No event tells when mariadbd accepts connections: poll its socket.
      await new Promise((r) => setTimeout(r, 25));
    }
    const user = 'askr_wp';
    const password = randomBytes(12).toString('hex');
    await query(
      [
        `CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
        `CREATE USER ${quote(user)}@'localhost' IDENTIFIED BY ${quote(password)}`,
        `GRANT ALL PRIVILEGES ON \`${database}\`.* TO ${quote(user)}@'localhost'`,
      ].join(';\n'),
    );
    return { socket, database, user, password, log, query, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
