/**
 * Hooks that count in metrics and also say something in the log, rate-limited: FPM leaving the
 * pool's kept connections unaccepted, clients closed by a timeout, a Mercure URL pattern stopped
 * at its time limit. Each line is written at most once per window, whatever the rate of the
 * events behind it.
 */
import type { Logger } from 'pino';
import { STALL_MS, type FcgiPoolHooks } from '../fastcgi/pool.ts';
import type { PhpHandlerHooks } from '../http/php-handler.ts';
import type { TopicMatcher } from '../mercure/matchers.ts';
import type { Metrics } from './metrics.ts';
import { RateLimitedLog } from './rate-limited-log.ts';

/** Pool metrics, plus a rate-limited warning when FPM leaves our connections unaccepted. */
export function loggedPoolHooks(metrics: Metrics, logger: Logger): FcgiPoolHooks {
  const hooks = metrics.poolHooks();
  const stallLog = new RateLimitedLog(logger, 'warn', 60_000);
  return {
    ...hooks,
    onStall: (open, stalled) => {
      hooks.onStall?.(open, stalled);
      stallLog.log(
        { open, stalled, stallMs: STALL_MS },
        `FastCGI: ${stalled} of ${open} kept connections got nothing from php-fpm for ${STALL_MS} ms; closing idle ones to free workers. The pool probably has about ${Math.max(1, open - stalled)} workers for this sidecar: set fastcgi.pool_size to that (or keep_alive = "off")`,
      );
    },
  };
}

/** Buffering metrics, plus rate-limited lines for clients closed by a timeout. */
export function loggedPhpHooks(metrics: Metrics, logger: Logger): Required<PhpHandlerHooks> {
  const hooks = metrics.phpHooks();
  const timeoutLog = new RateLimitedLog(logger, 'info', 10_000);
  return {
    onTempFile: hooks.onTempFile,
    onClientTimeout: (kind) => {
      hooks.onClientTimeout(kind);
      timeoutLog.log(
        { kind },
        kind === 'body'
          ? 'client closed: its request body stalled (server.body_timeout, 408)'
          : 'client closed: it stopped reading the response (server.send_timeout)',
      );
    },
  };
}

/** Told when a Mercure URL pattern hits its evaluation time limit (it matches nothing from then on). */
export function loggedPatternAborted(
  metrics: Metrics,
  logger: Logger,
): (matcher: TopicMatcher) => void {
  const abortLog = new RateLimitedLog(logger, 'warn');
  return (matcher) => {
    metrics.onMercurePatternAborted();
    abortLog.log(
      { pattern: matcher.pattern.slice(0, 256) },
      'mercure: a URL pattern hit its evaluation time limit and now matches nothing',
    );
  };
}
