// Hub state under a controlled clock: fake sinks (the SseSink contract, emitting 'close' on the
// next tick like a ServerResponse) and vitest fake intervals for the heartbeat and sweep timers.
// Covers what is slow or racy to reach over sockets: memory after channel churn, history age,
// lifetime/idle expiry, tombstones of deleted channels, replay budget, drain, reconfigure,
// validation errors, and the rate-limited slow-consumer log.
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, ErrorCodes, SidecarError } from '../errors.ts';
import {
  Hub,
  QUEUED_FRAME_OVERHEAD_BYTES,
  SINK_WRITE_OVERHEAD_BYTES,
  type HubOptions,
  type SseSink,
  type TopicView,
} from './hub.ts';
import { PING_FRAME } from './sse-encoder.ts';

class FakeSink extends EventEmitter implements SseSink {
  readonly chunks: Buffer[] = [];
  ended = false;
  destroyed = false;
  /** When true, written bytes stay queued (a client that does not read): write callbacks wait,
   * and from `highWaterMark` queued bytes on, write() returns false until catchUp(). */
  stalled = false;
  highWaterMark = 16 * 1024;
  writableLength = 0;
  writableNeedDrain = false;
  throwOnWrite = false;
  /** Write callbacks of a reading client run on the next tick (a real socket), not at once. */
  asyncCallbacks = false;
  readonly #callbacks: (() => void)[] = [];

