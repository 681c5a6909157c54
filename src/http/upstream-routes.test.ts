// `proxy.routes` parsing and prefix matching. A regression here looks like a request reaching the
// wrong upstream (or PHP instead of it), or a typo in sidecar.toml starting without a clear error.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { matchUpstreamRoute, normalizeMatchPath, parseUpstreamRoutes } from './upstream-routes.ts';

describe('normalizeMatchPath', () => {
  it.each([
    ['/', '/'],
    ['/app', '/app'],
    ['/app/', '/app/'],
    ['//app///x', '/app/x'],
    ['/x/../app/', '/app/'],
    ['/app/x/..', '/app/'],
    ['/app/.', '/app/'],
    ['/../../app', '/app'],
    ['/%61pp/x', '/app/x'],
    ['/x/..%2fapp/y', '/app/y'],
    ['/a%20b', '/a b'],
    ['/bad%zz/x', '/bad%zz/x'], // malformed escape: matched literally
  ])('%j -> %j', (raw, expected) => {
    expect(normalizeMatchPath(raw)).toBe(expected);
  });
});

describe('parseUpstreamRoutes / matchUpstreamRoute', () => {
  const routes = parseUpstreamRoutes({
    '/app/': 'http://127.0.0.1:6001',
    '/app/admin/': 'https://admin.internal:8443/',
    '/api': 'http://[::1]:7000',
  });

  it('sorts longest prefix first and keeps only the origin', () => {
    expect(routes.map((r) => [r.prefix, r.origin])).toEqual([
      ['/app/admin/', 'https://admin.internal:8443'],
      ['/app/', 'http://127.0.0.1:6001'],
      ['/api', 'http://[::1]:7000'],
    ]);
  });

  it.each([
    ['/app/x', '/app/'],
    ['/app/', '/app/'],
    ['/app/admin/users?page=2', '/app/admin/'],
    ['/app/admin', '/app/'], // "/app/admin/" needs the slash, like nginx location
    ['/app/x/../admin/y', '/app/admin/'],
    ['/api', '/api'],
    ['/apix/y', '/api'], // plain prefix, like nginx `location /api`
    ['/app', null],
    ['/other', null],
    ['/x/../../app/y', '/app/'],
    ['*', null],
    ['http://host/app/x', null],
  ])('%j matches %j', (target, prefix) => {
    expect(matchUpstreamRoute(routes, target)?.prefix ?? null).toBe(prefix);
  });

  it.each([
    ['app/', 'http://127.0.0.1:1', 'must start with "/"'],
    ['/a//b/', 'http://127.0.0.1:1', 'plain decoded path'],
    ['/a/../b/', 'http://127.0.0.1:1', 'plain decoded path'],
    ['/a%20b/', 'http://127.0.0.1:1', 'plain decoded path'],
    ['/a?x', 'http://127.0.0.1:1', 'plain decoded path'],
    ['/app/', 'ftp://127.0.0.1:21', 'http:// or https://'],
    ['/app/', '127.0.0.1:6001', 'http:// or https://'],
    ['/app/', 'not a url', 'http:// or https://'],
    ['/app/', 'http://127.0.0.1:6001/base', 'no path'],
    ['/app/', 'http://127.0.0.1:6001/?x=1', 'no path'],
    ['/app/', 'http://user:pw@127.0.0.1:6001', 'credentials'],
    ['/app/', 'unix:/run/app.sock', 'http:// or https://'],
  ])('rejects %j = %j', (prefix, target, allowed) => {
    let error: unknown;
    try {
      parseUpstreamRoutes({ [prefix]: target });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    expect(message).toContain('proxy.routes');
    expect(message).toContain(JSON.stringify(prefix));
    expect(message).toContain(JSON.stringify(target));
    expect(message).toContain(allowed);
  });

  it('an empty map matches nothing', () => {
    expect(matchUpstreamRoute(parseUpstreamRoutes({}), '/')).toBeNull();
  });
});
