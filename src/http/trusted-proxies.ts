/**
 * Who is the client? X-Forwarded-For / X-Forwarded-Proto are believed only when the direct peer is
 * a configured trusted proxy (nginx realip with `real_ip_recursive on`). Pure: takes addresses and
 * header values as plain strings, never a socket. Invariant: an untrusted peer can never change
 * the client address or the scheme.
 */
import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../errors.ts';

/** The answer to "may this direct peer speak for the client?". */
export interface ProxyTrust {
  /**
   * True when `address` (IPv4, IPv6 with or without brackets, IPv4-mapped IPv6) is a trusted
   * proxy. The empty string stands for a unix-socket peer (node reports no address for it): it is
   * trusted only when "unix" was listed.
   */
  isTrusted(address: string): boolean;
}

const IPV4_MAPPED_RE = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;
const PREFIX_RE = /^\d{1,3}$/;
const PORT_RE = /^\d{1,5}$/;

/**
 * Canonical text of a peer address for CGI and logs: no brackets, IPv4-mapped IPv6
 * (`::ffff:1.2.3.4`, what a dual-stack listener reports) as plain IPv4, like nginx's $remote_addr.
 * Anything else (including '' for a unix socket) is returned unchanged.
 */
export function normalizeAddress(address: string): string {
  let a = address;
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const mapped = IPV4_MAPPED_RE.exec(a);
  if (mapped?.[1] !== undefined && isIP(mapped[1]) === 4) return mapped[1];
  return a;
}

/** Address without brackets or IPv6 zone id (`fe80::1%eth0`), ready for BlockList.check. */
function bareAddress(address: string): { ip: string; family: 4 | 6 } | undefined {
  let ip = normalizeAddress(address);
  const zone = ip.indexOf('%');
  if (zone !== -1) ip = ip.slice(0, zone);
  const family = isIP(ip);
  return family === 4 || family === 6 ? { ip, family } : undefined;
}

/**
 * Parses `server.trusted_proxies`: IPv4 / IPv6 addresses, CIDRs of both ("10.0.0.0/8",
 * "fd00::/8"), and "unix" (or nginx's "unix:") for peers on a unix-socket listener.
 * Host bits in a CIDR are ignored, like nginx.
 * @throws ConfigError naming the first bad entry.
 */
export function parseTrustedProxies(entries: readonly string[]): ProxyTrust {
  const list = new BlockList();
  let unix = false;
  let any = false;
  for (const entry of entries) {
    const e = entry.trim();
    if (e === 'unix' || e === 'unix:') {
      unix = true;
      continue;
    }
    const slash = e.indexOf('/');
    let addr = slash === -1 ? e : e.slice(0, slash);
    const prefixText = slash === -1 ? undefined : e.slice(slash + 1);
    let family = isIP(addr);
    let prefix = family === 4 ? 32 : 128;
    if (prefixText !== undefined) {
      prefix = PREFIX_RE.test(prefixText) ? Number(prefixText) : -1;
    }
    // An IPv4-mapped IPv6 entry is stored as IPv4: peers are normalized the same way before a check.
    const mapped = IPV4_MAPPED_RE.exec(addr);
    if (family === 6 && mapped?.[1] !== undefined && prefix >= 96) {
      addr = mapped[1];
      family = 4;
      prefix -= 96;
    }
    if (family === 0 || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
      throw new ConfigError(
        `server.trusted_proxies: ${JSON.stringify(entry)} is not an IPv4 or IPv6 address, a CIDR ` +
          `(e.g. "10.0.0.0/8", "fd00::/8") or "unix"`,
      );
    }
    list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
    any = true;
  }
  return {
    isTrusted(address: string): boolean {
      if (address === '' || address === 'unix:') return unix;
      if (!any) return false;
      const bare = bareAddress(address);
      if (bare === undefined) return false;
      return list.check(bare.ip, bare.family === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

/**
 * One X-Forwarded-For element: an IP, optionally with a port ("1.2.3.4:5678", "[2001:db8::1]:80"),
 * as nginx realip accepts since 1.11. Returns the normalized address, or undefined for garbage.
 */
function parseForwardedItem(item: string): string | undefined {
  let s = item.trim();
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close === -1) return undefined;
    const rest = s.slice(close + 1);
    if (rest !== '' && !(rest.startsWith(':') && PORT_RE.test(rest.slice(1)))) return undefined;
    s = s.slice(1, close);
    return isIP(s) === 6 ? normalizeAddress(s) : undefined;
  }
  const colon = s.indexOf(':');
  if (colon !== -1 && colon === s.lastIndexOf(':')) {
    // Exactly one ':' can only be IPv4 with a port (IPv6 has at least two).
    if (!PORT_RE.test(s.slice(colon + 1))) return undefined;
    s = s.slice(0, colon);
    return isIP(s) === 4 ? s : undefined;
  }
  return isIP(s) === 0 ? undefined : normalizeAddress(s);
}

/**
 * The client address and scheme after proxy evaluation.
 *
 * Only when the direct peer (`remoteAddress`, '' for a unix socket) is trusted: X-Forwarded-For is
 * walked right to left, skipping trusted addresses; the first untrusted one is the client (if all
 * are trusted, the leftmost). An element that is not an IP stops the walk and the last good
 * address stands, so a forged or mangled prefix cannot win. X-Forwarded-Proto (first value) then
 * decides `https`. From an untrusted peer both headers are ignored: the client is the peer and
 * `https` is `tls`. Never throws.
 */
export function clientFromForwarded(
  remoteAddress: string,
  xForwardedFor: string | undefined,
  xForwardedProto: string | undefined,
  trust: ProxyTrust,
  tls: boolean,
): { clientAddress: string; https: boolean } {
  const peer = normalizeAddress(remoteAddress);
  if (!trust.isTrusted(remoteAddress)) return { clientAddress: peer, https: tls };

  let clientAddress = peer;
  if (xForwardedFor !== undefined) {
    const items = xForwardedFor.split(',');
    for (let i = items.length - 1; i >= 0; i--) {
      const addr = parseForwardedItem(items[i] ?? '');
      if (addr === undefined) break;
      clientAddress = addr;
      if (!trust.isTrusted(addr)) break;
    }
  }

  let https = tls;
  if (xForwardedProto !== undefined) {
    // The first value is the scheme the client used at the outermost proxy (Symfony reads it so).
    const first = (xForwardedProto.split(',', 1)[0] ?? '').trim().toLowerCase();
    if (first !== '') https = first === 'https';
  }
  return { clientAddress, https };
}

/**
 * The trust of a config (`server.trusted_proxies`): the one mapping used at start and at reload.
 * @throws ConfigError naming the first bad entry.
 */
export function proxyTrustFrom(config: {
  server: { trusted_proxies: readonly string[] };
}): ProxyTrust {
  return parseTrustedProxies(config.server.trusted_proxies);
}
