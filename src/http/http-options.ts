/**
 * What the HTTP side takes from the config, each as one mapping used at start and at reload: the
 * Node server's connection limits and timeouts, the upstream proxy's routes and timeouts, and the
 * server facts PHP sees (CgiServerInfo). Pure except applyHttpServerOptions, which sets the
 * properties Node reads on each new connection or check.
 */
import type { Server } from 'node:http';
import type { SidecarConfig } from '../config/schema.ts';
import { VERSION } from '../version.ts';
import type { CgiServerInfo } from './cgi-params.ts';
import { parseUpstreamRoutes } from './upstream-routes.ts';

/** The Node server settings that may change while it listens. */
export interface HttpServerOptions {
  /** server.max_connections: connections beyond it are refused on accept. */
  maxConnections: number;
  /** server.header_timeout, ms. */
  headersTimeoutMs: number;
  /** server.keep_alive_timeout, ms. */
  keepAliveTimeoutMs: number;
}

/** Maps [server] to the listening server's limits (max_header_size needs a restart: not here). */
export function httpServerOptionsFrom(config: Pick<SidecarConfig, 'server'>): HttpServerOptions {
  return {
    maxConnections: config.server.max_connections,
    headersTimeoutMs: config.server.header_timeout,
    keepAliveTimeoutMs: config.server.keep_alive_timeout,
  };
}

/** Sets them on the server: Node reads each when it accepts or checks a connection. */
export function applyHttpServerOptions(server: Server, options: HttpServerOptions): void {
  server.maxConnections = options.maxConnections;
  server.headersTimeout = options.headersTimeoutMs;
  server.keepAliveTimeout = options.keepAliveTimeoutMs;
}

/** createUpstreamProxy's and reconfigure()'s settings. */
export interface UpstreamOptions {
  routes: Readonly<Record<string, string>>;
  connectTimeoutMs: number;
  timeoutMs: number;
}

/**
 * Maps [proxy], validating every route (prefix and upstream address) first.
 * @throws ConfigError naming `proxy.routes` and the bad entry.
 */
export function upstreamOptionsFrom(config: Pick<SidecarConfig, 'proxy'>): UpstreamOptions {
  parseUpstreamRoutes(config.proxy.routes);
  return {
    routes: config.proxy.routes,
    connectTimeoutMs: config.proxy.connect_timeout,
    timeoutMs: config.proxy.timeout,
  };
}

/**
 * The server facts PHP receives (DOCUMENT_ROOT, SERVER_NAME, SERVER_SOFTWARE, how PATH_INFO is
 * sent), from server.root, server_name, software and recipe.
 */
export function serverInfoFrom(config: Pick<SidecarConfig, 'server'>): Required<CgiServerInfo> {
  const { server } = config;
  return {
    documentRoot: server.root,
    serverName: server.server_name,
    pathInfo:
      server.recipe === 'symfony' ? 'never' : server.recipe === 'generic' ? 'translated' : 'always',
    serverSoftware:
      server.software !== ''
        ? server.software
        : server.recipe === 'wordpress'
          ? // WordPress enables pretty permalinks only for a server it knows ($is_nginx).
            `nginx (askr-sidecar/${VERSION})`
          : `askr-sidecar/${VERSION}`,
  };
}
