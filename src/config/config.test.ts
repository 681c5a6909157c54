/**
 * Config loading: defaults, TOML, env and flag precedence with the source of every value, unit
 * parsing, and the precise error messages (file/line, key, value with secrets masked, what is
 * allowed, "did you mean"). Also guards the generated files against drift.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, loadConfigWithProvenance } from './load.ts';
import { renderMarkdown, renderToml } from './render.ts';
import { renderReadmeSections, spliceGenerated } from './readme-sections.ts';
import { parseDurationMs, parseSizeBytes } from './units.ts';

function file(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'askr-cfg-')), 'sidecar.toml');
  writeFileSync(path, text);
  return path;
}

describe('units', () => {
  it.each([
    ['0', 0],
    ['250ms', 250],
    ['30s', 30_000],
    ['1m30s', 90_000],
    ['2h', 7_200_000],
    ['1.5s', 1500],
  ])('duration %s = %i ms', (text, ms) => expect(parseDurationMs(text)).toBe(ms));
  it.each(['', '5', 's', '5 parsecs', '-1s', '1s garbage'])('duration %j is rejected', (text) =>
    expect(parseDurationMs(text)).toBeNull(),
  );
  it.each([
    ['512', 512],
    ['64KiB', 65536],
    ['8MiB', 8 * 1024 * 1024],
    ['1GiB', 1024 ** 3],
    ['1MB', 1_000_000],
  ])('size %s = %i bytes', (text, bytes) => expect(parseSizeBytes(text)).toBe(bytes));
  it.each(['', 'MiB', '8 parsecs', '-1'])('size %j is rejected', (text) =>
    expect(parseSizeBytes(text)).toBeNull(),
  );
});

describe('loadConfig', () => {
  it('defaults resolve durations to ms and sizes to bytes', () => {
    const c = loadConfig({ env: {} });
    expect(c.server.max_body_size).toBe(8 * 1024 * 1024);
    expect(c.fastcgi.read_timeout).toBe(60_000);
    expect(c.sse.heartbeat_interval).toBe(15_000);
    expect(c.source).toBe('<defaults>');
  });

  it('flags > env > file > defaults', () => {
    const path = file(
      '[server]\nlisten = "127.0.0.1:1111"\nindex = "app.php"\n[fastcgi]\npool_size = 3\n',
    );
    const c = loadConfig({
      file: path,
      env: {
        ASKR_SERVER_LISTEN: '127.0.0.1:2222',
        ASKR_FASTCGI_POOL_SIZE: '5',
        ASKR_SOCKET: '/ignored',
      },
      overrides: { 'server.listen': '127.0.0.1:3333' },
    });
    expect(c.server.listen).toBe('127.0.0.1:3333');
    expect(c.fastcgi.pool_size).toBe(5);
    expect(c.server.index).toBe('app.php');
  });

  it('resolves a relative root against the config file directory', () => {
    const path = file('[server]\nroot = "public"\n');
    expect(loadConfig({ file: path, env: {} }).server.root).toBe(join(path, '..', 'public'));
  });

  it('parses lists and tables from env', () => {
    const c = loadConfig({
      env: {
        ASKR_SERVER_TRUSTED_PROXIES: '10.0.0.0/8, ::1',
        ASKR_FPM_INI: 'memory_limit=256M,display_errors=0',
      },
    });
    expect(c.server.trusted_proxies).toEqual(['10.0.0.0/8', '::1']);
    expect(c.fpm.ini).toEqual({ memory_limit: '256M', display_errors: '0' });
  });

  it.each([
    ['[server]\nport = 1\n', /:2: unknown key "port" in \[server\]; allowed keys: listen, /],
    [
      '[server]\nlisten = "x:1"\n\nlisten_addr = "x"\n',
      /:4: unknown key "listen_addr" in \[server\]; did you mean "listen"\? Allowed keys: listen, /,
    ],
    [
      '[sse]\ngrant_secert = "x"\n',
      /:2: unknown key "grant_secert" in \[sse\]; did you mean "grant_secret"\? Allowed keys:/,
    ],
    [
      '[server]\nredis_url = "x"\n',
      /unknown key "redis_url" in \[server\]; did you mean \[cluster\] redis_url\? \(that key belongs in another section\)/,
    ],
    ['[nope]\n', /:1: unknown section \[nope\]; allowed sections: server, static, fastcgi/],
    ['[servr]\n', /:1: unknown section \[servr\]; did you mean \[server\]\? Allowed sections:/],
    ['[server]\nmax_connections = "10"\n', /server\.max_connections = "10": expected an integer/],
    [
      '[server]\nmax_connections = 0\n',
      /server\.max_connections = 0: expected a value greater than 0/,
    ],
    [
      '[broadcast]\nsocket_mode = "777x"\n',
      /broadcast\.socket_mode = "777x": expected an octal file mode/,
    ],
    [
      '[sse]\nevents_path = "events"\n',
      /sse\.events_path = "events": expected a path starting with "\/"/,
    ],
    [
      '[server]\nsemi_space_size = "512KiB"\n',
      /server\.semi_space_size = "512KiB": expected 0 or at least 1MiB/,
    ],
    [
      'listen = "x"\n',
      /:1: top-level key "listen" must be a \[section\]; it belongs under \[server\] or \[metrics\]/,
    ],
    ['[server\n', /sidecar\.toml:1:\d+: TOML syntax error/],
    [
      '[server]\nlisten = "127.0.0.1:80\n',
      /sidecar\.toml:2:10: TOML syntax error: unclosed string \("\) in the value of listen at line 2, column 10/,
    ],
    [
      '[server]\nlisten = "1.2.3.4:99999"\n',
      /server\.listen = "1\.2\.3\.4:99999": expected .*0-65535/,
    ],
  ])('rejects %j with a precise message', (text, message) => {
    const path = file(text);
    expect(() => loadConfig({ file: path, env: {} })).toThrow(message);
    expect(() => loadConfig({ file: path, env: {} })).toThrow(path);
  });

  it.each([
    ['[sse]\ngrant_secret = 12345\n', 'sse.grant_secret = ****: expected a string', '12345'],
    ['[sse]\ngrant_secret = "s3cr3t\n', 'unclosed string', 's3cr3t'],
    [
      '[cluster]\nredis_url = "redis://:hunter2@h:99999"\n',
      'cluster.redis_url = "redis://:***@h:99999"',
      'hunter2',
    ],
  ])('an error about %j never prints the secret', (text, message, secret) => {
    const path = file(text);
    let error = '';
    try {
      loadConfig({ file: path, env: {} });
    } catch (err) {
      error = (err as Error).message;
    }
    expect(error).toContain(message);
    expect(error).not.toContain(secret);
  });

  it('an unknown env key suggests the variable; a flag names itself', () => {
    expect(() => loadConfig({ env: { ASKR_SSE_GRANT_SECERT: 'x' } })).toThrow(
      'environment ASKR_SSE_GRANT_SECERT: unknown key "grant_secert" in [sse]; did you mean ASKR_SSE_GRANT_SECRET?',
    );
    expect(() =>
      loadConfig({
        env: {},
        overrides: { 'server.listen': 'nowhere' },
        flags: { 'server.listen': '--listen' },
      }),
    ).toThrow('flag --listen: server.listen = "nowhere": expected');
  });

  it('records the source of every value, weakest first', () => {
    const path = file('[server]\nindex = "app.php"\n\nlisten = "127.0.0.1:1111"\n');
    const loaded = loadConfigWithProvenance({
      file: path,
      env: { ASKR_SERVER_LISTEN: '127.0.0.1:2222', ASKR_SOCKET: '/x', ASKR_SERVR_ROOT: '/y' },
      overrides: { 'server.listen': '127.0.0.1:3333' },
      flags: { 'server.listen': '--listen' },
    });
    expect(loaded.provenance.get('server.listen')).toEqual([
      { kind: 'default' },
      { kind: 'file', file: path, line: 4 },
      { kind: 'env', name: 'ASKR_SERVER_LISTEN' },
      { kind: 'flag', flag: '--listen' },
    ]);
    expect(loaded.provenance.get('server.index')).toEqual([
      { kind: 'default' },
      { kind: 'file', file: path, line: 2 },
    ]);
    expect(loaded.provenance.get('server.root')).toEqual([{ kind: 'default' }]);
    expect(loaded.raw.get('server.listen')).toBe('127.0.0.1:3333');
    expect(loaded.unusedEnv.sort()).toEqual(['ASKR_SERVR_ROOT', 'ASKR_SOCKET']);
    expect(loaded.baseDir).toBe(join(path, '..'));
  });

  it('a missing file is a clear error', () => {
    expect(() => loadConfig({ file: '/nonexistent/sidecar.toml', env: {} })).toThrow(
      /cannot read the config file/,
    );
  });
});

describe('generated files', () => {
  it('sidecar.toml is the rendered schema (run `npm run gen:config` after changing the schema)', () => {
    expect(readFileSync(new URL('../../sidecar.toml', import.meta.url), 'utf8')).toBe(renderToml());
  });
  it('docs/configuration.md is the rendered schema', () => {
    expect(readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')).toBe(
      renderMarkdown(),
    );
  });
  it('the README config and metrics sections are the generated ones', async () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    let expected = readme;
    for (const [name, body] of Object.entries(await renderReadmeSections())) {
      expected = spliceGenerated(expected, name, body);
    }
    expect(readme).toBe(expected);
  });
  it('the shipped sidecar.toml loads and equals the defaults', () => {
    const shipped = loadConfig({
      file: new URL('../../sidecar.toml', import.meta.url).pathname,
      env: {},
    });
    const defaults = loadConfig({ env: {}, baseDir: new URL('../..', import.meta.url).pathname });
    expect({ ...shipped, source: '' }).toEqual({ ...defaults, source: '' });
  });
});
