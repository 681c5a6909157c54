/**
 * The "embedded default" (docs/architecture.md, Design notes: Operations): with no
 * [fastcgi].address, the sidecar runs its own php-fpm on a private Unix socket and keeps it alive
 * (the supervisor is fpm-supervisor.ts). This file resolves the binary, prepares the private run
 * directory and the generated configuration. Invariant: PHP never runs as root; a sidecar started
 * as root runs the pool's workers as fpm.user (www-data by default) and never passes -R.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { defaultSearchDirs, findPhpFpm } from './find-php-fpm.ts';
import { fpmEnvironment, renderFpmConfig } from './fpm-config.ts';
import { FpmSupervisor } from './fpm-supervisor.ts';
import {
  Access,
  accessObstacle,
  describeIdentity,
  loadUserDatabase,
  resolvePhpIdentity,
  type PhpIdentity,
} from './php-identity.ts';
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
  /**
   * fpm.user: who the workers run as when the sidecar runs as root; '' or absent: www-data, or
   * nobody where the system has no www-data (a warning says so). Root is refused. Ignored (with a
   * warning when set) when the sidecar is not root: FPM then cannot switch users.
   */
  user?: string;
  /** fpm.group: the workers' group; '' or absent: the user's primary group. Root is refused. */
  group?: string;
  /**
   * server.root: when given, checked once at start to be readable by the workers; a warning
   * names the path and the user when it is not (php-fpm would answer "Primary script unknown").
   */
  documentRoot?: string;
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
  /** Who the workers run as: set when the sidecar runs as root, undefined when they run as it. */
  readonly workers: PhpIdentity | undefined;
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
 * As root: who the workers run as (resolved from fpm.user/fpm.group, never root). Not root:
 * undefined, FPM cannot switch users and PHP runs as the sidecar's user. Warns about a fallback
 * user, an ignored fpm.user, and a document root the workers cannot read.
 */
async function workerIdentity(options: ManagedFpmOptions): Promise<PhpIdentity | undefined> {
  const { logger } = options;
  const want = { user: options.user ?? '', group: options.group ?? '' };
  if (process.getuid?.() !== 0) {
    if (want.user !== '' || want.group !== '') {
      logger.warn(
        { user: want.user || undefined, group: want.group || undefined },
        'fpm.user/fpm.group are ignored: the sidecar is not root, so the managed php-fpm runs PHP as the sidecar user',
      );
    }
    return undefined;
  }
  const { identity, fellBackFrom } = resolvePhpIdentity(want, await loadUserDatabase());
  if (fellBackFrom !== undefined) {
    logger.warn(
      { user: identity.user, group: identity.group, missing: fellBackFrom },
      `this system has no ${fellBackFrom} user: the managed php-fpm runs PHP as ${describeIdentity(identity)} (set fpm.user and fpm.group to choose)`,
    );
  }
  if (options.documentRoot !== undefined && options.documentRoot !== '') {
    const obstacle = accessObstacle(options.documentRoot, identity, Access.R | Access.X);
    if (obstacle !== null) {
      logger.warn(
        {
          documentRoot: options.documentRoot,
          user: identity.user,
          group: identity.group,
          obstacle,
        },
        `PHP runs as ${describeIdentity(identity)} and cannot read the document root ${options.documentRoot}: ${obstacle}. PHP requests will fail (php-fpm: "Primary script unknown", 404); give ${identity.user} read and search access (e.g. chmod o+rx, or chgrp ${identity.group} and g+rx), or set fpm.user`,
      );
    }
  }
  return identity;
}

/**
 * Starts php-fpm in the foreground (-F -y <generated conf>; the distro php.ini is kept) and resolves
 * once its socket accepts a connection. As root the workers run as `options.user` (www-data by
 * default), never root. Throws SidecarError(FPM_START) naming Debian's php-fpm package when no
 * binary is found, on invalid options, or with php-fpm's own stderr when it fails; ConfigError for
 * an unknown or root fpm.user/fpm.group.
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
  const workers = await workerIdentity(options);
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
    // Only the master (root) touches runDir (0700): conf, pid, log, and the listen socket it
    // creates before forking; the workers inherit the listening descriptor.
    workers:
      workers === undefined
        ? undefined
        : {
            user: workers.user,
            group: workers.group,
            listenUid: process.getuid?.() ?? 0,
            listenGid: process.getgid?.() ?? 0,
          },
  });
  fs.writeFileSync(confPath, conf, { mode: 0o600 });
  await reapStaleMaster(pidFile, confPath, options.logger);
  fs.rmSync(socketPath, { force: true });

  // -F: foreground (we supervise); -O: log to stderr although it is not a TTY. Never -R: as root
  // the pool has user/group lines, and FPM itself refuses uid or gid 0 for its workers.
  const args = ['-F', '-O', '-y', confPath];
  const fpm = new FpmSupervisor(binary, args, masterEnv, socketPath, pidFile, options, workers);
  await fpm.start();
  return fpm;
}
