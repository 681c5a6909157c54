// CGI params: nginx fastcgi.conf parity and the header security rules (Caddy's
// TestBuildEnvDropsProxyHeader is the model). A regression here looks like a client-controlled
// header reaching PHP as HTTP_PROXY, as an alias of another header, or as a non-HTTP_ param.
import { describe, expect, it } from 'vitest';
import { prng } from '../../test/helpers/prng.ts';
import { buildCgiParams, type CgiRequestInfo, type CgiServerInfo } from './cgi-params.ts';
import type { Route } from './route-resolver.ts';

type PhpRoute = Extract<Route, { kind: 'php' }>;

const server: CgiServerInfo = {
  documentRoot: '/srv/app/public',
  serverName: '',
  serverSoftware: 'askr-sidecar/0.1.0',
};
const front: PhpRoute = {
  kind: 'php',
  scriptName: '/index.php',
  scriptFilename: '/srv/app/public/index.php',
  pathInfo: '',
  documentUri: '/index.php',
};

function request(overrides: Partial<CgiRequestInfo> = {}): CgiRequestInfo {
  return {
    method: 'GET',
    rawTarget: '/users/42?tab=1',
    query: 'tab=1',
    httpVersion: '1.1',
    headers: [['Host', 'example.com:8080']],
    remoteAddress: '198.51.100.7',
    remotePort: 51234,
    localAddress: '192.0.2.1',
    localPort: 8080,
    tls: false,
    clientAddress: '198.51.100.7',
    https: false,
    contentLength: null,
    ...overrides,
  };
}

function build(
  overrides: Partial<CgiRequestInfo> = {},
  route: PhpRoute = front,
  srv: CgiServerInfo = server,
  extra?: ReadonlyArray<readonly [string, string]>,
): Map<string, string> {
  const params = buildCgiParams(request(overrides), route, srv, extra);
  const names = params.map(([k]) => k);
  // Every name appears once (extra may repeat on purpose; none do in these tests).
  expect(new Set(names).size).toBe(names.length);
  return new Map(params);
}

