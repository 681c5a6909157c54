/**
 * `check-config --print`: every key with its source (default, file:line, environment, flag) and
 * what it overrode; secrets masked; the output is TOML that loads back to the same configuration
 * (masked secrets aside), so it can be used as a starting file.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, loadConfigWithProvenance } from './load.ts';
import { renderEffectiveConfig } from './print.ts';

const SECRETS = ['hunter2', 'grant-secret-0123456789', 'db-pass', 'grip-key-abc'];

function setup(): { file: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'askr-print-'));
  const file = join(dir, 'sidecar.toml');
  writeFileSync(
    file,
    [
      '[server]',
      'listen = "127.0.0.1:1111"',
      'root = "public"',
      'body_timeout = "1m30s"',
      '[fpm]',
      'env = { DB_PASSWORD = "db-pass", APP_ENV = "prod" }',
      '[cluster]',
      'redis_url = "redis://:hunter2@redis:6379/0"',
      '[grip]',
      'publish_key = "grip-key-abc"',
      '',
    ].join('\n'),
  );
  return { file, dir };
}

function lineOf(text: string, prefix: string): string {
  return text.split('\n').find((l) => l.startsWith(prefix)) ?? '';
}

describe('renderEffectiveConfig', () => {
  const { file, dir } = setup();
  const loaded = loadConfigWithProvenance({
    file,
    env: {
      ASKR_SERVER_LISTEN: '127.0.0.1:2222',
      ASKR_SSE_GRANT_SECRET: 'grant-secret-0123456789',
      ASKR_SOCKET: '/run/askr/askr.sock',
    },
    overrides: { 'server.listen': '127.0.0.1:3333', 'log.level': 'debug' },
    flags: { 'server.listen': '--listen', 'log.level': '--log-level' },
  });
  const text = renderEffectiveConfig(loaded, { fileChosenBy: '--config' });

  it('names the file and how it was chosen', () => {
    expect(text).toContain(`# config file: ${file} (--config)`);
  });

  it.each([
    [
      'listen = ',
      `listen = "127.0.0.1:3333"`,
      `# flag --listen (overrides environment ASKR_SERVER_LISTEN, file ${file}:2)`,
    ],
    ['root = ', `root = "${join(dir, 'public')}"`, `("public" resolved against ${dir})`],
    ['body_timeout = ', 'body_timeout = "1m30s"', `# file ${file}:4`],
    ['index = ', 'index = "index.php"', '# default'],
    ['level = ', 'level = "debug"', '# flag --log-level'],
    [
      'grant_secret = ',
      'grant_secret = "****"',
      'ASKR_SSE_GRANT_SECRET (secret, set: 23 characters)',
    ],
    ['publish_key = ', 'publish_key = "****"', `# file ${file}:10 (secret, set: 12 characters)`],
    ['redis_url = ', 'redis_url = "redis://:***@redis:6379/0"', '(secrets masked)'],
    ['env = ', 'env = { "DB_PASSWORD" = "****", "APP_ENV" = "prod" }', `# file ${file}:6`],
  ])('%s shows its value and source', (prefix, value, source) => {
    const line = lineOf(text, prefix);
    expect(line.startsWith(value)).toBe(true);
    expect(line).toContain(source);
  });

  it('says when a file value is the default anyway', () => {
    writeFileSync(join(dir, 'same.toml'), '[server]\nindex = "index.php"\n');
    const same = renderEffectiveConfig(
      loadConfigWithProvenance({ file: join(dir, 'same.toml'), env: {} }),
      { fileChosenBy: null },
    );
    expect(lineOf(same, 'index = ')).toContain('(same as the default)');
  });

  it('lists ASKR_* variables that are no config key', () => {
    expect(text).toContain(
      'no config key (the PHP side reads ASKR_SOCKET and the like): ASKR_SOCKET',
    );
  });

  it('prints no secret', () => {
    for (const secret of SECRETS) expect(text).not.toContain(secret);
  });

  it('is TOML that loads back to the same configuration, secrets aside', () => {
    const printed = join(dir, 'printed.toml');
    writeFileSync(printed, text);
    const again = loadConfig({ file: printed, env: {} });
    const masked = (c: typeof again): unknown => ({
      ...c,
      source: '',
      sse: { ...c.sse, grant_secret: '' },
      grip: { ...c.grip, publish_key: '' },
      cluster: { ...c.cluster, redis_url: '' },
      fpm: { ...c.fpm, env: {} },
    });
    expect(masked(again)).toEqual(masked(loaded.config));
  });

  it('without a file says the built-in defaults are used', () => {
    const defaults = renderEffectiveConfig(loadConfigWithProvenance({ env: {} }), {
      fileChosenBy: null,
    });
    expect(defaults).toContain('# config file: none (built-in defaults; --config FILE to use one)');
    expect(lineOf(defaults, 'listen = ')).toBe(
      'listen = "127.0.0.1:8080"                   # default',
    );
  });
});