  write(chunk: Buffer, callback?: (error?: Error | null) => void): boolean {
    if (this.throwOnWrite) throw new Error('boom');
    if (this.ended) throw new Error('write after end');
    this.chunks.push(chunk);
    if (!this.stalled) {
      // Handed on at once; a socket says so on the next tick, as a ServerResponse does.
      if (callback !== undefined) {
        if (this.asyncCallbacks) process.nextTick(callback);
        else callback();
      }
      return true;
    }
    this.writableLength += chunk.length;
    if (callback !== undefined) this.#callbacks.push(callback);
    if (this.writableLength >= this.highWaterMark) this.writableNeedDrain = true;
    return !this.writableNeedDrain;
  }
  /** The client read everything: pending write callbacks run, then 'drain' if one was due. */
  catchUp(): void {
    this.stalled = false;
    this.writableLength = 0;
    for (const callback of this.#callbacks.splice(0)) callback();
    if (this.writableNeedDrain) {
      this.writableNeedDrain = false;
      this.emit('drain');
    }
  }
  end(): void {
    this.ended = true;
    process.nextTick(() => this.emit('close'));
  }
  destroy(): void {
    this.destroyed = true;
    process.nextTick(() => this.emit('close'));
  }
  /** The client went away. */
  hangUp(): void {
    this.destroyed = true;
    this.emit('close');
  }
  text(): string {
    return Buffer.concat(this.chunks).toString();
  }
  /** Events as [id, data] pairs, parsed loosely (enough for frames this hub writes). */
  events(): { id: string; event: string; data: string }[] {
    return this.text()
      .split('\n\n')
      .filter((block) => block.includes('data:'))
      .map((block) => {
        const field = (name: string): string =>
          block
            .split('\n')
            .filter((l) => l.startsWith(`${name}:`))
            .map((l) => l.slice(name.length + 1).replace(/^ /, ''))
            .join('\n');
        return { id: field('id'), event: field('event'), data: field('data') };
      });
  }
}

let clock = 0;
let logLines: Record<string, unknown>[] = [];
const hubs: Hub[] = [];

function makeHub(options: Partial<HubOptions> = {}): Hub {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  const hub = new Hub({
    historySize: 100,
    historyMaxAgeMs: 60_000,
    subscriberQueueBytes: 1 << 20,
    heartbeatIntervalMs: 15_000,
    maxLifetimeMs: 0,
    idleTimeoutMs: 0,
    retryMs: 3000,
    maxConnections: 1000,
    maxConnectionsPerIp: 1000,
    sweepIntervalMs: 1000,
    epoch: 'ep0',
    logger: pino({ level: 'debug' }, destination),
    now: () => clock,
    // Publishes write at once here, so sinks can be read right after; the per-turn batching
    // itself is tested in 'one write per stream per event-loop turn (issue 13)'.
    defer: (flush) => {
      flush();
    },
    ...options,
  });
  hubs.push(hub);
  return hub;
}

/** Advances the hub clock and the fake timers together. */
function advance(ms: number): void {
  clock += ms;
  vi.advanceTimersByTime(ms);
}

function subscribe(
  hub: Hub,
  channels: string[],
  extra: { lastEventId?: string; ip?: string; sink?: FakeSink; socketId?: string } = {},
) {
  const sink = extra.sink ?? new FakeSink();
  const handle = hub.subscribe({
    sink,
    channels,
    lastEventId: extra.lastEventId ?? null,
    clientIp: extra.ip ?? '10.0.0.1',
    kind: 'events',
    socketId: extra.socketId,
  });
  return { sink, handle };
}

const pub = (
  hub: Hub,
  channels: string[],
  text: string,
  extra: { publisherId?: string; socket?: string } = {},
) => hub.publish({ channels, data: Buffer.from(text), ingress: 'internal', ...extra });

beforeEach(() => {
  clock = 1_000_000;
  logLines = [];
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
});
afterEach(() => {
  for (const hub of hubs.splice(0)) hub.closeAll(0);
  vi.useRealTimers();
});

describe('fan-out', () => {
  it('writes the same Buffer to every subscriber of a channel', () => {
    const hub = makeHub();
    const a = subscribe(hub, ['c']);
    const b = subscribe(hub, ['c']);
    pub(hub, ['c'], 'x');
    expect(a.sink.chunks.at(-1)).toBe(b.sink.chunks.at(-1));
    expect(a.sink.chunks.at(-1)?.toString()).toBe('id: ep0-1@c\ndata: x\n\n');
  });

  it('reports hooks: publish, deliver, subscribers changed', () => {
    const calls: string[] = [];
    const hub = makeHub({
      hooks: {
        onPublish: (ingress, n) => calls.push(`publish ${ingress} ${n}`),
        onDeliver: (n, lag) => calls.push(`deliver ${n} ${lag >= 0}`),
        onSubscribersChanged: () => calls.push('changed'),
      },
    });
    const { handle } = subscribe(hub, ['a']);
    hub.publish({ channels: ['a', 'b', 'a'], data: Buffer.from('x'), ingress: 'http' });
    handle.close();
    expect(calls).toEqual(['changed', 'publish http 2', 'deliver 1 true', 'changed']);
  });

  it('ends a stream through its handle and frees the per-IP slot', () => {
    const hub = makeHub({ maxConnectionsPerIp: 1 });
    const { sink, handle } = subscribe(hub, ['a'], { ip: '10.0.0.9' });
    expect(hub.admissionProblem('10.0.0.9')).toBe(
      'too many streams from 10.0.0.9: 1 (sse.max_connections_per_ip)',
    );
    expect(hub.admissionProblem('10.0.0.8')).toBeNull();
    handle.close();
    expect(sink.ended).toBe(true);
    expect(hub.admissionProblem('10.0.0.9')).toBeNull();
    expect(hub.stats()).toEqual({
      connections: 0,
      channels: 0,
      byKind: { hold: 0, events: 0, mercure: 0 },
    });
  });

  it('writes initial bytes after retry: and before replay (holds)', () => {
    const hub = makeHub();
    pub(hub, ['h'], 'missed');
    const sink = new FakeSink();
    hub.subscribe({
      sink,
      channels: ['h'],
      lastEventId: 'ep0-0',
      clientIp: '1.2.3.4',
      kind: 'hold',
      initial: Buffer.from('data: from php\n\n'),
    });
    expect(sink.text()).toBe('retry: 3000\n\ndata: from php\n\nid: ep0-1@h\ndata: missed\n\n');
    expect(sink.chunks).toHaveLength(1); // one write, not one per replayed event
    expect(hub.stats().byKind).toEqual({ hold: 1, events: 0, mercure: 0 });
  });

  it('drops a stream whose sink throws, without throwing out of publish', () => {
    const hub = makeHub();
    const bad = subscribe(hub, ['a']);
    const good = subscribe(hub, ['a']);
    bad.sink.throwOnWrite = true;
    expect(pub(hub, ['a'], 'x').subscribers).toBe(1);
    expect(bad.sink.destroyed).toBe(true);
    expect(good.sink.events()).toHaveLength(1);
    expect(hub.stats().connections).toBe(1);
  });
});

describe('validation', () => {
  const expectError = (fn: () => unknown, code: string): void => {
    let caught: unknown;
    try {
      fn();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SidecarError);
    expect((caught as SidecarError).code).toBe(code);
  };

  it('rejects CR/LF in the event name, bad channel names and empty channel lists', () => {
    const hub = makeHub();
    const data = Buffer.from('x');
    expectError(
      () => hub.publish({ channels: ['a'], data, event: 'x\nid: 1', ingress: 'http' }),
      ErrorCodes.SSE_ENCODE,
    );
    expectError(
      () => hub.publish({ channels: ['a\nb'], data, ingress: 'http' }),
      ErrorCodes.BAD_REQUEST,
    );
    expectError(
      () => hub.publish({ channels: ['a:b'], data, ingress: 'http' }),
      ErrorCodes.BAD_REQUEST,
    );
    expectError(() => hub.publish({ channels: [], data, ingress: 'http' }), ErrorCodes.BAD_REQUEST);
    expectError(() => subscribe(hub, []), ErrorCodes.BAD_REQUEST);
    expectError(() => subscribe(hub, ['ok', 'not ok']), ErrorCodes.BAD_REQUEST);
    expect(hub.stats().connections).toBe(0);
  });

  it('rejects a bad epoch and negative options', () => {
    expect(() => makeHub({ epoch: 'a@b' })).toThrow(ConfigError);
    expect(() => makeHub({ historySize: -1 })).toThrow(ConfigError);
    const hub = makeHub();
    expect(() => hub.reconfigure({ retryMs: Number.NaN })).toThrow(ConfigError);
  });

  it('generates an 8-character base36 epoch by default', () => {
    const options: HubOptions = {
      historySize: 1,
      historyMaxAgeMs: 0,
      subscriberQueueBytes: 1,
      heartbeatIntervalMs: 0,
      maxLifetimeMs: 0,
      idleTimeoutMs: 0,
      retryMs: 0,
      maxConnections: 1,
      maxConnectionsPerIp: 1,
      logger: pino({ level: 'silent' }),
    };
    const hub = new Hub(options);
    hubs.push(hub);
    expect(hub.epoch).toMatch(/^[0-9a-z]{8}$/);
    const other = new Hub(options);
    hubs.push(other);
    expect(other.epoch).not.toBe(hub.epoch);
  });
});

describe('memory', () => {
  it('10,000 subscribe/unsubscribe cycles on distinct channels leave no channel behind', () => {
    const hub = makeHub({ historySize: 10, historyMaxAgeMs: 5000 });
    for (let i = 0; i < 10_000; i++) {
      const { sink } = subscribe(hub, [`user.${i}`]);
      if (i % 2 === 0) pub(hub, [`user.${i}`], 'hello');
      sink.hangUp();
    }
    // Channels that got an event keep it for replay until it ages out.
    expect(hub.stats()).toMatchObject({ connections: 0, channels: 5000 });
    advance(5000);
    expect(hub.stats()).toMatchObject({ connections: 0, channels: 0 });
  });

  it('a channel nobody listens to and without history is not kept', () => {
    const hub = makeHub({ historySize: 0 });
    pub(hub, ['nobody'], 'x');
    expect(hub.stats().channels).toBe(0);
  });
});

describe('history and replay', () => {
  it('evicts by age on the sweep timer, and a reconnect then gets askr:lost', () => {
    const hub = makeHub({ historyMaxAgeMs: 2000 });
    pub(hub, ['a'], '1');
    advance(1000);
    pub(hub, ['a'], '2');
    advance(1000); // event 1 is 2000 ms old: evicted
    const { sink } = subscribe(hub, ['a'], { lastEventId: 'ep0-0@a' });
    expect(sink.events()).toEqual([
      { id: 'ep0-2', event: 'askr:lost', data: '{"reason":"too_old","lastEventId":"ep0-0@a"}' },
      { id: 'ep0-2@a', event: '', data: '2' },
    ]);
  });

  it('replays across channels in seq order, one frame per event and channel, in publish order', () => {
    const hub = makeHub();
    pub(hub, ['a'], '1');
    pub(hub, ['b', 'a'], '2');
    pub(hub, ['c'], 'not mine');
    pub(hub, ['a', 'b'], '4');
    const { sink } = subscribe(hub, ['a', 'b'], { lastEventId: 'ep0-1@a' });
    expect(sink.events().map((e) => `${e.id} ${e.data}`)).toEqual([
      'ep0-2@b 2',
      'ep0-2@a 2',
      'ep0-4@a 4',
      'ep0-4@b 4',
    ]);
  });

  it('reports unknown_id for garbage and for a seq this hub never issued', () => {
    const lost: string[] = [];
    const hub = makeHub({ hooks: { onLost: (r) => lost.push(r) } });
    pub(hub, ['a'], '1');
    subscribe(hub, ['a'], { lastEventId: 'garbage' });
    subscribe(hub, ['a'], { lastEventId: 'ep0-99' });
    subscribe(hub, ['a'], { lastEventId: 'other-1' });
    expect(lost).toEqual(['unknown_id', 'unknown_id', 'epoch']);
  });

  it('history_size 0: a reconnect after a missed event is told, one without a miss is not', () => {
    const lost: string[] = [];
    const hub = makeHub({ historySize: 0, hooks: { onLost: (r) => lost.push(r) } });
    const { sink } = subscribe(hub, ['a']);
    pub(hub, ['a'], '1');
    sink.hangUp();
    subscribe(hub, ['a'], { lastEventId: 'ep0-1@a' }).sink.hangUp();
    expect(lost).toEqual([]);
    pub(hub, ['a'], '2');
    subscribe(hub, ['a'], { lastEventId: 'ep0-1@a' });
    expect(lost).toEqual(['too_old']);
  });

  it('a quiet channel deleted between two connections does not cause a false askr:lost', () => {
    const lost: string[] = [];
    const hub = makeHub({ historyMaxAgeMs: 1000, hooks: { onLost: (r) => lost.push(r) } });
    const first = subscribe(hub, ['quiet']);
    pub(hub, ['quiet'], 'only event');
    pub(hub, ['busy'], 'x');
    advance(5000); // both histories age out; 'busy' is deleted, 'quiet' kept by its subscriber
    first.sink.hangUp(); // 'quiet' deleted now
    subscribe(hub, ['quiet', 'never-used'], { lastEventId: 'ep0-1@quiet' });
    expect(lost).toEqual([]);
  });

  it('a deleted channel still reports what it evicted (tombstone), and after the TTL the floor does', () => {
    const lost: string[] = [];
    const hub = makeHub({ historyMaxAgeMs: 1000, hooks: { onLost: (r) => lost.push(r) } });
    pub(hub, ['a'], '1');
    pub(hub, ['a'], '2');
    advance(2000); // history empty, nobody subscribed: 'a' is deleted
    expect(hub.stats().channels).toBe(0);
    subscribe(hub, ['a'], { lastEventId: 'ep0-1@a' }).sink.hangUp();
    expect(lost).toEqual(['too_old']);
    advance(11 * 60_000); // tombstone folded into the floor
    subscribe(hub, ['a'], { lastEventId: 'ep0-1@a' }).sink.hangUp();
    subscribe(hub, ['z'], { lastEventId: 'ep0-2' }).sink.hangUp();
    expect(lost).toEqual(['too_old', 'too_old']);
  });

  it('bounds the replay by the subscriber queue: the newest that fit, after askr:lost', () => {
    // retry: (13 B) + askr:lost (78 B) + 3 events of 51 B, in one write: fits; a 4th would not.
    const hub = makeHub({
      subscriberQueueBytes: SINK_WRITE_OVERHEAD_BYTES + 13 + 78 + 3 * 51 + 50,
    });
    for (let i = 1; i <= 20; i++) pub(hub, ['a'], 'x'.repeat(30));
    const { sink } = subscribe(hub, ['a'], { lastEventId: 'ep0-0' });
    const events = sink.events();
    expect(events[0]?.event).toBe('askr:lost');
    expect(events.slice(1).map((e) => e.id)).toEqual(['ep0-18@a', 'ep0-19@a', 'ep0-20@a']);
    expect(sink.destroyed).toBe(false);
  });

  it('shrinking history_size by reconfigure trims every channel', () => {
    const hub = makeHub();
    for (let i = 1; i <= 10; i++) pub(hub, ['a'], String(i));
    hub.reconfigure({ historySize: 2 });
    const { sink } = subscribe(hub, ['a'], { lastEventId: 'ep0-5' });
    expect(sink.events().map((e) => e.data)).toEqual([
      '{"reason":"too_old","lastEventId":"ep0-5"}',
      '9',
      '10',
    ]);
  });
});

describe('timers', () => {
  it('one heartbeat timer writes the shared PING_FRAME to every stream', () => {
    const hub = makeHub({ heartbeatIntervalMs: 100 });
    const a = subscribe(hub, ['a']);
    const b = subscribe(hub, ['b']);
    advance(100);
    expect(a.sink.chunks.at(-1)).toBe(PING_FRAME);
    expect(b.sink.chunks.at(-1)).toBe(PING_FRAME);
    hub.reconfigure({ heartbeatIntervalMs: 1000 });
    advance(500);
    expect(a.sink.chunks.filter((c) => c === PING_FRAME)).toHaveLength(1);
  });

  it('ends a stream at max lifetime with a final retry: hint', () => {
    const hub = makeHub({ maxLifetimeMs: 5000, retryMs: 250 });
    const { sink } = subscribe(hub, ['a']);
    advance(4000);
    pub(hub, ['a'], 'x');
    expect(sink.ended).toBe(false);
    advance(1000);
    expect(sink.ended).toBe(true);
    expect(sink.chunks.at(-1)?.toString()).toBe('retry: 250\n\n');
    expect(hub.stats().connections).toBe(0);
  });

  it('ends a stream that got no event for idle_timeout; events (not pings) reset it', () => {
    const hub = makeHub({ idleTimeoutMs: 3000, heartbeatIntervalMs: 500 });
    const { sink } = subscribe(hub, ['a']);
    advance(2000);
    pub(hub, ['a'], 'x');
    advance(2000);
    expect(sink.ended).toBe(false);
    advance(1000);
    expect(sink.ended).toBe(true);
  });

  it('slow consumers: destroyed, counted, logged at most once per 10 s with a count', () => {
    let slow = 0;
    const hub = makeHub({ subscriberQueueBytes: 100, hooks: { onSlowConsumer: () => slow++ } });
    const sinks = [1, 2, 3].map(() => subscribe(hub, ['a']).sink);
    const fast = subscribe(hub, ['a']).sink;
    for (const sink of sinks) sink.stalled = true;
    const first = pub(hub, ['a'], 'y'.repeat(200));
    expect(first.subscribers).toBe(1);
    expect(slow).toBe(3);
    expect(sinks.every((s) => s.destroyed)).toBe(true);
    expect(fast.destroyed).toBe(false);
    const warns = () => logLines.filter((l) => l['level'] === 40);
    expect(warns().map((l) => l['disconnected'])).toEqual([1]);
    const later = subscribe(hub, ['a']).sink;
    later.stalled = true;
    pub(hub, ['a'], 'y'.repeat(200));
    expect(warns()).toHaveLength(1);
    advance(10_000); // the sweep flushes the pending count
    expect(warns().map((l) => l['disconnected'])).toEqual([1, 3]);
  });

  it('never throws out of a timer', () => {
    const hub = makeHub({ heartbeatIntervalMs: 100 });
    const { sink } = subscribe(hub, ['a']);
    sink.throwOnWrite = true;
    expect(() => advance(100)).not.toThrow();
    expect(hub.stats().connections).toBe(0);
  });
});

describe('closeAll (drain)', () => {
  it('writes the retry hint to every stream, ends them, refuses and ends later ones', () => {
    const hub = makeHub({ heartbeatIntervalMs: 100 });
    const a = subscribe(hub, ['a']);
    const b = subscribe(hub, ['b']);
    hub.closeAll(5000);
    for (const { sink } of [a, b]) {
      expect(sink.ended).toBe(true);
      expect(sink.chunks.at(-1)?.toString()).toBe('retry: 5000\n\n');
    }
    expect(hub.admissionProblem('10.0.0.1')).toBe('the sidecar is shutting down');
    const late = subscribe(hub, ['a']);
    expect(late.sink.ended).toBe(true);
    expect(late.sink.text()).toBe('retry: 5000\n\n');
    advance(1000); // timers are stopped: no ping after the end
    expect(a.sink.chunks.includes(PING_FRAME)).toBe(false);
    expect(hub.stats().connections).toBe(0);
  });
});

describe('admission (limits decided where the place is taken)', () => {
  const limitError = (fn: () => unknown): SidecarError => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(SidecarError);
      expect((err as SidecarError).code).toBe(ErrorCodes.LIMIT);
      return err as SidecarError;
    }
    throw new Error('expected a LIMIT error');
  };

