import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { RateLimitedLog } from './rate-limited-log.ts';

function capture(): { lines: Array<Record<string, unknown>>; logger: Logger } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, logger: pino({ level: 'info' }, sink) };
}

describe('RateLimitedLog', () => {
  it('logs the first occurrence, then one line per interval counting the suppressed ones', async () => {
    const { lines, logger } = capture();
    const log = new RateLimitedLog(logger, 'warn', 1000);
    log.log({ a: 1 }, 'limit hit', 0);
    log.log({ a: 2 }, 'limit hit', 10);
    log.log({ a: 3 }, 'limit hit', 999);
    log.log({ a: 4 }, 'limit hit', 1000);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((l) => [l['a'], l['occurrences'], l['level']])).toEqual([
      [1, 1, 40],
      [4, 3, 40],
    ]);
  });
});
