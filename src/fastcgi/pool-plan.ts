/**
 * Chooses how the FastCGI pool talks to PHP-FPM: keep-alive or a connection per request, and how
 * many connections at most. Pure: plain values in, a plan with its reason out (the startup log
 * prints the reason). Why these rules: docs/fastcgi-pool.md.
 */

/** Connections open at once to an external FPM whose size we were not told (per request). */
export const DEFAULT_PER_REQUEST_CONNECTIONS = 64;

export interface PoolPlanInput {
  /** fastcgi.keep_alive */
  keepAlive: 'auto' | 'on' | 'off';
  /** fastcgi.pool_size (0: not set) */
  poolSize: number;
  /** pm.max_children of the managed php-fpm, or null for an external FPM. */
  managedMaxChildren: number | null;
}

export interface PoolPlan {
  keepAlive: boolean;
  maxConnections: number;
  /** One sentence for the startup log. */
  reason: string;
}

export function planPool(input: PoolPlanInput): PoolPlan {
  const { poolSize, managedMaxChildren } = input;
  const maxConnections =
    poolSize > 0 ? poolSize : (managedMaxChildren ?? DEFAULT_PER_REQUEST_CONNECTIONS);
  if (input.keepAlive === 'on') {
    return {
      keepAlive: true,
      maxConnections,
      reason:
        managedMaxChildren === null && poolSize === 0
          ? `fastcgi.keep_alive = "on" without fastcgi.pool_size: up to ${maxConnections} kept connections, more than most pools have workers; stalled connections free the idle ones, but set pool_size to pm.max_children`
          : 'fastcgi.keep_alive = "on"',
    };
  }
  if (input.keepAlive === 'off') {
    return {
      keepAlive: false,
      maxConnections,
      reason: 'fastcgi.keep_alive = "off": a connection per request',
    };
  }
  if (managedMaxChildren !== null) {
    return {
      keepAlive: true,
      maxConnections,
      reason:
        poolSize > 0 && poolSize > managedMaxChildren
          ? `the managed php-fpm is private to this sidecar, but fastcgi.pool_size (${poolSize}) exceeds its ${managedMaxChildren} workers: stalled connections will free idle ones`
          : `the managed php-fpm is private to this sidecar and has ${managedMaxChildren} workers`,
    };
  }
  if (poolSize > 0) {
    return {
      keepAlive: true,
      maxConnections,
      reason: `fastcgi.pool_size = ${poolSize} says the FPM pool has that many workers for this sidecar`,
    };
  }
  return {
    keepAlive: false,
    maxConnections,
    reason:
      'an external FPM pool of unknown size: an idle kept connection would pin a worker, so a connection per request (set fastcgi.pool_size to pm.max_children to keep connections)',
  };
}