  it('a reserved slot counts as a stream until it is released, subscribed or its sink closes', () => {
    const hub = makeHub({ maxConnections: 2, maxConnectionsPerIp: 2 });
    const firstSink = new FakeSink();
    const secondSink = new FakeSink();
    const first = hub.reserve(firstSink, '10.0.0.1');
    const second = hub.reserve(secondSink, '10.0.0.2');
    expect(hub.reserve(firstSink, '10.0.0.1')).toBe(first); // one place per sink
    expect(limitError(() => hub.reserve(new FakeSink(), '10.0.0.3')).message).toBe(
      'too many streams: 2 (sse.max_connections)',
    );
    // A sink without a slot: subscribe() checks the limits itself, before touching the sink.
    const sink = new FakeSink();
    limitError(() =>
      hub.subscribe({ sink, channels: ['a'], clientIp: '10.0.0.3', kind: 'events' }),
    );
    expect(sink.chunks).toHaveLength(0);
    expect(sink.ended || sink.destroyed).toBe(false);

    // The reserved sink takes its place (no limit check: it already holds one).
    subscribe(hub, ['a'], { sink: firstSink });
    expect(firstSink.text()).toBe('retry: 3000\n\n');
    expect(hub.stats().connections).toBe(1);
    first.release(); // no-op: the stream took the place
    expect(hub.admissionProblem('10.0.0.4')).not.toBeNull();
    second.release();
    second.release();
    expect(hub.admissionProblem('10.0.0.4')).toBeNull();

    // A response that closes before its stream starts gives its place back by itself.
    const gone = new FakeSink();
    hub.reserve(gone, '10.0.0.5');
    expect(hub.admissionProblem('10.0.0.6')).not.toBeNull();
    gone.hangUp();
    expect(hub.admissionProblem('10.0.0.6')).toBeNull();
    // A sink whose slot was released is admitted like any other (there is room).
    subscribe(hub, ['a'], { sink: secondSink, ip: '10.0.0.2' });
    expect(hub.stats().connections).toBe(2);
    limitError(() => subscribe(hub, ['a']));
  });

