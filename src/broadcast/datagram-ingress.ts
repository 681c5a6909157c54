/**
 * The Unix datagram socket PHP publishes to (docs/protocol.md; docs/architecture.md, Design notes:
 * Publishing). Binds the socket (replacing a stale file, never a live socket or a non-socket),
 * applies mode and group, parses each datagram and hands good ones to the hub. Invariants: a bad
 * datagram is counted by reason and logged at most once per reason per 10 s, never fatal; an
 * oversize datagram is rejected as too_large, never delivered truncated; close() unlinks only the
 * socket file this ingress made. As root the socket's group defaults to the PHP workers' group
 * (fpm.group, else fpm.user's, else www-data); a warning at start names whatever would refuse them.
 * Known limit: children spawned after start inherit the socket (no FD_CLOEXEC, see below).
 */
import { chmod, chown, lstat, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import { dirname } from 'node:path';
import { DgramSocket } from 'node-unix-socket';
import type { Logger } from 'pino';
import { ErrorCodes, SidecarError, toError } from '../errors.ts';
import {
  Access,
  accessObstacle,
  describeIdentity,
  loadUserDatabase,
  lookupGid,
  resolvePhpIdentity,
  type PhpIdentity,
} from '../fpm/php-identity.ts';
import {
  parseDatagram,
  type DatagramLimits,
  type DatagramMessage,
  type DatagramRejectReason,
} from './datagram-codec.ts';

export interface DatagramIngressOptions {
  /** Socket path; at most 107 bytes (sun_path). */
  path: string;
  /** File mode of the socket, e.g. 0o660 (connecting needs write permission). */
  mode: number;
  /**
   * Group owning the socket: a group name or a numeric gid; '' is the PHP workers' group when the
   * sidecar runs as root and `php` is given, else the sidecar's own (unchanged).
   */
  group: string;
  /**
   * Who publishes: the PHP workers' user and group as the config names them (ingressSettings).
   * Checked once bound; a warning names what would refuse them. undefined: PHP runs as the
   * sidecar's own user (a managed pool not started as root): nothing to check.
   */
  php?: PhpPublisher | undefined;
  limits: DatagramLimits;
  logger: Logger;
  /** Called synchronously per good datagram; a throw is caught and counted as 'rejected_by_hub'. */
  onMessage(message: DatagramMessage): void;
  /** Called once per rejected datagram (for metrics); every call is also rate-limit logged. */
  onReject?(reason: DatagramRejectReason | 'rejected_by_hub', detail: string): void;
}

/** fpm.user / fpm.group ('' for the defaults) and where that choice comes from, for log lines. */
export interface PhpPublisher {
  user: string;
  group: string;
  /** e.g. 'fpm.user/fpm.group', 'the managed pool', 'a stock php-fpm pool (assumed)'. */
  source: string;
}

const MANAGED_SOURCE = 'the managed pool';

export interface DatagramIngress {
  readonly path: string;
  /**
   * Applies new limits (a reload: broadcast.max_datagram_size, the [sse] channel limits) to the
   * datagrams received from now on. The path, mode and group need a restart. Never throws.
   */
  reconfigure(limits: DatagramLimits): void;
  /** Stops receiving, unlinks the socket file (if it is still ours). Idempotent. */
  close(): Promise<void>;
}

/**
 * node-unix-socket reads every datagram into a 65535-byte buffer and does not pass MSG_TRUNC
 * (src/dgram.rs `on_readable`, checked with 65536- and 200000-byte datagrams): a larger datagram
 * arrives cut to 65535 bytes. So a read of 65535 bytes may be truncated and is rejected, and the
 * largest datagram accepted is 65534 bytes whatever max_datagram_size says.
 */
export const RECEIVE_CAP_BYTES = 65535;
export const MAX_ACCEPTED_DATAGRAM_BYTES = RECEIVE_CAP_BYTES - 1;

/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
const PROBE_TIMEOUT_MS = 2000;
/** At most one warn line per reject reason per window. */
export const REJECT_LOG_WINDOW_MS = 10_000;

/**
 * Binds the datagram socket and starts delivering. Throws SidecarError (code DATAGRAM) when the
 * path is too long, is not a socket, is held by a live process, or bind/chmod/chown fails.
 */
export async function startDatagramIngress(
  options: DatagramIngressOptions,
): Promise<DatagramIngress> {
  const { path, logger } = options;
  if (path === '' || Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new SidecarError(
      ErrorCodes.DATAGRAM,
      `datagram socket path ${JSON.stringify(path)} must be 1 to ${MAX_SOCKET_PATH_BYTES} bytes`,
    );
  }
  let limits = receivableLimits(options.limits, path, logger);

  await makeSocketDir(dirname(path));
  await removeStaleSocket(path);
  const php = await publisherIdentity(options.php, logger);
  const gid = await socketGid(options.group, php);

  // node-unix-socket 0.2.x never sets FD_CLOEXEC (its set_clo_exec calls F_SETFL, a no-op for
  // that flag), and Node cannot set it: every child spawned after this point (a managed
  // php-fpm, a restarted one) inherits the socket. While the sidecar lives that is harmless
  // (only it reads); after it dies such a child keeps the socket alive, so publishers time out
  // instead of failing fast and a restarted sidecar sees it as live. Spawn children first.
  const socket = new DgramSocket();
  let closed = false;
  const rejects = new RejectLog(logger.child({ socket: path }));
  const reject = (reason: DatagramRejectReason | 'rejected_by_hub', detail: string): void => {
    rejects.note(reason, detail);
    options.onReject?.(reason, detail);
  };

  socket.on('data', (datagram: Buffer) => {
    if (closed) return;
    if (datagram.length >= RECEIVE_CAP_BYTES) {
      reject(
        'too_large',
        `datagram filled the ${RECEIVE_CAP_BYTES}-byte receive buffer (maybe truncated); ` +
          `the limit is ${limits.maxDatagramBytes}`,
      );
      return;
    }
    const result = parseDatagram(datagram, limits);
    if (!result.ok) {
      reject(result.reason, result.detail);
      return;
    }
    try {
      options.onMessage(result.message);
    } catch (err) {
      reject('rejected_by_hub', toError(err).message);
    }
  });
  // The library closes the socket before emitting 'error' (a failed recvmsg); publishes stop,
  // the process must not crash (STYLE.md: runtime errors never crash).
  socket.on('error', (err: Error) => {
    logger.error({ err, socket: path }, 'datagram socket failed; publishing over it has stopped');
  });

  let inode: number | undefined;
  try {
    socket.bind(path);
    inode = (await lstat(path)).ino;
    // Between bind and chmod the socket has the umask's mode; 0755-style defaults deny
    // connect to others (it needs write permission), so the window never widens access.
    await chmod(path, options.mode);
    if (gid !== undefined) await chown(path, -1, gid);
  } catch (err) {
    socket.close();
    // Only a file this call bound: after a failed bind (EADDRINUSE) the file is someone else's.
    if (inode !== undefined) await unlinkIfOurs(path, inode);
    throw new SidecarError(
      ErrorCodes.DATAGRAM,
      `cannot set up the datagram socket ${path}: ${toError(err).message}`,
      { cause: err },
    );
  }
  const ownInode = inode;
  logger.info(
    {
      socket: path,
      mode: options.mode.toString(8),
      group: options.group || (gid === undefined ? undefined : String(gid)),
      php: php === undefined || php.guessed ? undefined : describeIdentity(php.identity),
    },
    'datagram ingress listening',
  );
  if (php !== undefined) warnIfRefused(path, options.mode, php, logger);

  return {
    path,
    reconfigure(next: DatagramLimits): void {
      limits = receivableLimits(next, path, logger);
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      socket.close();
      rejects.flush();
      await unlinkIfOurs(path, ownInode);
    },
  };
}

/** The configured limits with the size capped to what the library receives untruncated. */
function receivableLimits(
  configured: DatagramLimits,
  path: string,
  logger: Logger,
): DatagramLimits {
  const limits: DatagramLimits = {
    ...configured,
    maxDatagramBytes: Math.min(configured.maxDatagramBytes, MAX_ACCEPTED_DATAGRAM_BYTES),
  };
  if (configured.maxDatagramBytes > MAX_ACCEPTED_DATAGRAM_BYTES) {
    // The default (64 KiB) is lowered by two bytes: worth a debug line, not a line at every start.
    const level = configured.maxDatagramBytes === 65536 ? 'debug' : 'info';
    logger[level](
      { path, configured: configured.maxDatagramBytes, effective: limits.maxDatagramBytes },
      'datagram size limit lowered to what node-unix-socket receives untruncated',
    );
  }
  return limits;
}

/** Unlinks the socket file only if it is still the one we bound (a newer process may own it). */
async function unlinkIfOurs(path: string, inode: number): Promise<void> {
  const stat = await lstat(path).catch(() => undefined);
  if (stat?.isSocket() !== true || stat.ino !== inode) return;
  // Best effort: losing a race with another remover leaves nothing to clean.
  await unlink(path).catch(() => undefined);
}

/**
 * Makes the path free to bind: nothing there is fine; a socket nobody serves (ECONNREFUSED on a
 * stream connect) is unlinked; a live socket or anything that is not a socket is refused.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SidecarError(ErrorCodes.DATAGRAM, `cannot inspect ${path}`, { cause: err });
  });
  if (stat === undefined) return;
  if (!stat.isSocket()) {
    throw new SidecarError(
      ErrorCodes.DATAGRAM,
      `${path} exists and is not a socket; refusing to replace it (remove it or choose another broadcast.socket)`,
    );
  }
  const code = await probe(path);
  if (code === 'ENOENT') return; // vanished meanwhile
  if (code === 'ECONNREFUSED') {
    await unlink(path).catch((err: unknown) => {
      throw new SidecarError(ErrorCodes.DATAGRAM, `cannot remove the stale socket ${path}`, {
        cause: err,
      });
    });
    return;
  }
  // EPROTOTYPE: a datagram socket is bound there (the stream connect reached it but the type
  // differs); a successful connect means some stream server holds it. Either way, not stale.
  throw new SidecarError(
    ErrorCodes.DATAGRAM,
    code === 'EPROTOTYPE'
      ? `another sidecar is bound to ${path}`
      : code === 'connected'
        ? `a stream socket server is listening on ${path}; refusing to replace it`
        : `cannot tell whether ${path} is in use (${code}); refusing to replace it`,
  );
}

/**
 * Probes with a stream connect rather than an empty datagram: a live sidecar then sees nothing,
 * and the kernel's errno is precise (EPROTOTYPE: bound dgram socket; ECONNREFUSED: stale).
 */
function probe(path: string): Promise<string> {
  return new Promise((resolve) => {
    const client = net.connect(path);
    client.setTimeout(PROBE_TIMEOUT_MS, () => {
      client.destroy();
      resolve('no answer to a connect');
    });
    client.once('connect', () => {
      client.destroy();
      resolve('connected');
    });
    client.once('error', (err: NodeJS.ErrnoException) => {
      resolve(err.code ?? err.message);
    });
  });
}

/**
 * Creates the socket's directory. Directories it creates are chmod-ed to 0755 whatever the umask
 * (a UMask=0077 unit would make them 0700): PHP's workers run as another user and must search it.
 */
async function makeSocketDir(dir: string): Promise<void> {
  try {
    const first = await mkdir(dir, { recursive: true, mode: 0o755 });
    if (first === undefined) return;
    for (let d = dir; d.length >= first.length; d = dirname(d)) {
      await chmod(d, 0o755);
      if (d === first) break;
    }
  } catch (err) {
    throw new SidecarError(ErrorCodes.DATAGRAM, `cannot create the directory of ${dir}`, {
      cause: err,
    });
  }
}

interface ResolvedPublisher {
  identity: PhpIdentity;
  source: string;
  /** True when the identity is an assumption (no fpm.user, and www-data missing): never acted on. */
  guessed: boolean;
}

/** Resolves `php`. Throws ConfigError (naming fpm.user or fpm.group) for an unknown or root one. */
async function publisherIdentity(
  php: PhpPublisher | undefined,
  logger: Logger,
): Promise<ResolvedPublisher | undefined> {
  if (php === undefined) return undefined;
  const { identity, fellBackFrom } = resolvePhpIdentity(php, await loadUserDatabase());
  // No www-data here and no fpm.user: a guess about an FPM elsewhere would only mislead. (The
  // managed pool warns about its own fallback, and its workers do run as that user.)
  const guessed = fellBackFrom !== undefined && php.source !== MANAGED_SOURCE;
  if (guessed) {
    logger.debug(
      { missing: fellBackFrom },
      'no www-data user: the datagram socket keeps its group',
    );
  }
  return { identity, source: php.source, guessed };
}

/**
 * The gid to give the socket: broadcast.socket_group when set; else, as root, the PHP workers'
 * group (only root may chown to a group it is not in; FPM's workers need it to connect, since
 * sending needs write permission); else undefined (the sidecar's own group).
 */
async function socketGid(
  group: string,
  php: ResolvedPublisher | undefined,
): Promise<number | undefined> {
  if (group !== '') {
    if (/^\d+$/.test(group)) return Number(group);
    try {
      return lookupGid(group, await loadUserDatabase(), 'broadcast.socket_group');
    } catch (err) {
      throw new SidecarError(
        ErrorCodes.DATAGRAM,
        `group ${JSON.stringify(group)} for the datagram socket is not in /etc/group`,
        { cause: err },
      );
    }
  }
  if (php === undefined || php.guessed || process.getuid?.() !== 0) return undefined;
  return php.identity.gid;
}

/**
 * One warning at start when the PHP workers could not publish: the socket's group or mode, or a
 * directory on the way, refuses them. askr_broadcast() would return false with "Permission
 * denied" on every call, which the sidecar never sees.
 */
function warnIfRefused(path: string, mode: number, php: ResolvedPublisher, logger: Logger): void {
  if (php.guessed) return;
  const obstacle = accessObstacle(path, php.identity, Access.W);
  if (obstacle === null) return;
  const who = describeIdentity(php.identity);
  logger.warn(
    {
      socket: path,
      php: who,
      source: php.source,
      mode: mode.toString(8).padStart(4, '0'),
      obstacle,
    },
    `PHP workers running as ${who} (${php.source}) cannot publish to the datagram socket: ${obstacle}. ` +
      `askr_broadcast() will fail with "Permission denied". Give the socket a group they are in ` +
      `(broadcast.socket_group, mode 0660; as root it defaults to fpm.group), make its directory ` +
      `searchable by them, or set fpm.user/fpm.group to the user PHP really runs as`,
  );
}

/**
 * Rate-limited reject logging: the first reject of a reason is logged at once; later ones in the
 * same 10 s window are counted and logged as one line (with the count) when the window ends.
 */
class RejectLog {
  readonly #logger: Logger;
  readonly #byReason = new Map<
    string,
    { loggedAt: number; pending: number; detail: string; timer: NodeJS.Timeout | undefined }
  >();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  note(reason: string, detail: string): void {
    const now = Date.now();
    const state = this.#byReason.get(reason);
    if (
      state === undefined ||
      (state.pending === 0 && now - state.loggedAt >= REJECT_LOG_WINDOW_MS)
    ) {
      this.#logger.warn({ reason, detail, count: 1 }, 'datagram rejected');
      this.#byReason.set(reason, { loggedAt: now, pending: 0, detail, timer: undefined });
      return;
    }
    state.pending += 1;
    state.detail = detail;
    // unref: a pending summary line must not keep the process alive.
    state.timer ??= setTimeout(
      () => this.#emit(reason),
      state.loggedAt + REJECT_LOG_WINDOW_MS - now,
    ).unref();
  }

  /** Logs every pending count now (on close). */
  flush(): void {
    for (const reason of this.#byReason.keys()) this.#emit(reason);
  }

  #emit(reason: string): void {
    const state = this.#byReason.get(reason);
    if (state === undefined) return;
    clearTimeout(state.timer);
    state.timer = undefined;
    if (state.pending === 0) return;
    this.#logger.warn(
      { reason, detail: state.detail, count: state.pending },
      'datagrams rejected since the last line',
    );
    state.loggedAt = Date.now();
    state.pending = 0;
  }
}

