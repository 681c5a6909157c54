/**
 * cluster.redis_url parsing and redaction: every accepted shape and the target it gives, every
 * rejected one with the reason in its message, and that no message or redacted form ever
 * contains the password (a leaked Redis password in a crash-looping pod's log is the regression).
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, ErrorCodes } from '../errors.ts';
import { parseRedisUrl, redactRedisUrl, type RedisTarget } from './redis-url.ts';

const plain = { tls: false, port: 6379, db: 0 } as const;

describe('parseRedisUrl accepts', () => {
  const cases: Array<[string, RedisTarget]> = [
    ['redis://redis', { ...plain, host: 'redis' }],
    ['redis://redis:6379/0', { ...plain, host: 'redis' }],
    ['redis://127.0.0.1:6380', { ...plain, host: '127.0.0.1', port: 6380 }],
    [
      'redis://my-app-redis.default.svc.cluster.local/',
      { ...plain, host: 'my-app-redis.default.svc.cluster.local' },
    ],
    ['redis://askr_redis_1:6379', { ...plain, host: 'askr_redis_1' }],
    [
      'rediss://cache.example.com:6380/0',
      { ...plain, tls: true, host: 'cache.example.com', port: 6380 },
    ],
    ['REDISS://cache.example.com', { ...plain, tls: true, host: 'cache.example.com' }],
    ['redis://:s3cret@redis:6379/0', { ...plain, host: 'redis', password: 's3cret' }],
    [
      'rediss://default:s3cret@cache.example.com:6380/2',
      {
        tls: true,
        host: 'cache.example.com',
        port: 6380,
        db: 2,
        username: 'default',
        password: 's3cret',
      },
    ],
    // Reserved characters percent-encoded; a ":" after the first one belongs to the password.
    [
      'redis://app%40eu:p%40ss%2Fw:rd@redis',
      { ...plain, host: 'redis', username: 'app@eu', password: 'p@ss/w:rd' },
    ],
    // An unencoded "@" or "/" in the password: the last "@" ends the userinfo.
    ['redis://:p@ss/w@redis/1', { ...plain, host: 'redis', password: 'p@ss/w', db: 1 }],
    ['redis://redis/15', { ...plain, host: 'redis', db: 15 }],
    ['redis://redis:6379/2147483647', { ...plain, host: 'redis', db: 2147483647 }],
    ['redis://[::1]', { ...plain, host: '::1' }],
    ['redis://[::1]:6380/3', { ...plain, host: '::1', port: 6380, db: 3 }],
    ['redis://:pw@[fd00::10]:7000', { ...plain, host: 'fd00::10', port: 7000, password: 'pw' }],
    ['redis://redis:65535', { ...plain, host: 'redis', port: 65535 }],
    ['redis://redis:1', { ...plain, host: 'redis', port: 1 }],
  ];
  it.each(cases)('%s', (url, target) => {
    expect(parseRedisUrl(url)).toEqual(target);
  });
});

describe('parseRedisUrl rejects', () => {
  const cases: Array<[string, string]> = [
    ['', 'it is not a URL'],
    ['redis', 'it is not a URL'],
    ['redis:/redis:6379', 'it is not a URL'],
    ['http://redis:6379', 'scheme "http://" is not supported'],
    ['unix:///run/redis.sock', 'scheme "unix://" is not supported'],
    ['redis+sentinel://redis:26379', 'scheme "redis+sentinel://" is not supported'],
    ['redis://redis:6379/0\n', 'whitespace (a trailing newline from a Secret file?)'],
    [' redis://redis', 'whitespace'],
    ['redis://', 'the host is missing'],
    ['redis://:6379/0', 'the host is missing'],
    ['redis://:pw@/0', 'the host is missing'],
    ['redis://red is', 'whitespace'],
    ['redis://red!s', '"red!s" is not a host name or IP address'],
    ['redis://-redis', 'is not a host name'],
    ['redis://redis:', 'port "" is not a number of 1-65535'],
    ['redis://redis:0', 'port "0" is not a number of 1-65535'],
    ['redis://redis:65536', 'port "65536" is not a number of 1-65535'],
    ['redis://redis:99999', 'port "99999"'],
    ['redis://redis:123456', 'port "123456"'],
    ['redis://redis:63a9', 'port "63a9"'],
    ['redis://redis:-1', 'port "-1"'],
    ['redis://redis/x', 'database "/x" is not a number of 0 or more'],
    ['redis://redis/-1', 'database "/-1"'],
    ['redis://redis/1/2', 'database "/1/2"'],
    ['redis://redis/0.5', 'database "/0.5"'],
    ['redis://redis/2147483648', 'database "/2147483648"'],
    ['redis://redis/99999999999', 'database "/99999999999"'],
    ['redis://redis?db=1', 'a query string or fragment is not supported'],
    ['redis://redis#x', 'a query string or fragment'],
    ['redis://::1:6379', 'an IPv6 host must be in brackets'],
    ['redis://[::1', 'is not a bracketed IPv6 address'],
    ['redis://[redis]:6379', '"[redis]:6379" is not a bracketed IPv6 address'],
    ['redis://[::1]x', 'unexpected "x" after the IPv6 address'],
    ['redis://[::1]:0', 'port "0"'],
    ['redis://@redis', 'nothing comes before "@"'],
    ['redis://secret@redis', 'a user without a password cannot authenticate'],
    ['redis://user:@redis', 'the password is empty'],
    ['redis://:%zz@redis', 'the password has a malformed percent-encoding'],
    ['redis://%E0%A4%A:pw@redis', 'the user has a malformed percent-encoding'],
  ];
  it.each(cases)('%j: %s', (url, reason) => {
    let error: unknown;
    try {
      parseRedisUrl(url);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const { code, message } = error as ConfigError;
    expect(code).toBe(ErrorCodes.CONFIG);
    expect(message).toContain(reason);
    // The key, the (redacted) value and what is allowed.
    expect(message).toContain(`cluster.redis_url = ${JSON.stringify(redactRedisUrl(url))}: `);
    expect(message).toContain(
      'expected "redis://[[user]:password@]host[:port][/db]" or "rediss://',
    );
  });

  it('prefixes the message with where the value came from', () => {
    expect(() => parseRedisUrl('redis://redis:0', 'environment ASKR_CLUSTER_REDIS_URL')).toThrow(
      /^environment ASKR_CLUSTER_REDIS_URL: cluster\.redis_url = "redis:\/\/redis:0": port "0"/,
    );
  });

  // A crash-looping pod logs its config error on every start: the password must not be in it.
  it.each([
    ['redis://:hunter2@redis:0', 'redis://:***@redis:0'],
    ['rediss://app:hunter2@cache.example.com/x', 'rediss://app:***@cache.example.com/x'],
    ['redis://:hunt@er2@[::1', 'redis://:***@[::1'],
    ['redis://hunter2@redis', 'redis://***@redis'],
    ['redis://:hunter2@redis?password=hunter2', 'redis://:***@redis?password=***'],
    ['redis://:hunter2@redis:6379/0\n', 'redis://:***@redis:6379/0\n'],
    ['http://:hunter2@redis', 'http://:***@redis'],
  ])('never shows the password: %j', (url, shown) => {
    expect(() => parseRedisUrl(url)).toThrow(ConfigError);
    try {
      parseRedisUrl(url);
    } catch (err) {
      const { message } = err as ConfigError;
      expect(message).not.toContain('hunter2');
      expect(message).not.toContain('er2');
      expect(message).toContain(JSON.stringify(shown));
    }
  });
});

describe('redactRedisUrl', () => {
  it.each([
    ['redis://redis:6379/0', 'redis://redis:6379/0'],
    ['redis://:s3cret@redis:6379/0', 'redis://:***@redis:6379/0'],
    [
      'rediss://default:s3cret@cache.example.com:6380/2',
      'rediss://default:***@cache.example.com:6380/2',
    ],
    ['redis://:p@ss/w@redis/1', 'redis://:***@redis/1'],
    ['redis://user:@redis', 'redis://user:***@redis'],
    ['redis://secret@redis', 'redis://***@redis'],
    ['redis://[::1]:6379', 'redis://[::1]:6379'],
    // Not a URL at all: whatever precedes the last "@" may be a secret.
    [':s3cret@redis', ':***@redis'],
    ['redis://redis?password=s3cret&db=1', 'redis://redis?password=***&db=1'],
    ['', ''],
  ])('%j -> %j', (url, redacted) => {
    expect(redactRedisUrl(url)).toBe(redacted);
  });
});