  it('per client address: slots and streams of one address count together', () => {
    const hub = makeHub({ maxConnectionsPerIp: 2 });
    const slot = hub.reserve(new FakeSink(), '10.0.0.9');
    subscribe(hub, ['a'], { ip: '10.0.0.9' });
    expect(limitError(() => hub.reserve(new FakeSink(), '10.0.0.9')).message).toBe(
      'too many streams from 10.0.0.9: 2 (sse.max_connections_per_ip)',
    );
    limitError(() => subscribe(hub, ['a'], { ip: '10.0.0.9' }));
    hub.reserve(new FakeSink(), '10.0.0.8').release();
    slot.release();
    subscribe(hub, ['a'], { ip: '10.0.0.9' });
    expect(hub.stats().connections).toBe(2);
  });

  it('refuses to reserve while draining; a sink reserved before the drain is ended with retry:', () => {
    const hub = makeHub();
    const sink = new FakeSink();
    hub.reserve(sink, '10.0.0.1');
    hub.closeAll(5000);
    expect(limitError(() => hub.reserve(new FakeSink(), '10.0.0.1')).message).toBe(
      'the sidecar is shutting down',
    );
    subscribe(hub, ['a'], { sink });
    expect(sink.text()).toBe('retry: 5000\n\n');
    expect(sink.ended).toBe(true);
  });
});

