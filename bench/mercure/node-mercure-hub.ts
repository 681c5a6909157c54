/**
 * The reference hub of bench:mercure: the npm package `mercure` 0.1.0 (Ilshidur/node-mercure, a
 * Mercure 0.x hub on Express and the `sse` package), run as its README's `Server` with its
 * defaults: hub at /hub (hard-coded in the package), no Redis, history in memory (never trimmed).
 *   node bench/mercure/node-mercure-hub.ts PORT JWT_KEY
 * Two bugs stop it from serving anything; both are fixed from outside (the package is not edited):
 * 1. `Hub.listen` registers `this.onSseConnection` unbound, so every subscribe runs with `this` =
 *    the SSE emitter, `this.authorizeSubscribe` throws inside its try: every subscriber gets 401.
 *    Fix: bind the method on the instance before listen().
 * 2. `authorize` verifies with jsonwebtoken's `{ complete: true }` and returns {header, payload,
 *    signature}, but the callers read `claims.mercure`: no token ever grants anything, and every
 *    publish gets 401. Fix: the hub's authorizePublish/authorizeSubscribe return the payload.
 */
import { createRequire } from 'node:module';

type Authorize = (req: unknown) => Promise<{ payload: unknown } | false>;
interface MercureHub {
  onSseConnection: (...args: unknown[]) => Promise<void>;
  authorizePublish: Authorize;
  authorizeSubscribe: Authorize;
}
interface MercureServer {
  hub: MercureHub;
  server: { maxConnections: number };
  listen(port: number, addr: string): Promise<void>;
  end(opts: { force: boolean }): Promise<void>;
}
type MercureServerClass = new (config: { jwtKey: string; path: string }) => MercureServer;

const { Server } = createRequire(import.meta.url)('mercure') as { Server: MercureServerClass };

const [portArg, jwtKey] = process.argv.slice(2);
if (portArg === undefined || jwtKey === undefined) {
  throw new Error('usage: node bench/mercure/node-mercure-hub.ts PORT JWT_KEY');
}
const server = new Server({ jwtKey, path: '/hub' });
const { hub } = server;
hub.onSseConnection = hub.onSseConnection.bind(hub);
const payloadOf =
  (authorize: Authorize): Authorize =>
  async (req) => {
    const decoded = await authorize(req);
    return decoded === false ? false : (decoded.payload as { payload: unknown });
  };
hub.authorizePublish = payloadOf(hub.authorizePublish.bind(hub));
hub.authorizeSubscribe = payloadOf(hub.authorizeSubscribe.bind(hub));
server.server.maxConnections = 20_000;
await server.listen(Number(portArg), '127.0.0.1');
process.on('SIGTERM', () => {
  void server.end({ force: true }).finally(() => process.exit(0));
});
