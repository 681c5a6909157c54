/**
 * pino logger construction and a rate limiter for repeated warnings. The logger is created once in
 * main and passed down; nothing here is a module-level singleton.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'askr-sidecar' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * Logs a repeated condition at most once per interval per key, with the number of occurrences
 * since the last line (STYLE: every limit is logged once, rate-limited).
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  private readonly logger: Logger;
  private readonly intervalMs: number;

  constructor(logger: Logger, intervalMs = 10_000) {
    this.logger = logger;
    this.intervalMs = intervalMs;
  }

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const entry = this.last.get(key);
    if (entry !== undefined && now - entry.at < this.intervalMs) {
      entry.suppressed += 1;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(key, { at: now, suppressed: 0 });
    if (this.last.size > 1000) this.last.clear(); // keys are bounded by design; guard anyway
    this.logger.warn({ ...fields, reason: key, suppressed }, message);
  }
}