describe('slow-subscriber accounting (what a stream holds is what the bound compares)', () => {
  /** A stream whose client stopped reading: the sink keeps what it is given (its write callbacks
   * wait), and needs a drain from the first write on. */
  function stalledStream(hub: Hub, channel = 'a') {
    const stream = subscribe(hub, [channel]);
    stream.sink.stalled = true;
    stream.sink.highWaterMark = 1;
    return stream;
  }
  const frameOf = (seq: number, channel: string, text: string): Buffer =>
    Buffer.from(`id: ep0-${seq}@${channel}\ndata: ${text}\n\n`);

  it('while the sink holds a write, frames wait in the hub and go out in ONE write once it is taken, in order', () => {
    const hub = makeHub();
    const { sink, handle } = stalledStream(hub);
    const fast = subscribe(hub, ['a']).sink;
    pub(hub, ['a'], 'e1'); // handed to the sink, which holds it
    const before = sink.chunks.length;
    for (const text of ['e2', 'e3', 'e4', 'e5']) pub(hub, ['a'], text);
    expect(sink.chunks).toHaveLength(before); // nothing more handed to the sink
    const queued = [2, 3, 4, 5].map((seq) => frameOf(seq, 'a', `e${seq}`));
    const queuedBytes = queued.reduce((n, b) => n + b.length, 0);
    expect(hub.queuedBytes()).toBe(queuedBytes);
    expect(hub.heldBytes(handle.id)).toBe(
      frameOf(1, 'a', 'e1').length + // the sink's writableLength
        SINK_WRITE_OVERHEAD_BYTES + // its write not handed on yet
        queuedBytes +
        4 * QUEUED_FRAME_OVERHEAD_BYTES,
    );

    sink.catchUp();
    expect(sink.chunks).toHaveLength(before + 1);
    expect(sink.chunks.at(-1)).toEqual(Buffer.concat(queued));
    expect(hub.queuedBytes()).toBe(0);
    expect(hub.heldBytes(handle.id)).toBe(0);
    pub(hub, ['a'], 'e6'); // drained: straight to the sink again, the shared Buffer
    expect(sink.chunks.at(-1)).toBe(fast.chunks.at(-1));
    expect(sink.events().map((e) => e.data)).toEqual(['e1', 'e2', 'e3', 'e4', 'e5', 'e6']);
    expect(fast.events().map((e) => e.data)).toEqual(['e1', 'e2', 'e3', 'e4', 'e5', 'e6']);
  });

  it('a burst within one tick: the first event is written as is, the rest once, in ONE Buffer shared by the streams', async () => {
    const hub = makeHub();
    const sinks = [1, 2, 3].map(() => {
      const { sink } = subscribe(hub, ['b']);
      sink.asyncCallbacks = true;
      return sink;
    });
    await new Promise((resolve) => process.nextTick(resolve)); // retry: frames handed on
    const before = sinks.map((sink) => sink.chunks.length);
    for (let i = 1; i <= 100; i++) pub(hub, ['b'], `e${i}`);
    expect(sinks.map((sink, i) => sink.chunks.length - (before[i] ?? 0))).toEqual([1, 1, 1]);
    expect(hub.queuedBytes()).toBeGreaterThan(0);
    await new Promise((resolve) => process.nextTick(resolve));
    expect(sinks.map((sink, i) => sink.chunks.length - (before[i] ?? 0))).toEqual([2, 2, 2]);
    const [first, ...others] = sinks.map((sink) => sink.chunks.at(-1));
    for (const other of others) expect(other).toBe(first); // one copy for the burst
    for (const sink of sinks) {
      expect(sink.events().map((e) => e.data)).toEqual(
        Array.from({ length: 100 }, (_, i) => `e${i + 1}`),
      );
    }
    expect(hub.queuedBytes()).toBe(0);
  });

  it('a long queue is merged 256 frames at a time, one merged Buffer shared by the streams that queued them', () => {
    const hub = makeHub();
    const a = stalledStream(hub);
    const b = stalledStream(hub);
    pub(hub, ['a'], 'first'); // handed to both sinks, which hold it
    for (let i = 0; i < 600; i++) pub(hub, ['a'], `q${i}`);
    const queuedBytes = Array.from(
      { length: 600 },
      (_, i) => frameOf(i + 2, 'a', `q${i}`).length,
    ).reduce((n, len) => n + len, 0);
    const held = frameOf(1, 'a', 'first').length + SINK_WRITE_OVERHEAD_BYTES + queuedBytes;
    // 600 frames: two merged entries of 256, then 88 frames still one by one.
    for (const { handle } of [a, b]) {
      expect(hub.heldBytes(handle.id)).toBe(held + (2 + 88) * QUEUED_FRAME_OVERHEAD_BYTES);
    }
    a.sink.catchUp();
    b.sink.catchUp();
    expect(a.sink.chunks.at(-1)).toBe(b.sink.chunks.at(-1)); // the same Buffer for both
    for (const { sink } of [a, b]) {
      expect(sink.events().map((e) => e.data)).toEqual([
        'first',
        ...Array.from({ length: 600 }, (_, i) => `q${i}`),
      ]);
    }
    expect(hub.queuedBytes()).toBe(0);
  });

  it('drops a stream as soon as bytes plus per-write and per-frame overhead pass the bound', () => {
    let slow = 0;
    const bound = 4096;
    const hub = makeHub({ subscriberQueueBytes: bound, hooks: { onSlowConsumer: () => slow++ } });
    const { sink, handle } = stalledStream(hub);
    const fast = subscribe(hub, ['a']).sink;
    // Expected from the model: the first frame is in the sink (one write), the others queued.
    let expected = 0;
    let published = 0;
    for (;;) {
      published++;
      const frame = frameOf(published, 'a', 'x'.repeat(20));
      expected +=
        frame.length + (published === 1 ? SINK_WRITE_OVERHEAD_BYTES : QUEUED_FRAME_OVERHEAD_BYTES);
      pub(hub, ['a'], 'x'.repeat(20));
      if (expected > bound) break;
      expect(hub.heldBytes(handle.id)).toBe(expected);
      expect(sink.destroyed).toBe(false);
    }
    // Bytes alone would have allowed more events; the overhead is real memory.
    expect(published).toBeLessThan(bound / frameOf(published, 'a', 'x'.repeat(20)).length - 20);
    expect(sink.destroyed).toBe(true);
    expect(slow).toBe(1);
    // Released at once: nothing of the dropped stream stays in the hub.
    expect(hub.queuedBytes()).toBe(0);
    expect(hub.heldBytes(handle.id)).toBe(0);
    expect(fast.events()).toHaveLength(published);
  });

  it('skips heartbeats while frames wait; ending the stream writes them, then the final frame', () => {
    const hub = makeHub({ heartbeatIntervalMs: 100 });
    const { sink } = stalledStream(hub);
    pub(hub, ['a'], 'e1');
    pub(hub, ['a'], 'e2'); // queued
    const before = sink.chunks.length;
    advance(100);
    expect(sink.chunks).toHaveLength(before);
    hub.closeAll(250);
    expect(sink.ended).toBe(true);
    expect(sink.chunks.at(-1)?.toString()).toBe('id: ep0-2@a\ndata: e2\n\nretry: 250\n\n');
    expect(hub.queuedBytes()).toBe(0);
  });

  it('a close publish delivers what waits, then the close event, then ends the stream', () => {
    const hub = makeHub();
    const { sink } = stalledStream(hub);
    pub(hub, ['a'], 'e1');
    pub(hub, ['a'], 'e2');
    hub.publish({ channels: ['a'], data: Buffer.from('bye'), close: true, ingress: 'internal' });
    expect(sink.ended).toBe(true);
    expect(sink.events().map((e) => e.data)).toEqual(['e1', 'e2', 'bye']);
  });

  it('a sink that throws on the drain write drops the stream without throwing', () => {
    const hub = makeHub();
    const { sink } = stalledStream(hub);
    pub(hub, ['a'], 'e1');
    pub(hub, ['a'], 'e2');
    sink.throwOnWrite = true;
    expect(() => sink.catchUp()).not.toThrow();
    expect(sink.destroyed).toBe(true);
    expect(hub.stats().connections).toBe(0);
    expect(hub.queuedBytes()).toBe(0);
  });
});

