// Trusted-proxy parsing and X-Forwarded-For / -Proto evaluation (nginx realip, recursive on).
// A regression here looks like a client choosing its own REMOTE_ADDR or HTTPS from the internet.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { clientFromForwarded, normalizeAddress, parseTrustedProxies } from './trusted-proxies.ts';

describe('parseTrustedProxies', () => {
  const trust = parseTrustedProxies([
    '10.0.0.0/8',
    '192.168.1.7',
    '::1',
    'fd00::/8',
    '::ffff:172.16.0.0/108',
    ' 203.0.113.0/24 ',
  ]);
  it.each([
    ['10.1.2.3', true],
    ['11.0.0.1', false],
    ['192.168.1.7', true],
    ['192.168.1.8', false],
    ['::1', true],
    ['[::1]', true],
    ['0:0:0:0:0:0:0:1', true],
    ['::2', false],
    ['fd12:3456::1', true],
    ['fe80::1', false],
    ['::ffff:10.9.9.9', true], // IPv4-mapped peer of a dual-stack listener
    ['172.16.5.5', true], // from the mapped CIDR entry
    ['172.32.0.1', false],
    ['203.0.113.9', true],
    ['', false], // unix socket peer, "unix" not listed
    ['not-an-ip', false],
  ])('isTrusted(%j) = %s', (address, expected) => {
    expect(trust.isTrusted(address)).toBe(expected);
  });

  it.each(['unix', 'unix:'])('%j trusts unix-socket peers only', (entry) => {
    const t = parseTrustedProxies([entry]);
    expect(t.isTrusted('')).toBe(true);
    expect(t.isTrusted('127.0.0.1')).toBe(false);
  });

  it('an empty list trusts nobody', () => {
    const t = parseTrustedProxies([]);
    expect(t.isTrusted('127.0.0.1')).toBe(false);
    expect(t.isTrusted('')).toBe(false);
  });

  it('accepts host bits in a CIDR like nginx', () => {
    expect(parseTrustedProxies(['10.1.2.3/8']).isTrusted('10.200.0.1')).toBe(true);
  });

  it.each([
    '',
    'localhost',
    '10.0.0.0/33',
    '10.0.0.0/',
    '10.0.0.0/-1',
    '10.0.0.0/8/8',
    '::/129',
    '1.2.3.256',
    '10.0.0.0/ 8',
    'unix:/run/x.sock',
  ])('rejects %j with a ConfigError naming it', (entry) => {
    expect(() => parseTrustedProxies(['127.0.0.1', entry])).toThrow(ConfigError);
    expect(() => parseTrustedProxies([entry])).toThrow(JSON.stringify(entry));
  });
});

describe('normalizeAddress', () => {
  it.each([
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::FFFF:1.2.3.4', '1.2.3.4'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['1.2.3.4', '1.2.3.4'],
    ['', ''],
  ])('%j -> %j', (input, expected) => {
    expect(normalizeAddress(input)).toBe(expected);
  });
});

