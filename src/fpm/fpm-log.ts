/**
 * Turns the managed php-fpm's stderr (its own log plus its workers' caught output) into log lines.
 * With catch_workers_output, every PHP error appears twice: as an FCGI_STDERR record (logged by the
 * FastCGI client with the request id) and as a "PHP message: ..." line here; the copy here is kept
 * at debug so errors are not logged twice at warn. Keeps a short tail for start-failure messages.
 */
import type { Logger } from 'pino';

const MASTER_LINE = /^(?:\[[^\]]*\]\s+)?(DEBUG|NOTICE|WARNING|ERROR|ALERT):\s+(.*)$/;
// Lines PHP prints after an uncaught exception's first line (php_error_cb's message body).
const PHP_CONTINUATION = /^(?:Stack trace:|#\d+ |\s+thrown in |Next )/;
const TAIL_LINES = 20;

export interface FpmLogForwarder {
  /** Handles one line of php-fpm's stderr or stdout (without its newline). */
  line(text: string): void;
  /** The last lines seen, oldest first, for error messages. */
  tail(): string[];
}

export function createFpmLogForwarder(logger: Logger): FpmLogForwarder {
  const recent: string[] = [];
  let inPhpMessage = false;

  return {
    line(text: string): void {
      if (text.trim() === '') return;
      recent.push(text);
      if (recent.length > TAIL_LINES) recent.shift();

      const m = MASTER_LINE.exec(text);
      const level = m?.[1];
      const body = m?.[2] ?? text;
      if (body.startsWith('PHP message: ')) {
        inPhpMessage = true;
        logger.debug({ fpm: true, copyOf: 'FCGI_STDERR' }, body);
        return;
      }
      if (inPhpMessage && m === null && PHP_CONTINUATION.test(text)) {
        logger.debug({ fpm: true, copyOf: 'FCGI_STDERR' }, text);
        return;
      }
      inPhpMessage = false;
      if (level === 'ERROR' || level === 'ALERT') logger.error({ fpm: true }, body);
      else logger.warn({ fpm: true }, body);
    },
    tail(): string[] {
      return [...recent];
    },
  };
}
