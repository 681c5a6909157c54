/**
 * configChanges: which keys a reload applies, which need a restart, and what runs afterwards.
 * Regression (issue 14): a SIGHUP with no change used to replace the datagram socket's fallback
 * path with the configured default, so PHP got ASKR_SOCKET=/run/askr/askr.sock and every
 * askr_broadcast() failed; a recurrence shows as broadcast.socket in needRestart or the default
 * path in `effective`.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { schema, type SidecarConfig } from '../config/schema.ts';
import { configChanges } from './config-changes.ts';

const FALLBACK = '/tmp/askr-1000/askr.sock';

function configured(overrides: Record<string, unknown> = {}): SidecarConfig {
  return loadConfig({ env: {}, overrides: { 'server.root': '/srv/app/public', ...overrides } });
}

/** What start-up makes of `configured()`: the real root and the socket's private fallback. */
function derived(config: SidecarConfig): SidecarConfig {
  const out = structuredClone(config);
  out.server.root = '/srv/releases/42/public';
  out.broadcast.socket = FALLBACK;
  return out;
}

describe('configChanges', () => {
  it('keeps derived values and reports nothing when the file did not change', () => {
    const atStart = configured();
    const running = derived(atStart);
    const changes = configChanges(atStart, running, configured());
    expect(changes.applied).toEqual([]);
    expect(changes.needRestart).toEqual([]);
    expect(changes.effective.broadcast.socket).toBe(FALLBACK);
    expect(changes.effective.server.root).toBe('/srv/releases/42/public');
    expect(changes.effective).toEqual(running);
  });

  it('lists reloadable keys that change as applied, in schema order, and takes their values', () => {
    const atStart = configured();
    const next = configured({
      'log.level': 'warn',
      'static.cache_control': 'max-age=60',
      'server.trusted_proxies': ['10.0.0.0/8'],
      'sse.retry': '7s',
    });
    const changes = configChanges(atStart, derived(atStart), next);
    expect(changes.applied).toEqual([
      'server.trusted_proxies',
      'static.cache_control',
      'log.level',
      'sse.retry',
    ]);
    expect(changes.needRestart).toEqual([]);
    expect(changes.effective.log.level).toBe('warn');
    expect(changes.effective.server.trusted_proxies).toEqual(['10.0.0.0/8']);
    expect(changes.effective.sse.retry).toBe(7000);
    expect(changes.effective.source).toBe(next.source);
  });

  it('reports restart keys against what the file said at start and keeps their running value', () => {
    const atStart = configured();
    const running = derived(atStart);
    const next = configured({
      'server.listen': '127.0.0.1:9999',
      'broadcast.socket': '/srv/a.sock',
    });
    const first = configChanges(atStart, running, next);
    expect(first.needRestart).toEqual(['server.listen', 'broadcast.socket']);
    expect(first.applied).toEqual([]);
    expect(first.effective.server.listen).toBe(atStart.server.listen);
    expect(first.effective.broadcast.socket).toBe(FALLBACK);
    // Asked again, the answer is the same: the running value still differs from the file.
    expect(configChanges(atStart, first.effective, next).needRestart).toEqual([
      'server.listen',
      'broadcast.socket',
    ]);
    // Back to what it was at start: nothing to restart for.
    expect(configChanges(atStart, first.effective, configured()).needRestart).toEqual([]);
  });

  it('treats a key read only when its component starts as a restart key', () => {
    const atStart = configured();
    const changes = configChanges(
      atStart,
      derived(atStart),
      configured({ 'fpm.restart_backoff_max': '5s' }),
    );
    expect(changes.needRestart).toEqual(['fpm.restart_backoff_max']);
    expect(changes.effective.fpm.restart_backoff_max).toBe(atStart.fpm.restart_backoff_max);
  });

  it('reports every restart-marked key of the schema, and leaves its inputs alone', () => {
    const atStart = configured();
    const running = derived(atStart);
    const next = configured();
    const restartKeys = Object.entries(schema).flatMap(([section, fields]) =>
      Object.entries(fields as Record<string, { restart?: boolean }>)
        .filter(([, field]) => field.restart === true)
        .map(([key]) => `${section}.${key}`),
    );
    const sections = next as unknown as Record<string, Record<string, unknown>>;
    for (const path of restartKeys) {
      const [section = '', key = ''] = path.split('.');
      const target = sections[section];
      if (target !== undefined) target[key] = `changed-${path}`;
    }
    const asLoaded = structuredClone(next);
    expect(configChanges(atStart, running, next).needRestart).toEqual(restartKeys);
    expect(next).toEqual(asLoaded);
    expect(running).toEqual(derived(atStart));
  });
});