describe('buildCgiParams: the fastcgi.conf set', () => {
  it('emits the full set for a plain GET, in nginx order', () => {
    const params = buildCgiParams(request(), front, server);
    expect(params).toEqual([
      ['SCRIPT_FILENAME', '/srv/app/public/index.php'],
      ['QUERY_STRING', 'tab=1'],
      ['REQUEST_METHOD', 'GET'],
      ['CONTENT_TYPE', ''],
      ['CONTENT_LENGTH', ''],
      ['SCRIPT_NAME', '/index.php'],
      ['REQUEST_URI', '/users/42?tab=1'],
      ['DOCUMENT_URI', '/index.php'],
      ['DOCUMENT_ROOT', '/srv/app/public'],
      ['SERVER_PROTOCOL', 'HTTP/1.1'],
      ['REQUEST_SCHEME', 'http'],
      ['GATEWAY_INTERFACE', 'CGI/1.1'],
      ['SERVER_SOFTWARE', 'askr-sidecar/0.1.0'],
      ['REMOTE_ADDR', '198.51.100.7'],
      ['REMOTE_PORT', '51234'],
      ['REMOTE_USER', ''],
      ['SERVER_ADDR', '192.0.2.1'],
      ['SERVER_PORT', '8080'],
      ['SERVER_NAME', 'example.com'],
      ['REDIRECT_STATUS', '200'],
      ['PATH_INFO', ''],
      ['HTTP_HOST', 'example.com:8080'],
    ]);
  });

  const cases: Array<{
    name: string;
    req?: Partial<CgiRequestInfo>;
    route?: PhpRoute;
    srv?: Partial<CgiServerInfo>;
    expect: Record<string, string | undefined>;
  }> = [
    {
      name: 'body length and type',
      req: {
        method: 'POST',
        contentLength: 12,
        headers: [
          ['Content-Type', 'application/json'],
          ['Content-Length', '12'],
        ],
      },
      expect: {
        CONTENT_TYPE: 'application/json',
        CONTENT_LENGTH: '12',
        // nginx passes every header as HTTP_* (getallheaders() and PSR-7 factories read them).
        HTTP_CONTENT_TYPE: 'application/json',
        HTTP_CONTENT_LENGTH: '12',
      },
    },
    {
      name: 'Content-Type as the second of two headers',
      req: {
        method: 'POST',
        contentLength: 3,
        headers: [
          ['Host', 'example.com'],
          ['Content-Type', 'text/plain'],
        ],
      },
      expect: { CONTENT_TYPE: 'text/plain', SERVER_NAME: 'example.com' },
    },
    {
      name: 'Content-Type among many headers, Host last',
      req: {
        method: 'POST',
        contentLength: 3,
        headers: [
          ['Accept', '*/*'],
          ['X-A', '1'],
          ['Content-Type', 'text/plain'],
          ['X-B', '2'],
          ['Host', 'Example.com'],
        ],
      },
      expect: { CONTENT_TYPE: 'text/plain', SERVER_NAME: 'example.com', HTTP_X_B: '2' },
    },
    {
      name: 'repeated Content-Type: CONTENT_TYPE is the first, HTTP_CONTENT_TYPE all of them',
      req: {
        method: 'POST',
        contentLength: 3,
        headers: [
          ['Host', 'example.com'],
          ['Content-Type', 'text/plain'],
          ['Content-Type', 'application/json'],
        ],
      },
      expect: {
        CONTENT_TYPE: 'text/plain',
        HTTP_CONTENT_TYPE: 'text/plain, application/json',
      },
    },
    {
      name: 'chunked body: CONTENT_LENGTH is the buffered length',
      req: { method: 'POST', contentLength: 5, headers: [['Transfer-Encoding', 'chunked']] },
      expect: { CONTENT_LENGTH: '5', HTTP_TRANSFER_ENCODING: 'chunked' },
    },
    {
      name: 'empty body is 0',
      req: { method: 'POST', contentLength: 0 },
      expect: { CONTENT_LENGTH: '0' },
    },
    {
      name: 'https sets HTTPS=on and the scheme',
      req: { https: true },
      expect: { HTTPS: 'on', REQUEST_SCHEME: 'https' },
    },
    {
      name: 'no HTTPS param without https',
      req: { https: false, tls: true },
      expect: { HTTPS: undefined, REQUEST_SCHEME: 'http' },
    },
    { name: 'HTTP/1.0', req: { httpVersion: '1.0' }, expect: { SERVER_PROTOCOL: 'HTTP/1.0' } },
    {
      name: 'PATH_INFO when split, no PATH_TRANSLATED (Laravel and WordPress blocks set none)',
      route: { ...front, pathInfo: '/foo/bar', documentUri: '/index.php/foo/bar' },
      expect: {
        PATH_INFO: '/foo/bar',
        PATH_TRANSLATED: undefined,
        DOCUMENT_URI: '/index.php/foo/bar',
      },
    },
    {
      name: 'generic recipe: PATH_TRANSLATED with a split PATH_INFO (CGI/1.1)',
      route: { ...front, pathInfo: '/foo/bar', documentUri: '/index.php/foo/bar' },
      srv: { pathInfo: 'translated' },
      expect: { PATH_INFO: '/foo/bar', PATH_TRANSLATED: '/srv/app/public/foo/bar' },
    },
    {
      name: 'symfony recipe: no PATH_INFO at all',
      srv: { pathInfo: 'never' },
      expect: { PATH_INFO: undefined },
    },
    {
      name: 'an empty PATH_INFO without split (nginx: fastcgi_param PATH_INFO always)',
      expect: { PATH_INFO: '', PATH_TRANSLATED: undefined },
    },
    {
      name: 'IPv6 addresses without brackets',
      req: { remoteAddress: '2001:db8::5', clientAddress: '2001:db8::5', localAddress: '::1' },
      expect: { REMOTE_ADDR: '2001:db8::5', SERVER_ADDR: '::1', REMOTE_PORT: '51234' },
    },
    {
      name: 'IPv4-mapped addresses as IPv4',
      req: {
        remoteAddress: '::ffff:198.51.100.7',
        clientAddress: '::ffff:198.51.100.7',
        localAddress: '::ffff:192.0.2.1',
      },
      expect: { REMOTE_ADDR: '198.51.100.7', SERVER_ADDR: '192.0.2.1', REMOTE_PORT: '51234' },
    },
    {
      name: 'forwarded client: REMOTE_ADDR from proxy evaluation, no proxy port',
      req: { remoteAddress: '10.0.0.2', clientAddress: '203.0.113.9' },
      expect: { REMOTE_ADDR: '203.0.113.9', REMOTE_PORT: '' },
    },
    {
      name: 'unix listener',
      req: { remoteAddress: '', clientAddress: '', remotePort: 0, localAddress: '', localPort: 0 },
      expect: { REMOTE_ADDR: '', REMOTE_PORT: '', SERVER_ADDR: '', SERVER_PORT: '' },
    },
    {
      name: 'configured SERVER_NAME wins',
      srv: { serverName: 'app.test' },
      expect: { SERVER_NAME: 'app.test', HTTP_HOST: 'example.com:8080' },
    },
    {
      name: 'SERVER_NAME lowercases Host',
      req: { headers: [['Host', 'Example.COM']] },
      expect: { SERVER_NAME: 'example.com' },
    },
    {
      name: 'SERVER_NAME from IPv6 Host',
      req: { headers: [['Host', '[2001:db8::1]:8080']] },
      expect: { SERVER_NAME: '2001:db8::1' },
    },
    {
      name: 'SERVER_NAME without Host falls back to the local address',
      req: { headers: [] },
      expect: { SERVER_NAME: '192.0.2.1', HTTP_HOST: undefined },
    },
    {
      name: 'malformed Host is not used as SERVER_NAME',
      req: { headers: [['Host', 'evil.com/x y']] },
      expect: { SERVER_NAME: '192.0.2.1' },
    },
    {
      name: 'first Host wins',
      req: {
        headers: [
          ['Host', 'a.example'],
          ['host', 'b.example'],
        ],
      },
      expect: { SERVER_NAME: 'a.example', HTTP_HOST: 'a.example' },
    },
    {
      name: 'repeated headers join with comma',
      req: {
        headers: [
          ['Accept', 'text/html'],
          ['X-Custom', 'a'],
          ['accept', 'application/json'],
          ['x-custom', 'b'],
        ],
      },
      expect: { HTTP_ACCEPT: 'text/html, application/json', HTTP_X_CUSTOM: 'a, b' },
    },
    {
      name: 'cookies join with semicolon',
      req: {
        headers: [
          ['Cookie', 'a=1'],
          ['Cookie', 'b=2'],
        ],
      },
      expect: { HTTP_COOKIE: 'a=1; b=2' },
    },
    {
      name: 'Authorization reaches PHP',
      req: { headers: [['Authorization', 'Bearer t']] },
      expect: { HTTP_AUTHORIZATION: 'Bearer t' },
    },
    {
      name: 'UTF-8 header bytes (latin1 from node) become text',
      req: { headers: [['X-Name', 'caf\u00c3\u00a9']] },
      expect: { HTTP_X_NAME: 'café' },
    },
    {
      name: 'non-UTF-8 header bytes are kept as latin1',
      req: { headers: [['X-Name', 'caf\u00e9']] },
      expect: { HTTP_X_NAME: 'café' },
    },
  ];
  it.each(cases)('$name', (c) => {
    const params = build(c.req, c.route ?? front, { ...server, ...c.srv });
    for (const [name, value] of Object.entries(c.expect))
      expect([name, params.get(name)]).toEqual([name, value]);
  });

  it('appends extra params last', () => {
    const params = buildCgiParams(request(), front, server, [['REQUEST_ID', 'abc']]);
    expect(params.at(-1)).toEqual(['REQUEST_ID', 'abc']);
  });
});

