/**
 * `askr-sidecar check-config` as users run it, in a child process: --print shows every value with
 * its source and no secret; a missing root fails (exit 2); an FPM that is absent or dead warns
 * (exit 0) while the real php-fpm passes silently; TOML and key typos get plain words; a listen
 * address in use stops `serve` naming its config key. Regressions of issue 14: before it,
 * check-config said "configuration OK" for all of these and an unclosed quote read "control
 * characters are not allowed".
 */
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { runCommand, type CommandResult } from './helpers/process.ts';
import { APP_ROOT } from './helpers/sidecar.ts';

const BIN = fileURLToPath(new URL('../bin/askr-sidecar.js', import.meta.url));
const SHIPPED = fileURLToPath(new URL('../sidecar.toml', import.meta.url));
/** The children's working directory: empty, so no ./sidecar.toml is picked up implicitly. */
const CWD = mkdtempSync(join(tmpdir(), 'askr-check-cwd-'));

/** Runs the CLI with only the ASKR_* variables given (the test runner's own are dropped). */
function cli(args: string[], env: Record<string, string> = {}): Promise<CommandResult> {
  return runCommand([process.execPath, BIN, ...args], {
    env: { ASKR_BROADCAST_SOCKET: '', ASKR_METRICS_ENABLED: 'false', ...env },
    cwd: CWD,
  });
}

function toml(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'askr-check-')), 'sidecar.toml');
  writeFileSync(file, text);
  return file;
}

const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
  );
});

/** A socket file whose process is gone: bound, moved away from the path close unlinks, closed. */
async function staleSocket(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'askr-stale-'));
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(join(dir, 'bound.sock'), resolve));
  renameSync(join(dir, 'bound.sock'), join(dir, 'php-fpm.sock'));
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return join(dir, 'php-fpm.sock');
}

describe('check-config --print', () => {
  it('prints the shipped config with the file and line of every value', async () => {
    const r = await cli(['check-config', '--print', '--config', SHIPPED]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`# config file: ${SHIPPED} (--config)`);
    expect(r.stdout).toMatch(
      new RegExp(
        `^listen = "127\\.0\\.0\\.1:8080" +# file ${SHIPPED}:\\d+ \\(same as the default\\)$`,
        'm',
      ),
    );
    // The two ASKR_* variables this test sets win over the file, and say so.
    expect(r.stdout).toMatch(
      new RegExp(
        `^socket = "" +# environment ASKR_BROADCAST_SOCKET \\(overrides file ${SHIPPED}:\\d+\\)$`,
        'm',
      ),
    );
    expect(r.stdout.trimEnd().endsWith(`configuration OK (${SHIPPED})`)).toBe(true);
  });

  it('masks every secret, from the file, the environment and a flag', async () => {
    const file = toml(
      `[server]\nroot = ${JSON.stringify(APP_ROOT)}\n[grip]\npublish_user = "u"\npublish_password = "file-pass-123"\n[fpm]\nenv = { DB_PASSWORD = "db-pass-456" }\n`,
    );
    const r = await cli(
      [
        'check-config',
        '--print',
        '--static',
        '--config',
        file,
        '--redis',
        'redis://:flag-pw-789@redis:6379',
      ],
      {
        ASKR_SSE_GRANT_SECRET: 'env-secret-000',
        ASKR_MERCURE_JWT_KEY: 'env-jwt-111',
        ASKR_MERCURE_ISSUERS: 'https://app',
      },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const secret of [
      'file-pass-123',
      'db-pass-456',
      'flag-pw-789',
      'env-secret-000',
      'env-jwt-111',
    ]) {
      expect(r.stdout).not.toContain(secret);
    }
    expect(r.stdout).toMatch(
      /^grant_secret = "\*\*\*\*" +# environment ASKR_SSE_GRANT_SECRET \(secret, set: 14 characters\)$/m,
    );
    expect(r.stdout).toMatch(
      /^redis_url = "redis:\/\/:\*\*\*@redis:6379" +# flag --redis \(secrets masked\)$/m,
    );
  });
});

