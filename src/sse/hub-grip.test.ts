/**
 * GRIP content in the hub (issue 12, item 4): a publish through Pushpin's API (ingress "grip")
 * reaches a GRIP hold as its raw bytes and every other stream as an SSE event, live, in a replay,
 * and after a restart through sse.state_file. A recurrence shows as `data:` framing inside a GRIP
 * stream, or raw bytes breaking the framing of an askr stream.
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Hub, type HubOptions, type SseSink } from './hub.ts';
import { loadHubState, saveHubState } from './hub-state.ts';

/** A sink that takes every write at once. */
class Sink extends EventEmitter implements SseSink {
  readonly chunks: Buffer[] = [];
  readonly writableLength = 0;
  readonly writableNeedDrain = false;
  destroyed = false;
  write(chunk: Buffer, callback?: (error?: Error | null) => void): boolean {
    this.chunks.push(chunk);
    callback?.();
    return true;
  }
  end(): void {
    this.destroyed = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }
}

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
  logger: pino({ level: 'silent' }),
  epoch: 'ep',
  defer: (flush) => {
    flush();
  },
};

function subscribe(hub: Hub, grip: boolean, lastEventId?: string): Sink {
  const sink = new Sink();
  hub.subscribe({
    sink,
    channels: ['news'],
    clientIp: '127.0.0.1',
    kind: 'hold',
    grip,
    ...(lastEventId === undefined ? {} : { lastEventId }),
  });
  return sink;
}

describe('GRIP content in the hub', () => {
  it('a GRIP hold gets the raw bytes, any other stream an event; empty content writes nothing', () => {
    const hub = new Hub(options);
    const grip = subscribe(hub, true);
    const askr = subscribe(hub, false);
    const raw = Buffer.from([0x64, 0x0a, 0xff]);
    expect(hub.publish({ channels: ['news'], data: raw, ingress: 'grip' }).subscribers).toBe(2);
    hub.publish({ channels: ['news'], data: Buffer.alloc(0), ingress: 'grip' });
    hub.publish({ channels: ['news'], data: Buffer.from('askr'), ingress: 'http' });
    expect(grip.text()).toBe(`retry: 1000\n\nd\n\xff` + 'id: ep-3@news\ndata: askr\n\n');
    expect(askr.text()).toBe(
      'retry: 1000\n\nid: ep-1@news\ndata: d\ndata: \xff\n\nid: ep-2@news\ndata:\n\nid: ep-3@news\ndata: askr\n\n',
    );
    hub.closeAll(1000);
  });

  it('replays GRIP content raw to a GRIP hold, also after a restart (sse.state_file)', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'askr-grip-')), 'state.json');
    const a = new Hub(options);
    a.publish({ channels: ['news'], data: Buffer.from('first'), ingress: 'http' });
    a.publish({ channels: ['news'], data: Buffer.from('raw;'), ingress: 'grip' });
    expect(subscribe(a, true, 'ep-1@news').text()).toBe('retry: 1000\n\nraw;');
    a.closeAll(1000);
    await saveHubState(path, a.exportState());
    const state = await loadHubState(path, pino({ level: 'silent' }));
    const b = new Hub({ ...options, ...(state === null ? {} : { state }) });
    expect(subscribe(b, true, 'ep-1@news').text()).toBe('retry: 1000\n\nraw;');
    expect(subscribe(b, false, 'ep-1@news').text()).toBe(
      'retry: 1000\n\nid: ep-2@news\ndata: raw;\n\n',
    );
    b.closeAll(1000);
  });
});
