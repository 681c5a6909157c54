/**
 * The log output's bound: while its reader is stalled (a full FIFO), lines beyond max_buffer are
 * dropped and counted, and one warning reports the episode once the output moves again. A
 * recurrence looks like memory growing without bound, or drops that no line and no counter shows.
 * The per-line shortcuts (cached time, lines batched as bytes, access lines written without
 * pino's generic path) change nothing in what is written: a recurrence looks like a time off by a
 * second or a millisecond, mangled non-ASCII text, or an access line that differs from pino's.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger, type LoggerOptions } from 'pino';
import { describe, expect, it } from 'vitest';
import { prng } from '../../test/helpers/prng.ts';
import {
  createLogger,
  createLogOutput,
  isoTime,
  writeAccessLine,
  type AccessFields,
} from './logger.ts';

it('drops lines past max_buffer while the output is blocked, counts them, and says so once', async () => {
  const fifo = join(mkdtempSync(join(tmpdir(), 'askr-log-')), 'out');
  execFileSync('mkfifo', [fifo]);
  // O_RDWR: the open does not wait for a reader; O_NONBLOCK: a full pipe answers EAGAIN.
  const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const output = createLogOutput({ buffer: 0, flush_interval: 1000, max_buffer: 64 * 1024 }, fd);
  const logger = createLogger('info', output);
  for (let i = 0; i < 2000; i++) logger.info({ i, pad: 'x'.repeat(200) }, 'request');
  await new Promise((r) => setTimeout(r, 50));
  const dropped = output.droppedLines();
  expect(dropped).toBeGreaterThan(0);
  // The reader catches up: the output moves again and one warning names the count.
  const chunk = Buffer.alloc(1 << 16);
  let text = '';
  const deadline = Date.now() + 5000;
  while (!text.includes('lines dropped') && Date.now() < deadline) {
    try {
      const n = readSync(reader, chunk);
      text += chunk.toString('utf8', 0, n);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      await new Promise((r) => setTimeout(r, 20)); // nothing to read yet
    }
  }
  const warning = text
    .split('\n')
    .filter((l) => l.includes('lines dropped'))
    .map((l) => JSON.parse(l) as { dropped: number });
  expect(warning).toEqual([expect.objectContaining({ dropped })]);
  output.stream.destroy();
  closeSync(reader);
});

it('isoTime writes the time field exactly as pino.stdTimeFunctions.isoTime, for any millisecond', () => {
  // The cached second must never leak into the next one, nor a millisecond lose its zeros.
  const times = [0, 1, 9, 10, 99, 100, 999, 1000, 1001, Date.UTC(2026, 11, 31, 23, 59, 59, 999)];
  let t = Date.UTC(2026, 0, 1);
  for (let i = 0; i < 3000; i += 1) times.push((t += 7));
  times.push(t - 5000, t + 1, Date.UTC(2030, 5, 1, 12, 0, 0, 5));
  for (const now of times) {
    expect(isoTime(now)).toBe(`,"time":"${new Date(now).toISOString()}"`);
  }
});

it('writes each line byte for byte, non-ASCII text included, once flushed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'askr-log-'));
  const path = join(dir, 'out');
  const fd = openSync(path, 'w');
  const output = createLogOutput({ buffer: 4096, flush_interval: 60_000, max_buffer: 0 }, fd);
  const logger = createLogger('info', output);
  const lines: string[] = [];
  for (let i = 0; i < 200; i++) lines.push(`café ${i} 😀 ${'x'.repeat(i)}`);
  for (const msg of lines) logger.info({ path: '/ü' }, msg);
  await output.flush();
  const written = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
  expect(written.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(lines);
  expect(written.every((l) => (JSON.parse(l) as { path: string }).path === '/ü')).toBe(true);
  // destroy() closes the file descriptor itself.
  const closed = once(output.stream, 'close');
  output.stream.destroy();
  await closed;
});

describe('writeAccessLine', () => {
  /** A logger set up like createLogger's (base, level label, fixed time), writing into `lines`. */
  function capture(options: LoggerOptions = {}): { logger: Logger; lines: string[] } {
    const lines: string[] = [];
    const logger = pino(
      {
        base: { service: 'askr-sidecar' },
        timestamp: () => ',"time":"2026-12-01T04:14:37.951Z"',
        formatters: { level: (label) => ({ level: label }) },
        ...options,
      },
      { write: (line: string) => lines.push(line) },
    );
    return { logger, lines };
  }

  const strings = [
    '',
    'GET',
    '/hello?a=1&b=2',
    'say "hi"',
    'back\\slash',
    'tab\there',
    'new\nline',
    'nul\0',
    'café 😀',
    'lone \ud800 surrogate',
    '"'.repeat(100),
    'x'.repeat(101),
    'é'.repeat(150) + '"\\',
  ];
  const numbers = [0, 1, 200, 499, 85.458, 0.001, 1e21, -0, Number.NaN, Number.POSITIVE_INFINITY];

  it('writes exactly the line logger.info(fields, "request") writes, for awkward values', () => {
    const random = prng(7);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
    const direct = capture();
    const viaPino = capture();
    for (let i = 0; i < 500; i += 1) {
      const fields: AccessFields = {
        requestId: pick(strings),
        method: random() < 0.1 ? undefined : pick(strings),
        path: pick(strings),
        status: pick(numbers),
        bytes: pick(numbers),
        durationMs: pick(numbers),
        upstreamMs: random() < 0.3 ? null : pick(numbers),
        kind: pick(strings),
        client: pick(strings),
        ...(random() < 0.3 ? { error: pick(strings) } : {}),
      };
      writeAccessLine(direct.logger, fields);
      viaPino.logger.info({ ...fields }, 'request');
    }
    expect(direct.lines).toHaveLength(500);
    expect(direct.lines).toEqual(viaPino.lines);
  });

  it('follows the level, and a logger set up otherwise gets pino itself', () => {
    const quiet = capture({ level: 'warn' });
    writeAccessLine(quiet.logger, {
      requestId: 'a',
      method: 'GET',
      path: '/',
      status: 200,
      bytes: 1,
      durationMs: 1,
      upstreamMs: null,
      kind: 'php',
      client: '127.0.0.1',
    });
    expect(quiet.lines).toEqual([]);
    // A serializer on one of the fields: the line must still be what pino writes.
    const custom = capture({ serializers: { path: (p: string) => p.toUpperCase() } });
    writeAccessLine(custom.logger, {
      requestId: 'a',
      method: 'GET',
      path: '/x',
      status: 200,
      bytes: 1,
      durationMs: 1,
      upstreamMs: 2,
      kind: 'php',
      client: '127.0.0.1',
    });
    expect(JSON.parse(custom.lines[0] ?? '{}')).toMatchObject({ path: '/X', msg: 'request' });
  });
});