describe('topic views (Mercure streams on the same hub)', () => {
  /** A view over exact topics and a predicate for the rest; `reads` lists readable topics. */
  const view = (
    exact: string[],
    opts: { pattern?: (t: string) => boolean; reads?: string[] } = {},
  ): TopicView => ({
    exact,
    patterns: opts.pattern !== undefined,
    selects: (topics) => topics.some((t) => exact.includes(t) || (opts.pattern?.(t) ?? false)),
    mayRead: (topics) => topics.some((t) => opts.reads?.includes(t) ?? false),
  });
  const mercureSub = (hub: Hub, v: TopicView, initial?: Buffer): FakeSink => {
    const sink = new FakeSink();
    hub.subscribe({
      sink,
      channels: v.exact,
      view: v,
      clientIp: '10.0.0.9',
      kind: 'mercure',
      ...(initial === undefined ? {} : { initial }),
    });
    return sink;
  };
  const mercurePub = (
    hub: Hub,
    topics: string[],
    text: string,
    meta: { private?: boolean; id?: string; retryMs?: number; event?: string } = {},
  ) =>
    hub.publish({
      channels: topics,
      data: Buffer.from(text),
      ...(meta.event === undefined ? {} : { event: meta.event }),
      topicMeta: { private: meta.private === true, id: meta.id, retryMs: meta.retryMs },
      ingress: 'mercure',
    });

  it('delivers an askr publish to an exact view and a Mercure publish to an askr stream, each in its own id form', () => {
    const hub = makeHub();
    const askr = subscribe(hub, ['orders']).sink;
    const mercure = mercureSub(hub, view(['orders']));
    pub(hub, ['orders'], 'from-askr');
    mercurePub(hub, ['orders'], 'from-mercure', { id: 'urn:x:1', event: 'shipped' });
    expect(askr.events().map((e) => [e.id, e.data])).toEqual([
      ['ep0-1@orders', 'from-askr'],
      ['ep0-2@orders', 'from-mercure'],
    ]);
    expect(mercure.events()).toEqual([
      { id: 'urn:askr:ep0-1', event: '', data: 'from-askr' },
      { id: 'urn:x:1', event: 'shipped', data: 'from-mercure' },
    ]);
    expect(hub.stats().byKind).toEqual({ hold: 0, events: 1, mercure: 1 });
  });

  it('an exact view on several topics of one event gets ONE frame; askr streams one per channel', () => {
    const hub = makeHub();
    const mercure = mercureSub(hub, view(['a', 'b']));
    const askr = subscribe(hub, ['a', 'b']).sink;
    expect(pub(hub, ['b', 'x', 'a'], 'both', { socket: '1.2' }).subscribers).toBe(2);
    expect(mercure.events()).toEqual([{ id: 'urn:askr:ep0-1', event: '', data: 'both' }]);
    expect(askr.events().map((e) => e.id)).toEqual(['ep0-1@b', 'ep0-1@a']);
    // A resume of the Mercure stream is one frame per event too.
    const replay = hub.planTopicReplay(view(['a', 'b']), 'earliest');
    expect(replay.frames.map((f) => f.toString())).toEqual(['id: urn:askr:ep0-1\ndata: both\n\n']);
  });

  it('offers every event to a pattern view, once per event even when several topics match', () => {
    const hub = makeHub();
    const books = mercureSub(hub, view([], { pattern: (t) => t.startsWith('https://ex/books/') }));
    mercurePub(hub, ['https://ex/books/1', 'https://ex/books/2'], 'two-topics');
    mercurePub(hub, ['https://ex/authors/1'], 'not-selected');
    expect(books.events().map((e) => e.data)).toEqual(['two-topics']);
  });

  it('gives private updates only to views whose grants read one of the topics, and to askr streams only on private-* channels', () => {
    const hub = makeHub();
    const anonymous = mercureSub(hub, view(['a']));
    const granted = mercureSub(hub, view(['a'], { reads: ['alt'] }));
    const askrPublic = subscribe(hub, ['a']).sink;
    const askrPrivate = subscribe(hub, ['private-a']).sink;
    mercurePub(hub, ['a', 'alt', 'private-a'], 'secret', { private: true });
    expect(anonymous.events()).toEqual([]);
    expect(granted.events().map((e) => e.data)).toEqual(['secret']);
    expect(askrPublic.events()).toEqual([]);
    expect(askrPrivate.events().map((e) => e.data)).toEqual(['secret']);
    // An askr publish on a private-* channel is private for Mercure readers.
    const privateView = mercureSub(hub, view(['private-a']));
    pub(hub, ['private-a'], 'laravel-private');
    expect(privateView.events()).toEqual([]);
  });

  it('plans a resume from a hub id, a publisher id or earliest, honouring grants, with the anchor', () => {
    const hub = makeHub();
    mercurePub(hub, ['t'], 'one', { id: 'custom-1' });
    mercurePub(hub, ['t'], 'two');
    mercurePub(hub, ['t'], 'hidden', { private: true });
    mercurePub(hub, ['other'], 'elsewhere');
    const v = view(['t']);
    const text = (frames: Buffer[]): string[] =>
      frames.map((f) => /data: (.*)/.exec(f.toString())?.[1] ?? '');
    const fromCustom = hub.planTopicReplay(v, 'custom-1');
    expect(fromCustom.anchor).toBe('custom-1');
    expect(text(fromCustom.frames)).toEqual(['two']);
    const fromHubId = hub.planTopicReplay(v, 'urn:askr:ep0-1');
    expect(fromHubId.anchor).toBe('urn:askr:ep0-1');
    expect(text(fromHubId.frames)).toEqual(['two']);
    const earliest = hub.planTopicReplay(v, 'earliest');
    expect(earliest.anchor).toBe('earliest');
    expect(text(earliest.frames)).toEqual(['one', 'two']);
    const unknown = hub.planTopicReplay(v, 'never-published');
    expect(unknown.anchor).toBe('earliest');
    expect(text(unknown.frames)).toEqual([
      '{"reason":"unknown_id","lastEventId":"never-published"}',
      'one',
      'two',
    ]);
    const reader = hub.planTopicReplay(view(['t'], { reads: ['t'] }), 'custom-1');
    expect(text(reader.frames)).toEqual(['two', 'hidden']);
  });

  it('reports an evicted resume point as earliest with askr:lost carrying a Mercure id', () => {
    const hub = makeHub({ historySize: 2 });
    for (const n of [1, 2, 3, 4]) mercurePub(hub, ['t'], `e${n}`);
    const plan = hub.planTopicReplay(view(['t']), 'urn:askr:ep0-1');
    expect(plan.anchor).toBe('earliest');
    const first = plan.frames[0]?.toString() ?? '';
    expect(first).toContain('event: askr:lost');
    expect(first).toContain('id: urn:askr:ep0-4');
  });

  it('accepts topics outside the askr charset for Mercure publishes only', () => {
    const hub = makeHub();
    expect(mercurePub(hub, ['https://ex/a b@c'], 'x').id).toBe('ep0-1');
    const codeOf = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (err) {
        return err instanceof SidecarError ? err.code : 'not a SidecarError';
      }
      return undefined;
    };
    expect(
      codeOf(() =>
        hub.publish({ channels: ['https://ex/a'], data: Buffer.from('x'), ingress: 'http' }),
      ),
    ).toBe(ErrorCodes.BAD_REQUEST);
    expect(codeOf(() => mercurePub(hub, ['bad\ntopic'], 'x'))).toBe(ErrorCodes.BAD_REQUEST);
  });

  it('ends a stream at its expiry time', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] });
    const hub = makeHub();
    const sink = new FakeSink();
    hub.subscribe({
      sink,
      channels: ['t'],
      view: view(['t']),
      clientIp: '10.0.0.9',
      kind: 'mercure',
      expiresAt: clock + 5000,
    });
    advance(4999);
    expect(sink.ended).toBe(false);
    advance(1);
    expect(sink.ended).toBe(true);
  });
});

