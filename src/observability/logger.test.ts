/**
 * The log output's bound: while its reader is stalled (a full FIFO), lines beyond max_buffer are
 * dropped and counted, and one warning reports the episode once the output moves again. A
 * recurrence looks like memory growing without bound, or drops that no line and no counter shows.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createLogger, createLogOutput } from './logger.ts';

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
