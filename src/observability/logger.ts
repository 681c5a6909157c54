/**
 * pino logger construction. The logger is created once in the CLI and passed down; nothing here
 * is a module-level singleton. (Rate-limited warnings live where they are counted: the datagram
 * ingress and the hub.)
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
