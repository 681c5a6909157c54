/**
 * A log line that may be due thousands of times a second (a limit hit by a flood) is written at
 * most once per interval, with the count of occurrences it stands for. Time is read only when
 * an occurrence happens; nothing runs in between.
 */
import type { Logger } from 'pino';

export class RateLimitedLog {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #level: 'warn' | 'info' | 'error';
  #lastAt = -Infinity;
  #suppressed = 0;

  constructor(logger: Logger, level: 'warn' | 'info' | 'error', intervalMs = 10_000) {
    this.#logger = logger;
    this.#level = level;
    this.#intervalMs = intervalMs;
  }

  /** Logs now if the interval has passed since the last line, else counts the occurrence. */
  log(fields: Record<string, unknown>, message: string, now = performance.now()): void {
    if (now - this.#lastAt < this.#intervalMs) {
      this.#suppressed += 1;
      return;
    }
    const occurrences = this.#suppressed + 1;
    this.#suppressed = 0;
    this.#lastAt = now;
    this.#logger[this.#level]({ ...fields, occurrences }, message);
  }
}
