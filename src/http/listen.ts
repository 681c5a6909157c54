/**
 * Binding the listeners the config names (server.listen, metrics.listen, broadcast.socket). One
 * place turns a bind failure into a ConfigError that names the key, the address, the cause in
 * words (port taken, port below 1024, an address of another machine, a socket directory that is
 * missing or read-only, a stale socket file) and what to do. The original error stays the cause.
 */
import { constants as fsConstants } from 'node:fs';
import { access, lstat, stat } from 'node:fs/promises';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { dirname } from 'node:path';
import { ConfigError, isSidecarError, SidecarError, toError } from '../errors.ts';

/** Where a listen address points: a unix socket path, or a TCP host and port. */
export type ListenTarget = { path: string } | { host: string; port: number };

/** Longest unix socket path Linux accepts (sun_path is 108 bytes with the final NUL). */
const MAX_UNIX_PATH_BYTES = 107;
/** How long the stale-socket probe of an EADDRINUSE unix path may take. */
const PROBE_TIMEOUT_MS = 500;

/**
 * "unix:/path", "HOST:PORT" or "[IPv6]:PORT" (as the schema validates them); an empty host is
 * every interface (0.0.0.0). Throws ConfigError naming `key` for anything else.
 */
export function parseListenAddress(key: string, address: string): ListenTarget {
  if (address.startsWith('unix:/')) return { path: address.slice('unix:'.length) };
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  if (match === null || port > 65535) {
    throw new ConfigError(
      `${key} = ${JSON.stringify(address)}: expected "HOST:PORT", "[IPv6]:PORT" or "unix:/absolute/path", with a port of 0-65535`,
    );
  }
  return { host: match[1] ?? (match[2] === '' ? '0.0.0.0' : (match[2] ?? '0.0.0.0')), port };
}

/**
 * Binds `server` to `address`, the value of config key `key`. Resolves once it listens; rejects
 * with a ConfigError naming the key and the address and explaining the failure. `onError`, when
 * given, receives the server's later errors (an accept failure such as EMFILE), which would
 * otherwise crash the process.
 */
export async function listenOn(
  server: net.Server,
  key: string,
  address: string,
  onError?: (err: Error) => void,
): Promise<void> {
  const target = parseListenAddress(key, address);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const ready = (): void => {
        server.off('error', reject);
        if (onError !== undefined) server.on('error', onError);
        resolve();
      };
      // A port out of range throws synchronously (ERR_SOCKET_BAD_PORT): rejected the same way.
      if ('path' in target) server.listen(target.path, ready);
      else server.listen(target.port, target.host, ready);
    });
  } catch (err) {
    throw await listenError(key, address, target, err);
  }
}

/**
 * Runs `start` (a listener set up elsewhere, e.g. the datagram socket, whose own messages already
 * explain the file system) and rethrows its failure naming `key` and `address`. The error keeps
 * its code (a SidecarError's, else ASKR_ERR_CONFIG) and is the cause.
 */
export async function namingListenKey<T>(
  key: string,
  address: string,
  start: Promise<T>,
): Promise<T> {
  try {
    return await start;
  } catch (err) {
    const message = `${key} = ${JSON.stringify(address)}: ${toError(err).message}`;
    throw isSidecarError(err)
      ? new SidecarError(err.code, message, { cause: err })
      : new ConfigError(message, { cause: err });
  }
}

async function listenError(
  key: string,
  address: string,
  target: ListenTarget,
  err: unknown,
): Promise<ConfigError> {
  const e = toError(err) as NodeJS.ErrnoException;
  const code = e.code ?? 'error';
  const why =
    'path' in target
      ? ((await unixPathProblem(target.path, code)) ?? `${e.message} (${code})`)
      : tcpProblem(key, target, code, e.message);
  return new ConfigError(`${key} = ${JSON.stringify(address)}: cannot listen: ${why}`, {
    cause: err,
  });
}

