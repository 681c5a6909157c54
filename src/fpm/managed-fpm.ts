/**
 * The "embedded default" (docs/architecture.md, Design notes: Operations): with no
 * [fastcgi].address, the sidecar runs its own php-fpm on a private Unix socket and keeps it alive
 * (the supervisor is fpm-supervisor.ts). This file resolves the binary, prepares the private run
 * directory and the generated configuration.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { defaultSearchDirs, findPhpFpm } from './find-php-fpm.ts';
import { fpmEnvironment, renderFpmConfig } from './fpm-config.ts';
import { FpmSupervisor } from './fpm-supervisor.ts';
import { reapStaleMaster } from './process-group.ts';

export { findPhpFpm } from './find-php-fpm.ts';

export interface ManagedFpmOptions {
  /** '' searches PATH, /usr/sbin and /usr/local/sbin for php-fpm, then php-fpmX.Y (highest first). */
  binary: string;
  /** Private directory for conf, socket, pid and logs; created with mode 0700 (chmod-ed if ours). */
  runDir: string;
  /** pm = static, pm.max_children. */
  maxChildren: number;
  /** pm.max_requests (0: never recycle). */
  maxRequests: number;
  /** request_terminate_timeout, rounded up to seconds; 0 = off. */
  requestTerminateTimeoutMs: number;
  /** php.ini values for the pool (php_value lines). */
  ini: Record<string, string>;
  /** Environment of the workers, on top of PATH, TMPDIR, TZ, LANG, LC_ALL (clear_env = yes). */
  env: Record<string, string>;
  /** Longest pause between two restarts of a php-fpm that keeps dying. */
  restartBackoffMaxMs: number;
  /** pm.status_path when given (e.g. '/fpm-status'). */
  statusPath?: string;
  logger: Logger;
  /** Called each time the supervisor restarts a dead php-fpm. */
  onRestart?(): void;
}

export interface ManagedFpm {
  /** 'unix:<runDir>/php-fpm.sock' */
  readonly address: string;
  /** Absolute path of the php-fpm binary in use. */
  readonly binary: string;
  /** Master pid while running. */
  pid(): number | undefined;
  /** Resolves once the socket accepts connections (again, after a restart). Rejects after stop(). */
  ready(): Promise<void>;
  /** SIGQUIT (graceful), then SIGTERM/SIGKILL to the group after timeoutMs; stops supervising; removes the socket. */
  stop(timeoutMs?: number): Promise<void>;
}

const SUN_PATH_MAX = 107; // sockaddr_un.sun_path is 108 bytes with the NUL on Linux

function notFoundError(explicit: string): SidecarError {
  const install =
    "Install Debian's php-fpm package (apt-get install php-fpm, or: node scripts/ensure-system.mjs php)";
  const message =
    explicit !== ''
      ? `php-fpm binary "${explicit}" ([fpm].binary) was not found or is not executable. ${install}, or point [fpm].binary at an installed php-fpm.`
      : `No php-fpm found (looked for php-fpm and php-fpmX.Y in ${defaultSearchDirs().join(', ')}). ${install}, set [fpm].binary to its path, or set [fastcgi].address to an FPM you run yourself.`;
  return new SidecarError(ErrorCodes.FPM_START, message);
}

/** Creates runDir (0700) or tightens it when it is ours; refuses a non-directory. */
function prepareRunDir(runDir: string): void {
  fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(runDir);
  if (!st.isDirectory())
    throw new SidecarError(
      ErrorCodes.FPM_START,
      `php-fpm run directory is not a directory: ${runDir}`,
    );
  if (st.uid === process.getuid?.() && (st.mode & 0o077) !== 0) fs.chmodSync(runDir, 0o700);
}

/**
 * Starts php-fpm in the foreground (-F -y <generated conf>; the distro php.ini is kept) and resolves
 * once its socket accepts a connection. Throws SidecarError(FPM_START) naming Debian's php-fpm
 * package when no binary is found, on invalid options, or with php-fpm's own stderr when it fails.
 */
export async function startManagedFpm(options: ManagedFpmOptions): Promise<ManagedFpm> {
  const binary = findPhpFpm(options.binary);
  if (binary === null) throw notFoundError(options.binary);

  const runDir = path.resolve(options.runDir);
  const socketPath = path.join(runDir, 'php-fpm.sock');
  const pidFile = path.join(runDir, 'php-fpm.pid');
  const confPath = path.join(runDir, 'php-fpm.conf');
  if (Buffer.byteLength(socketPath) > SUN_PATH_MAX) {
    throw new SidecarError(
      ErrorCodes.FPM_START,
      `php-fpm socket path is longer than ${SUN_PATH_MAX} bytes: ${socketPath}; use a shorter run directory`,
    );
  }
  prepareRunDir(runDir);

  const { masterEnv, workerNames } = fpmEnvironment(process.env, options.env);
  const conf = renderFpmConfig({
    socketPath,
    pidFile,
    // -O keeps FPM's log on stderr (our pipe, forwarded to the logger); the file is opened but
    // stays empty. /proc/self/fd/2 cannot be used: Node's stdio pipes are socketpairs, and
    // open() on a socket fails with ENXIO.
    errorLog: path.join(runDir, 'php-fpm.log'),
    maxChildren: options.maxChildren,
    maxRequests: options.maxRequests,
    requestTerminateTimeoutMs: options.requestTerminateTimeoutMs,
    ini: options.ini,
    envNames: workerNames,
    statusPath: options.statusPath,
  });
  fs.writeFileSync(confPath, conf, { mode: 0o600 });
  await reapStaleMaster(pidFile, confPath, options.logger);
  fs.rmSync(socketPath, { force: true });

  // -F: foreground (we supervise); -O: log to stderr although it is not a TTY; -R: FPM refuses to
  // run as root without it (see the pool comment in fpm-config.ts).
  const args = ['-F', '-O', '-y', confPath, ...(process.getuid?.() === 0 ? ['-R'] : [])];
  const fpm = new FpmSupervisor(binary, args, masterEnv, socketPath, pidFile, options);
  await fpm.start();
  return fpm;
}