describe('buildCgiParams: security regressions', () => {
  it('regression: httpoxy (CVE-2016-5385) Proxy header is dropped', () => {
    const params = build({
      headers: [
        ['Host', 'x'],
        ['Proxy', 'http://evil:8080'],
        ['PROXY', 'http://evil2'],
      ],
    });
    expect(params.has('HTTP_PROXY')).toBe(false);
    expect([...params.values()].join('\n')).not.toContain('evil');
  });

  it.each([
    'X_Forwarded_For',
    'x_forwarded_for',
    'X.Forwarded.For',
    'Content_Length',
    'X-Forwarded_For',
  ])('regression: header name %j that would alias another once folded is dropped', (name) => {
    const params = build({
      headers: [
        ['Host', 'x'],
        [name, '6.6.6.6'],
      ],
    });
    expect([...params.values()]).not.toContain('6.6.6.6');
  });

  it.each(['X+Y', 'X~Y', 'X Y', 'X:Y', 'É', ''])(
    'header name %j outside [A-Za-z0-9-] is dropped',
    (name) => {
      const params = build({
        headers: [
          ['Host', 'x'],
          [name, 'dropped'],
        ],
      });
      expect([...params.values()]).not.toContain('dropped');
    },
  );

  it.each([
    ['PHP-VALUE', 'HTTP_PHP_VALUE'],
    ['PHP-ADMIN-VALUE', 'HTTP_PHP_ADMIN_VALUE'],
    ['Request-Body-File', 'HTTP_REQUEST_BODY_FILE'],
    ['Script-Filename', 'HTTP_SCRIPT_FILENAME'],
    ['Remote-Addr', 'HTTP_REMOTE_ADDR'],
    ['Https', 'HTTP_HTTPS'],
  ])('regression: header %j becomes %s only, never a bare CGI/PHP param', (header, cgiName) => {
    const params = buildCgiParams(
      request({
        headers: [
          ['Host', 'x'],
          [header, 'auto_prepend_file=/tmp/evil'],
        ],
      }),
      front,
      server,
    );
    const carrying = params.filter(([, v]) => v === 'auto_prepend_file=/tmp/evil').map(([k]) => k);
    expect(carrying).toEqual([cgiName]);
    for (const [name] of params)
      expect(['PHP_VALUE', 'PHP_ADMIN_VALUE', 'REQUEST_BODY_FILE']).not.toContain(name);
  });

  it('every client header yields an HTTP_ name', () => {
    const headers: Array<[string, string]> = [
      ['Host', 'x'],
      ['A', '1'],
      ['Content-Type', 't'],
      ['Cookie', 'c'],
      ['X-Y-Z', '2'],
    ];
    const params = buildCgiParams(request({ headers }), front, server);
    const fixed = new Set(buildCgiParams(request({ headers: [] }), front, server).map(([k]) => k));
    for (const [name] of params) if (!fixed.has(name)) expect(name).toMatch(/^HTTP_[A-Z0-9_]+$/);
  });

  it('regression: NUL/CR/LF never reach a param value', () => {
    const params = buildCgiParams(
      request({
        headers: [
          ['Host', 'x'],
          ['X-A', 'a\r\nX-Injected: 1'],
          ['X-B', 'b\0c'],
        ],
        rawTarget: '/a\n?b',
        query: 'b\r',
      }),
      front,
      server,
    );
    for (const [, value] of params) expect(value).not.toMatch(/[\0\r\n]/);
    expect(new Map(params).get('HTTP_X_A')).toBe('aX-Injected: 1');
  });
});

