/**
 * FastCGI address parsing: "unix:/abs/path", "host:port" or "[v6]:port" (the sidecar.toml
 * `fastcgi.address` forms). Pure; a bad address is a configuration error raised at start.
 */
import { ConfigError } from '../errors.ts';

/** Where to connect: a unix socket path or a TCP host and port. */
export type FcgiTarget =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/** Parse a FastCGI address; throws ConfigError naming the address and the accepted forms. */
export function parseFcgiAddress(address: string): FcgiTarget {
  if (address.startsWith('unix:')) {
    const path = address.slice('unix:'.length);
    if (path !== '') return { kind: 'unix', path };
  } else {
    const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
    const host = match?.[1] ?? match?.[2];
    const port = Number(match?.[3]);
    if (host !== undefined && port >= 1 && port <= 65535) return { kind: 'tcp', host, port };
  }
  throw new ConfigError(
    `bad FastCGI address ${JSON.stringify(address)}: expected "unix:/path", "host:port" or "[v6]:port"`,
  );
}