describe('per-channel delivery and socket exclusion (issue 12)', () => {
  const ids = (sink: FakeSink): string[] => sink.events().map((e) => `${e.id} ${e.data}`);

  it('an event on several channels is one frame per subscribed channel, in publish order, sharing the Buffers', () => {
    const hub = makeHub();
    const both = subscribe(hub, ['a', 'b', 'c']);
    const onlyC = subscribe(hub, ['c']);
    const result = pub(hub, ['c', 'x', 'a'], 'e1');
    expect(result.subscribers).toBe(2); // streams, not frames
    expect(ids(both.sink)).toEqual(['ep0-1@c e1', 'ep0-1@a e1']);
    expect(ids(onlyC.sink)).toEqual(['ep0-1@c e1']);
    // The frame of channel c is one Buffer for every stream of c.
    expect(both.sink.chunks[1]).toBe(onlyC.sink.chunks[1]);
  });

  it.each([
    // [Last-Event-ID, what the resumed stream gets]
    ['ep0-2@b', ['ep0-2@c 2', 'ep0-2@a 2', 'ep0-3@a 3']],
    ['ep0-2@c', ['ep0-2@a 2', 'ep0-3@a 3']],
    ['ep0-2@a', ['ep0-3@a 3']],
    ['ep0-2', ['ep0-3@a 3']],
    ['ep0-1@a', ['ep0-2@b 2', 'ep0-2@c 2', 'ep0-2@a 2', 'ep0-3@a 3']],
  ])(
    'a cut between two frames of one event resumes with its later channels (%s)',
    (id, expected) => {
      const lost: string[] = [];
      const hub = makeHub({ hooks: { onLost: (r) => lost.push(r) } });
      pub(hub, ['a'], '1');
      pub(hub, ['b', 'c', 'a'], '2');
      pub(hub, ['a'], '3');
      const { sink } = subscribe(hub, ['a', 'b', 'c'], { lastEventId: id });
      expect(ids(sink)).toEqual(expected);
      expect(lost).toEqual([]);
    },
  );

  it('an evicted frame of the resumed event that was still due is reported (askr:lost)', () => {
    const lost: string[] = [];
    const hub = makeHub({ historySize: 1, hooks: { onLost: (r) => lost.push(r) } });
    pub(hub, ['a', 'b'], '1');
    pub(hub, ['b'], '2'); // evicts 1@b; 1@a is still held (it tells the event's channels)
    subscribe(hub, ['a', 'b'], { lastEventId: 'ep0-1@b' }).sink.hangUp(); // 1@a came first
    expect(lost).toEqual([]);
    const { sink } = subscribe(hub, ['a', 'b'], { lastEventId: 'ep0-1@a' }); // 1@b was due
    expect(lost).toEqual(['too_old']);
    expect(ids(sink).slice(1)).toEqual(['ep0-2@b 2']);
  });

  it('the publisher`s own stream (its socket id) gets nothing of it, live or in a replay; others get it', () => {
    const hub = makeHub();
    const sender = subscribe(hub, ['room', 'private-room'], { socketId: '11.22' });
    const other = subscribe(hub, ['room', 'private-room'], { socketId: '33.44' });
    const anonymous = subscribe(hub, ['room']);
    const result = pub(hub, ['room', 'private-room'], 'typing', { socket: '11.22' });
    expect(result.subscribers).toBe(2);
    pub(hub, ['room'], 'for all');
    expect(ids(sender.sink)).toEqual(['ep0-2@room for all']);
    expect(ids(other.sink)).toEqual([
      'ep0-1@room typing',
      'ep0-1@private-room typing',
      'ep0-2@room for all',
    ]);
    expect(ids(anonymous.sink)).toEqual(['ep0-1@room typing', 'ep0-2@room for all']);
    // The same socket resuming (a reconnect with its grant) still skips its own event.
    const again = subscribe(hub, ['room', 'private-room'], {
      lastEventId: 'ep0-0',
      socketId: '11.22',
    });
    expect(ids(again.sink)).toEqual(['ep0-2@room for all']);
    const fresh = subscribe(hub, ['room'], { lastEventId: 'ep0-0', socketId: '99.1' });
    expect(ids(fresh.sink)).toEqual(['ep0-1@room typing', 'ep0-2@room for all']);
  });

  it('channel names with @ , ; (Pusher`s charset) are published to, tagged and resumed', () => {
    const hub = makeHub();
    const names = ['user@example.com', 'a,b', 'c;d', 'presence-x@y;z,w=1'];
    const st = subscribe(hub, names);
    pub(hub, names, 'hi');
    expect(ids(st.sink)).toEqual(names.map((n) => `ep0-1@${n} hi`));
    const resumed = subscribe(hub, names, { lastEventId: 'ep0-1@a,b' });
    expect(ids(resumed.sink)).toEqual(['ep0-1@c;d hi', 'ep0-1@presence-x@y;z,w=1 hi']);
    expect(() => pub(hub, ['a b'], 'x')).toThrow(/outside A-Z a-z 0-9 _ - = @ , \. ;/);
  });

  it('a cluster delivery carries the socket like a local publish', () => {
    const hub = makeHub();
    const sender = subscribe(hub, ['a'], { socketId: '5.6' });
    const other = subscribe(hub, ['a']);
    hub.deliverNumbered({ seq: 7, channels: ['a'], data: Buffer.from('x'), socket: '5.6' });
    expect(ids(sender.sink)).toEqual([]);
    expect(ids(other.sink)).toEqual(['ep0-7@a x']);
  });
});