/** Plain words for a TCP bind failure `code` on `target`. Pure but for the interface list. */
export function tcpProblem(
  key: string,
  target: { host: string; port: number },
  code: string,
  message: string,
): string {
  const where = `${target.host}:${target.port}`;
  switch (code) {
    case 'EADDRINUSE':
      return `${where} is already in use by another process (EADDRINUSE): stop that process (\`ss -ltnp\` shows which) or set ${key} to a free port`;
    case 'EACCES':
      return target.port < 1024
        ? `ports below 1024 need root or the CAP_NET_BIND_SERVICE capability (EACCES): use a port of 1024 or more (e.g. ${target.host}:8080) behind a port mapping, or grant the capability (systemd AmbientCapabilities=CAP_NET_BIND_SERVICE)`
        : `permission denied binding ${where} (EACCES; a security policy such as SELinux may forbid it)`;
    case 'EADDRNOTAVAIL':
      return `${target.host} is not an address of this machine (EADDRNOTAVAIL): use 0.0.0.0 (every interface), 127.0.0.1 (this machine only) or one of its addresses: ${localAddresses().join(', ')}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return `the host name ${target.host} does not resolve (${code}): use an IP address, or a name in /etc/hosts`;
    case 'EAFNOSUPPORT':
      return `IPv6 is not available on this machine (EAFNOSUPPORT): use an IPv4 address such as 0.0.0.0`;
    case 'EINVAL':
      return `${target.host} cannot be bound (EINVAL; an IPv6 link-local address needs its interface, e.g. [fe80::1%eth0])`;
    case 'ERR_SOCKET_BAD_PORT':
      return `port ${target.port} is out of range: use 0-65535`;
    default:
      return `${message} (${code})`;
  }
}

function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.push(a.family === 'IPv6' ? `[${a.address}]` : a.address);
  }
  return out;
}

/**
 * Why a unix socket cannot be bound at `path`, from the file system: the path too long, its
 * directory missing or not writable, or something already there (a live socket, a stale one
 * left by a process that died, a file that is not a socket). Null when none of these is found.
 */
export async function unixPathProblem(path: string, code: string | null): Promise<string | null> {
  const tag = code === null ? '' : ` (${code})`;
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_UNIX_PATH_BYTES) {
    return `the path is ${bytes} bytes long; a unix socket path may have at most ${MAX_UNIX_PATH_BYTES}${tag}: choose a shorter one`;
  }
  const dir = dirname(path);
  const dirStat = await stat(dir).catch((err: unknown) => err as NodeJS.ErrnoException);
  if (dirStat instanceof Error) {
    return dirStat.code === 'ENOENT'
      ? `the directory ${dir} does not exist${tag}: create it (systemd RuntimeDirectory=, a volume, or mkdir) or choose another path`
      : `cannot reach the directory ${dir}: ${dirStat.code ?? dirStat.message}${tag}`;
  }
  if (!dirStat.isDirectory()) return `${dir} is not a directory${tag}`;
  const existing = await lstat(path).catch(() => null);
  if (existing !== null) {
    if (!existing.isSocket()) {
      return `${path} exists and is not a socket${tag}: remove it or choose another path`;
    }
    const probe = await probeSocket(path);
    if (probe === 'ECONNREFUSED') {
      return `${path} is a stale socket file: the process that made it is gone${tag}; remove it (rm ${path}) and start again`;
    }
    return `another process is listening on ${path}${tag}: stop it or choose another path`;
  }
  const writable = await access(dir, fsConstants.W_OK | fsConstants.X_OK).then(
    () => true,
    () => false,
  );
  if (!writable) {
    return `the directory ${dir} is not writable by this user (uid ${process.getuid?.() ?? '?'})${tag}: fix its owner or mode, or choose another path`;
  }
  return null;
}

/** Connects to a unix socket: 'connected', or the errno (ECONNREFUSED: nobody listens). */
function probeSocket(path: string): Promise<string> {
  return new Promise((resolve) => {
    const client = net.connect(path);
    client.setTimeout(PROBE_TIMEOUT_MS, () => {
      client.destroy();
      resolve('timeout');
    });
    client.once('connect', () => {
      client.destroy();
      resolve('connected');
    });
    client.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}