describe('check-config looks at this machine', () => {
  it('a missing root is an error (exit 2) naming the key, the value and its source', async () => {
    const r = await cli([
      'check-config',
      '--root',
      '/nonexistent/app/public',
      '--fpm',
      inject('fpmAddress'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'askr-sidecar: invalid configuration: flag --root: server.root = "/nonexistent/app/public": the directory does not exist\n',
    );
    expect(r.stdout).toBe('');
  });

  it('--static checks the configuration only', async () => {
    const r = await cli([
      'check-config',
      '--static',
      '--root',
      '/nonexistent/app/public',
      '--fpm',
      'php-fpm:9000',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a dead FPM socket is a warning (exit 0) with the reason', async () => {
    const socket = await staleSocket();
    const r = await cli(['check-config', '--root', APP_ROOT, '--fpm', `unix:${socket}`]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      `askr-sidecar: warning: flag --fpm: fastcgi.address = "unix:${socket}": ${socket} refuses connections (ECONNREFUSED): the socket file is left from a php-fpm that is not running\n`,
    );
    expect(r.stdout).toBe('configuration OK with 1 warning (<defaults>)\n');
  });

  it('an FPM socket that does not exist is a warning', async () => {
    const r = await cli(['check-config', '--root', APP_ROOT], {
      ASKR_FASTCGI_ADDRESS: 'unix:/nonexistent/php-fpm.sock',
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      'askr-sidecar: warning: environment ASKR_FASTCGI_ADDRESS: fastcgi.address = "unix:/nonexistent/php-fpm.sock": nothing at /nonexistent/php-fpm.sock (ENOENT)',
    );
  });

  it('a running php-fpm answers: no warning', async () => {
    const r = await cli(['check-config', '--root', APP_ROOT, '--fpm', inject('fpmAddress')]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('configuration OK (<defaults>)\n');
    expect(r.code).toBe(0);
  });

  it('a misspelt ASKR_* variable is a warning with the one meant', async () => {
    const r = await cli(['check-config', '--static'], { ASKR_SERVR_LISTEN: '0.0.0.0:80' });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      'askr-sidecar: warning: environment ASKR_SERVR_LISTEN: not a config key, so it is ignored; did you mean ASKR_SERVER_LISTEN?\n',
    );
  });
});

describe('check-config messages', () => {
  it.each([
    [
      '[server]\nindex = "index.php"\nlisten = "127.0.0.1:8080\n',
      ':3:10: TOML syntax error: unclosed string (") in the value of listen at line 3, column 10: the line ends before the closing "',
    ],
    [
      '[sse]\ngrant_secert = "x"\n',
      ':2: unknown key "grant_secert" in [sse]; did you mean "grant_secret"? Allowed keys: events_path,',
    ],
    [
      '[server]\nredis_url = "redis://redis:6379"\n',
      ':2: unknown key "redis_url" in [server]; did you mean [cluster] redis_url? (that key belongs in another section)',
    ],
    ['[servr]\nlisten = "x"\n', ':1: unknown section [servr]; did you mean [server]?'],
  ])('%j', async (text, message) => {
    const file = toml(text);
    const r = await cli(['check-config', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`askr-sidecar: invalid configuration: ${file}${message}`);
  });

  it('--print and --static belong to check-config', async () => {
    const r = await cli(['serve', '--print']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--print is an option of check-config');
  });
});

describe('listen errors name their config key', () => {
  async function taken(): Promise<string> {
    const server = net.createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  }

  it('server.listen in use', async () => {
    const address = await taken();
    const r = await cli([
      'serve',
      '--listen',
      address,
      '--root',
      APP_ROOT,
      '--fpm',
      inject('fpmAddress'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `askr-sidecar: cannot start: server.listen = "${address}": cannot listen: ${address} is already in use by another process (EADDRINUSE): stop that process (\`ss -ltnp\` shows which) or set server.listen to a free port\n`,
    );
  });

  it('metrics.listen in use', async () => {
    const address = await taken();
    const r = await cli(
      ['serve', '--listen', '127.0.0.1:0', '--root', APP_ROOT, '--fpm', inject('fpmAddress')],
      {
        ASKR_METRICS_ENABLED: 'true',
        ASKR_METRICS_LISTEN: address,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `askr-sidecar: cannot start: metrics.listen = "${address}": cannot listen: ${address} is already in use by another process (EADDRINUSE)`,
    );
  });

  it('server.listen on a unix socket in a missing directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'askr-listen-'));
    const r = await cli([
      'serve',
      '--listen',
      `unix:${dir}/missing/http.sock`,
      '--root',
      APP_ROOT,
      '--fpm',
      inject('fpmAddress'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `askr-sidecar: cannot start: server.listen = "unix:${dir}/missing/http.sock": cannot listen: the directory ${dir}/missing does not exist`,
    );
  });
});