// Issue 13: with 1,000 subscribers, HTTP publish topped out at 50-100/s. Each publish wrote every
// stream at once, one writev each (~10 µs), and node:http sent the publisher's 202 only after
// all of them. A recurrence looks like: a sink written during publish(), or k publishes of one
// turn reaching a stream in k writes.
describe('one write per stream per event-loop turn (issue 13)', () => {
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  const batchingHub = () => makeHub({ defer: setImmediate });

  it('publish() returns before any stream is written; the turn ends with one write each', async () => {
    const hub = batchingHub();
    const streams = Array.from({ length: 50 }, () => subscribe(hub, ['c']));
    const written = streams.map((st) => st.sink.chunks.length); // the retry: frame
    const results = [1, 2, 3, 4].map((n) => pub(hub, ['c'], `e${n}`));
    expect(results.map((r) => r.subscribers)).toEqual([50, 50, 50, 50]);
    expect(streams.map((st) => st.sink.chunks.length)).toEqual(written);
    await turn();
    for (const [i, st] of streams.entries()) {
      expect(st.sink.chunks.length).toBe((written[i] ?? 0) + 1);
      expect(st.sink.events().map((e) => e.data)).toEqual(['e1', 'e2', 'e3', 'e4']);
    }
    // The merged Buffer is shared, not one copy per stream.
    expect(streams[0]?.sink.chunks.at(-1)).toBe(streams[49]?.sink.chunks.at(-1));
  });

  it('a stream whose sink still holds a write gets the turn later, in order, in one write', async () => {
    const hub = batchingHub();
    const slow = subscribe(hub, ['c']);
    slow.sink.stalled = true;
    pub(hub, ['c'], 'a');
    await turn();
    const before = slow.sink.chunks.length;
    pub(hub, ['c'], 'b');
    pub(hub, ['c'], 'c');
    await turn();
    expect(slow.sink.chunks.length).toBe(before); // its last write is not handed on yet
    slow.sink.catchUp();
    expect(slow.sink.chunks.length).toBe(before + 1);
    expect(slow.sink.events().map((e) => e.data)).toEqual(['a', 'b', 'c']);
  });

  it('frames queued behind another within the turn count against the bound at once', () => {
    const hub = makeHub({ defer: setImmediate, subscriberQueueBytes: 200 });
    const st = subscribe(hub, ['c']);
    expect(pub(hub, ['c'], 'x'.repeat(100)).subscribers).toBe(1);
    expect(pub(hub, ['c'], 'y'.repeat(100)).subscribers).toBe(0);
    expect(st.sink.destroyed).toBe(true);
  });

  it('a stream ended within the turn gets its queued frames before the end', () => {
    const hub = batchingHub();
    const st = subscribe(hub, ['c']);
    pub(hub, ['c'], 'last');
    st.handle.close();
    expect(st.sink.ended).toBe(true);
    expect(st.sink.events().map((e) => e.data)).toEqual(['last']);
  });
});