/** Who publishes, as ingressSettings describes it. */
function phpPublisher(
  fpm: { user: string; group: string },
  managed: boolean,
  uid: number | undefined,
): PhpPublisher | undefined {
  // A managed pool not started as root cannot switch users: PHP is the sidecar, nothing to check.
  if (managed && uid !== 0) return undefined;
  if (fpm.user !== '' || fpm.group !== '') return { ...fpm, source: 'fpm.user/fpm.group' };
  if (managed) return { ...fpm, source: MANAGED_SOURCE };
  return { ...fpm, source: 'a stock php-fpm pool (assumed; set fpm.user/fpm.group)' };
}

/**
 * The ingress settings of a config ([broadcast], the [sse] channel limits, and who PHP runs as),
 * for one home. `uid` is the sidecar's (a parameter for tests). Who publishes: fpm.user/fpm.group
 * when set; else a managed pool (fastcgi.address empty) started as root runs www-data; a managed
 * pool not started as root runs PHP as the sidecar itself (nothing to check); an external FPM is
 * assumed to be a stock pool (www-data, as Debian's and the Docker php images' pools are).
 */
export function ingressSettings(
  config: {
    broadcast: { socket_mode: string; socket_group: string; max_datagram_size: number };
    sse: { max_channel_name_length: number; max_channels_per_connection: number };
    fastcgi: { address: string };
    fpm: { user: string; group: string };
  },
  uid: number | undefined = process.getuid?.(),
): Pick<DatagramIngressOptions, 'mode' | 'group' | 'limits' | 'php'> {
  const php = phpPublisher(config.fpm, config.fastcgi.address === '', uid);
  return {
    mode: Number.parseInt(config.broadcast.socket_mode, 8),
    group: config.broadcast.socket_group,
    php,
    limits: {
      maxDatagramBytes: config.broadcast.max_datagram_size,
      maxChannelNameLength: config.sse.max_channel_name_length,
      maxChannels: config.sse.max_channels_per_connection,
    },
  };
}