describe('buildCgiParams: the same params as the plain algorithm', () => {
  // The reference is the straightforward form of the rules (one Map entry per header, values
  // joined at the end, every value cleaned): the optimized builder must give exactly its output,
  // order included, for any mix of repeated, dropped, single-valued and odd headers.
  const SINGLE_VALUED = new Set([
    'authorization',
    'from',
    'host',
    'if-modified-since',
    'if-unmodified-since',
    'max-forwards',
    'proxy-authorization',
    'referer',
    'user-agent',
  ]);
  const clean = (v: string): string => v.replace(/[\0\r\n]/g, '');
  const utf8 = (raw: string): string => {
    // eslint-disable-next-line no-control-regex -- ASCII test
    if (/^[\u0000-\u007f]*$/.test(raw)) return clean(raw);
    const bytes = Buffer.from(raw, 'latin1');
    const text = bytes.toString('utf8');
    return clean(Buffer.from(text, 'utf8').equals(bytes) ? text : raw);
  };
  function reference(req: CgiRequestInfo): Array<[string, string]> {
    const headers = new Map<string, string[]>();
    for (const [name, value] of req.headers) {
      if (!/^[A-Za-z0-9-]+$/.test(name)) continue;
      const key = name.toLowerCase();
      const entry = headers.get(key);
      if (entry === undefined) headers.set(key, [utf8(value)]);
      else if (!SINGLE_VALUED.has(key)) entry.push(utf8(value));
    }
    const out: Array<[string, string]> = [];
    for (const [name, values] of headers) {
      if (name === 'proxy') continue;
      out.push([
        'HTTP_' + name.toUpperCase().replaceAll('-', '_'),
        values.join(name === 'cookie' ? '; ' : ', '),
      ]);
    }
    const contentType = headers.get('content-type')?.[0] ?? '';
    return [['CONTENT_TYPE', contentType], ...out];
  }

  it('fuzz: random header lists', () => {
    const random = prng(42);
    const names = [
      'Host',
      'host',
      'Cookie',
      'cookie',
      'Accept',
      'X-A',
      'x-a',
      'Content-Type',
      'content-type',
      'Proxy',
      'User-Agent',
      'Authorization',
      'X_Bad',
      'X.Bad',
      'If-Modified-Since',
    ];
    const values = [
      'v',
      'a=1',
      '',
      'caf\u00c3\u00a9',
      'caf\u00e9',
      'x\r\ny',
      'n\0l',
      ' spaced ',
      'Ünï',
    ];
    for (let round = 0; round < 400; round += 1) {
      const headers: Array<[string, string]> = [];
      const count = Math.floor(random() * 12);
      for (let i = 0; i < count; i += 1) {
        headers.push([
          names[Math.floor(random() * names.length)] ?? 'X',
          values[Math.floor(random() * values.length)] ?? '',
        ]);
      }
      const params = buildCgiParams(request({ headers }), front, server);
      const expected = reference(request({ headers }));
      const http = params.filter(([k]) => k.startsWith('HTTP_'));
      expect(http, JSON.stringify(headers)).toEqual(expected.slice(1));
      expect(new Map(params).get('CONTENT_TYPE')).toBe(expected[0]?.[1]);
    }
  });
});
