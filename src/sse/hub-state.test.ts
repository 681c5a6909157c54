/**
 * sse.state_file: a hub's state survives save -> load -> new Hub (same epoch, ids continue,
 * history replays), and a missing or malformed file starts fresh instead of failing.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Hub, type HubOptions } from './hub.ts';
import { loadHubState, saveHubState } from './hub-state.ts';

const logger = pino({ level: 'silent' });
const options: HubOptions = {
  historySize: 10,
  historyMaxAgeMs: 0,
  subscriberQueueBytes: 1 << 20,
  heartbeatIntervalMs: 0,
  maxLifetimeMs: 0,
  idleTimeoutMs: 0,
  retryMs: 1000,
  maxConnections: 10,
  maxConnectionsPerIp: 10,
  logger,
};

describe('hub state file', () => {
  it('round-trips epoch, seq and history', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'askr-hs-')), 'state.json');
    const a = new Hub(options);
    a.publish({
      channels: ['x'],
      data: Buffer.from('one'),
      ingress: 'internal',
      publisherId: 'p1',
    });
    a.publish({ channels: ['x', 'y'], data: Buffer.from('two'), ingress: 'internal' });
    a.closeAll(1000);
    await saveHubState(path, a.exportState());
    const state = await loadHubState(path, logger);
    expect(state).not.toBeNull();
    const b = new Hub({ ...options, ...(state ? { state } : {}) });
    expect(b.epoch).toBe(a.epoch);
    const next = b.publish({ channels: ['x'], data: Buffer.from('three'), ingress: 'internal' });
    expect(next.id).toBe(`${a.epoch}-3`);
    // The publisher id index survives too: a retried publish stays a duplicate.
    expect(
      b.publish({
        channels: ['x'],
        data: Buffer.from('one'),
        ingress: 'internal',
        publisherId: 'p1',
      }).id,
    ).toBeNull();
    expect(b.stats().channels).toBe(2);
    b.closeAll(1000);
  });

  it('a missing file is no state, a malformed one is logged and ignored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'askr-hs-'));
    expect(await loadHubState(join(dir, 'none.json'), logger)).toBeNull();
    for (const text of [
      '{',
      '{"version":2}',
      '{"version":1,"epoch":"e","seq":-1,"channels":[]}',
      '{"version":1,"epoch":"e","seq":1,"channels":[{"name":"x"}]}',
    ]) {
      writeFileSync(join(dir, 'bad.json'), text);
      expect(await loadHubState(join(dir, 'bad.json'), logger)).toBeNull();
    }
  });
});
