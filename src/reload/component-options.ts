/**
 * `optionsFrom(config)`: everything the running components take from a config, derived and
 * validated in one call that start-up and every reload share. It throws (ConfigError naming the
 * key) before anything is applied, so a reload is all or nothing. Start-up alone derives the
 * values it cannot know from the file (the real document root, the datagram socket's fallback
 * path); a reload keeps those because they belong to keys that need a restart.
 */
import { constants as fsConstants, realpathSync } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { LevelWithSilent, Logger } from 'pino';
import { GripAuth } from '../broadcast/grip-auth.ts';
import { ingressSettings } from '../broadcast/datagram-ingress.ts';
import type { DatagramLimits } from '../broadcast/datagram-codec.ts';
import { usableSocketPath } from '../broadcast/socket-path.ts';
import type { SidecarConfig } from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import { poolOptionsFrom, type PoolOptions } from '../fastcgi/pool-options.ts';
import type { CgiServerInfo } from '../http/cgi-params.ts';
import {
  httpServerOptionsFrom,
  serverInfoFrom,
  upstreamOptionsFrom,
  type HttpServerOptions,
  type UpstreamOptions,
} from '../http/http-options.ts';
import { proxyTrustFrom, type ProxyTrust } from '../http/trusted-proxies.ts';
import type { TopicMatcher } from '../mercure/matchers.ts';
import { tokenSettingsOf, type MercureCacheHooks } from '../mercure/mercure-route.ts';
import { TokenVerifier } from '../mercure/token.ts';
import { hubOptionsFrom, type HubConfigOptions } from '../sse/hub-options.ts';

/** Each component's part of one config, ready to construct with or to apply. */
export interface ComponentOptions {
  /** The config the request handlers read (through a getter) from now on. */
  readonly config: SidecarConfig;
  readonly logLevel: LevelWithSilent;
  readonly trust: ProxyTrust;
  readonly upstream: UpstreamOptions;
  readonly http: HttpServerOptions;
  readonly serverInfo: Required<CgiServerInfo>;
  /** server.buffer_memory_limit: what buffered bodies and responses may hold together, bytes. */
  readonly bufferMemoryLimitBytes: number;
  readonly pool: PoolOptions;
  readonly hub: HubConfigOptions;
  readonly ingress: DatagramLimits;
  readonly gripAuth: GripAuth;
  /** Mercure token verification with the keys imported (a "file:" key read). */
  readonly verifier: TokenVerifier;
}

/** What optionsFrom needs besides the config: callbacks wired once, at start. */
export interface OptionsContext {
  /** Told when a Mercure URL pattern hits its evaluation time limit (metrics and a log line). */
  readonly onPatternAborted: (matcher: TopicMatcher) => void;
  /** Counters of the Mercure verifier's caches (tokens, compiled patterns). */
  readonly mercureCache?: MercureCacheHooks;
}

/**
 * Derives and validates every component's options: trusted proxies, proxy routes and their
 * upstream addresses, [grip] keys, Mercure keys (key files read), server.temp_dir, the pool and
 * hub limits. Async only for the key import and the file checks.
 * @throws ConfigError naming the first bad key; nothing has been applied anywhere then.
 */
export async function optionsFrom(
  config: SidecarConfig,
  context: OptionsContext,
): Promise<ComponentOptions> {
  const trust = proxyTrustFrom(config);
  const upstream = upstreamOptionsFrom(config);
  const gripAuth = new GripAuth(config.grip);
  const pool = poolOptionsFrom(config);
  const hub = hubOptionsFrom(config);
  await checkTempDir(config.server.temp_dir);
  const verifier = await TokenVerifier.create(
    tokenSettingsOf(config, context.onPatternAborted, context.mercureCache),
  );
  return {
    config,
    logLevel: config.log.level,
    trust,
    upstream,
    http: httpServerOptionsFrom(config),
    serverInfo: serverInfoFrom(config),
    bufferMemoryLimitBytes: config.server.buffer_memory_limit,
    pool,
    hub,
    ingress: ingressSettings(config).limits,
    gripAuth,
    verifier,
  };
}

/**
 * The values start-up derives from the machine, written into `config`: server.root as its real
 * path (symlinks resolved, so SCRIPT_FILENAME checks compare real paths) and the datagram
 * socket's private fallback when the default directory cannot be used. Both keys need a restart,
 * so a reload keeps these values (see config-changes.ts).
 * @throws ConfigError when the document root does not exist.
 */
export async function deriveStartValues(config: SidecarConfig, logger: Logger): Promise<void> {
  try {
    config.server.root = realpathSync(config.server.root);
  } catch (err) {
    throw new ConfigError(
      `server.root = ${JSON.stringify(config.server.root)}: the document root does not exist`,
      { cause: err },
    );
  }
  config.broadcast.socket = await usableSocketPath(config.broadcast.socket, logger);
}

/** Warnings about a config that works but probably not as meant: logged at start and reload. */
export function configWarnings(options: ComponentOptions): Array<{ key: string; message: string }> {
  const { config } = options;
  const out: Array<{ key: string; message: string }> = [];
  if (config.sse.grant_secret === '') {
    out.push({
      key: 'sse.grant_secret',
      message:
        'grants do not survive a restart and are not valid on other cluster nodes: set sse.grant_secret',
    });
  } else if (config.sse.grant_secret.length < 32) {
    out.push({
      key: 'sse.grant_secret',
      message: 'sse.grant_secret is short: use 32+ random characters',
    });
  }
  if (options.gripAuth.enabled && !config.metrics.enabled) {
    out.push({
      key: 'metrics.enabled',
      message: 'grip publishing is configured but served on the metrics listener, which is off',
    });
  }
  return out;
}

/** server.temp_dir, when set, must be a directory this user can create files in. */
async function checkTempDir(dir: string): Promise<void> {
  if (dir === '') return;
  const problem = await stat(dir).then(
    async (st) => {
      if (!st.isDirectory()) return 'not a directory';
      return access(dir, fsConstants.W_OK | fsConstants.X_OK).then(
        () => null,
        () => `not writable by this user (uid ${String(process.getuid?.() ?? '?')})`,
      );
    },
    (err: unknown) => `cannot use it (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
  );
  if (problem !== null) {
    throw new ConfigError(`server.temp_dir = ${JSON.stringify(dir)}: ${problem}`);
  }
}

/**
 * The parts of `next` a running component cannot switch to, replaced by what runs: the FastCGI
 * pool's keep-alive mode (fastcgi.keep_alive, or a pool_size that changes what "auto" picks)
 * needs a restart; its cap and timeouts apply live.
 */
export function keepStartOnlyParts(
  next: ComponentOptions,
  running: ComponentOptions,
): { options: ComponentOptions; needRestart: string[] } {
  if (next.pool.plan.keepAlive === running.pool.plan.keepAlive)
    return { options: next, needRestart: [] };
  return {
    options: {
      ...next,
      pool: { ...next.pool, plan: { ...next.pool.plan, keepAlive: running.pool.plan.keepAlive } },
    },
    needRestart: ['fastcgi.keep_alive'],
  };
}