describe('clientFromForwarded', () => {
  const trust = parseTrustedProxies(['10.0.0.0/8', '::1', 'unix']);
  const cases: Array<{
    name: string;
    peer: string;
    xff?: string;
    xfp?: string;
    tls?: boolean;
    client: string;
    https: boolean;
  }> = [
    {
      name: 'no headers, untrusted peer',
      peer: '198.51.100.1',
      client: '198.51.100.1',
      https: false,
    },
    {
      name: 'tls connection is https',
      peer: '198.51.100.1',
      tls: true,
      client: '198.51.100.1',
      https: true,
    },
    {
      name: 'regression: XFF and XFP from an untrusted peer are ignored',
      peer: '198.51.100.1',
      xff: '1.1.1.1',
      xfp: 'https',
      client: '198.51.100.1',
      https: false,
    },
    {
      name: 'trusted peer, one hop',
      peer: '10.0.0.2',
      xff: '203.0.113.5',
      client: '203.0.113.5',
      https: false,
    },
    {
      name: 'walk skips trusted hops from the right',
      peer: '10.0.0.2',
      xff: '6.6.6.6, 203.0.113.5, 10.0.0.9, 10.0.0.3',
      client: '203.0.113.5',
      https: false,
    },
    {
      name: 'spoofed leftmost entry never wins',
      peer: '10.0.0.2',
      xff: '127.0.0.1, 203.0.113.5',
      client: '203.0.113.5',
      https: false,
    },
    {
      name: 'all trusted: leftmost',
      peer: '10.0.0.2',
      xff: '10.0.0.4, 10.0.0.3',
      client: '10.0.0.4',
      https: false,
    },
    {
      name: 'garbage stops the walk at the last good address',
      peer: '10.0.0.2',
      xff: '203.0.113.5, evil, 10.0.0.3',
      client: '10.0.0.3',
      https: false,
    },
    {
      name: 'garbage right away keeps the peer',
      peer: '10.0.0.2',
      xff: 'nope',
      client: '10.0.0.2',
      https: false,
    },
    {
      name: 'empty element is garbage',
      peer: '10.0.0.2',
      xff: '203.0.113.5,',
      client: '10.0.0.2',
      https: false,
    },
    {
      name: 'IPv4 with port',
      peer: '10.0.0.2',
      xff: '203.0.113.5:4711',
      client: '203.0.113.5',
      https: false,
    },
    {
      name: 'bracketed IPv6 with port',
      peer: '10.0.0.2',
      xff: '[2001:db8::7]:443',
      client: '2001:db8::7',
      https: false,
    },
    {
      name: 'bare IPv6',
      peer: '10.0.0.2',
      xff: '2001:db8::7',
      client: '2001:db8::7',
      https: false,
    },
    {
      name: 'mapped IPv4 in XFF',
      peer: '10.0.0.2',
      xff: '::ffff:203.0.113.5',
      client: '203.0.113.5',
      https: false,
    },
    {
      name: 'mapped trusted peer',
      peer: '::ffff:10.0.0.2',
      xff: '203.0.113.5',
      client: '203.0.113.5',
      https: false,
    },
    {
      name: 'IPv6 trusted peer',
      peer: '::1',
      xff: '203.0.113.5',
      client: '203.0.113.5',
      https: false,
    },
    {
      name: 'unix peer when unix listed',
      peer: '',
      xff: '203.0.113.5',
      xfp: 'https',
      client: '203.0.113.5',
      https: true,
    },
    {
      name: 'XFP https from trusted peer',
      peer: '10.0.0.2',
      xfp: 'HTTPS',
      client: '10.0.0.2',
      https: true,
    },
    {
      name: 'XFP first value wins',
      peer: '10.0.0.2',
      xfp: 'https, http',
      client: '10.0.0.2',
      https: true,
    },
    {
      name: 'trusted XFP http over tls',
      peer: '10.0.0.2',
      xfp: 'http',
      tls: true,
      client: '10.0.0.2',
      https: false,
    },
    {
      name: 'empty XFP keeps tls',
      peer: '10.0.0.2',
      xfp: ' ',
      tls: true,
      client: '10.0.0.2',
      https: true,
    },
    {
      name: 'untrusted mapped peer is normalized',
      peer: '::ffff:198.51.100.1',
      client: '198.51.100.1',
      https: false,
    },
  ];
  it.each(cases)('$name', (c) => {
    expect(clientFromForwarded(c.peer, c.xff, c.xfp, trust, c.tls ?? false)).toEqual({
      clientAddress: c.client,
      https: c.https,
    });
  });

  it('a unix peer is untrusted unless "unix" is listed', () => {
    const t = parseTrustedProxies(['127.0.0.1']);
    expect(clientFromForwarded('', '203.0.113.5', 'https', t, false)).toEqual({
      clientAddress: '',
      https: false,
    });
  });
});
