// Unit tests of the managed pool's generated php-fpm.conf and environment: directives, escaping,
// and rejection of values that could inject directives (a recurrence would let [fpm].ini or
// [fpm].env add a `listen = 0.0.0.0:9000` line to the pool).
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import {
  fpmEnvironment,
  quoteIniValue,
  renderFpmConfig,
  type FpmConfigInput,
} from './fpm-config.ts';

const base: FpmConfigInput = {
  socketPath: '/run/askr/php-fpm.sock',
  pidFile: '/run/askr/php-fpm.pid',
  errorLog: '/run/askr/php-fpm.log',
  maxChildren: 8,
  maxRequests: 500,
  requestTerminateTimeoutMs: 1500,
  ini: {},
  envNames: ['PATH'],
};

describe('renderFpmConfig', () => {
  it('renders the global section and the [askr] pool', () => {
    const conf = renderFpmConfig({
      ...base,
      statusPath: '/fpm-status',
      ini: { memory_limit: '256M' },
    });
    const lines = conf.split('\n');
    for (const line of [
      '[global]',
      'daemonize = no',
      'pid = "/run/askr/php-fpm.pid"',
      '[askr]',
      'listen = "/run/askr/php-fpm.sock"',
      'listen.mode = 0600',
      'pm = static',
      'pm.max_children = 8',
      'pm.max_requests = 500',
      'request_terminate_timeout = 2',
      'catch_workers_output = yes',
      'decorate_workers_output = no',
      'clear_env = yes',
      'pm.status_path = "/fpm-status"',
      'env[PATH] = $PATH',
      'php_value[log_errors] = "1"',
      'php_value[memory_limit] = "256M"',
    ]) {
      expect(lines).toContain(line);
    }
    expect(conf).not.toMatch(/error_log\]/); // PHP errors must stay on FCGI_STDERR
    expect(conf).not.toMatch(/^user\s*=/m);
  });

  it("as root: runs the workers as the given user and keeps the listen socket the sidecar's", () => {
    const lines = renderFpmConfig({
      ...base,
      workers: { user: 'www-data', group: 'www-data', listenUid: 0, listenGid: 0 },
    }).split('\n');
    for (const line of [
      'user = www-data',
      'group = www-data',
      'listen.owner = 0',
      'listen.group = 0',
      'listen.mode = 0600',
    ]) {
      expect(lines).toContain(line);
    }
  });

  it.each([
    ['root', { user: 'root', group: 'www-data', listenUid: 0, listenGid: 0 }, /never run as root/],
    ['gid 0', { user: 'www-data', group: '0', listenUid: 0, listenGid: 0 }, /never run as root/],
    [
      'a directive',
      { user: 'a\nlisten = 0.0.0.0:9000', group: 'g', listenUid: 0, listenGid: 0 },
      /not a valid name/,
    ],
    [
      'a negative owner',
      { user: 'www-data', group: 'www-data', listenUid: -1, listenGid: 0 },
      /owner id/,
    ],
  ])('refuses workers with %s', (_name, workers, message) => {
    expect(() => renderFpmConfig({ ...base, workers })).toThrow(message);
  });

  it('lets [fpm].ini override the log_errors default', () => {
    const conf = renderFpmConfig({ ...base, ini: { log_errors: '0' } });
    expect(conf).toContain('php_value[log_errors] = "0"');
    expect(conf).not.toContain('php_value[log_errors] = "1"');
  });

  it.each([
    ['an ini name with a bracket', { ini: { 'a]': '1' } }],
    ['an ini value with a newline', { ini: { a: '1\nlisten = 0.0.0.0:9000' } }],
    ['an ini value with $pool', { ini: { a: 'x$pool' } }],
    ['a bad env name', { envNames: ['A B'] }],
    ['max_children 0', { maxChildren: 0 }],
    ['fractional max_requests', { maxRequests: 1.5 }],
    ['a negative terminate timeout', { requestTerminateTimeoutMs: -1 }],
    ['a status path without a slash', { statusPath: 'status' }],
    ['a status path with a space', { statusPath: '/a b' }],
  ])('rejects %s', (_name, patch: Partial<FpmConfigInput>) => {
    expect(() => renderFpmConfig({ ...base, ...patch })).toThrow(
      expect.objectContaining({ code: ErrorCodes.FPM_START }),
    );
  });
});

describe('quoteIniValue', () => {
  it.each([
    ['plain', '"plain"'],
    ['a "q" b', '"a \\"q\\" b"'],
    ['back\\slash', '"back\\\\slash"'],
    ['${HOME} $x', '"\\${HOME} \\$x"'],
    ['; = [x]', '"; = [x]"'],
  ])('quotes %j', (value, quoted) => {
    expect(quoteIniValue('k', value)).toBe(quoted);
  });
});

describe('fpmEnvironment', () => {
  it('passes configured values through the master environment, never through the conf', () => {
    const { masterEnv, workerNames } = fpmEnvironment(
      { PATH: '/bin', SECRET: 's', NOTIFY_SOCKET: '/run/systemd/notify', TZ: 'UTC' },
      { APP_ENV: '$literal "x"' },
    );
    expect(masterEnv['APP_ENV']).toBe('$literal "x"');
    expect(masterEnv['SECRET']).toBe('s'); // the master may see it; workers do not (clear_env)
    expect(masterEnv['NOTIFY_SOCKET']).toBeUndefined();
    expect(workerNames.sort()).toEqual(['APP_ENV', 'PATH', 'TZ']);
  });

  it('supplies a PATH when the sidecar has none', () => {
    const { masterEnv, workerNames } = fpmEnvironment({}, {});
    expect(masterEnv['PATH']).toMatch(/\/usr\/bin/);
    expect(workerNames).toEqual(['PATH']);
  });

  it('rejects invalid names and NUL bytes', () => {
    expect(() => fpmEnvironment({}, { 'A=B': 'x' })).toThrow(
      /not a valid environment variable name/,
    );
    expect(() => fpmEnvironment({}, { A: 'x\0y' })).toThrow(/NUL/);
  });
});
