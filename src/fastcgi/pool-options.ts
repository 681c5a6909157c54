/**
 * The FastCGI pool's options from [fastcgi] (and [fpm] for the managed pool's size): the one
 * mapping used at start (`new FcgiPool`) and at reload (`pool.reconfigure`). The keep-alive mode is
 * chosen here too (pool-plan.ts) but only applies at start: a pool never switches mode live.
 * Takes config values only, as plain numbers and strings; nothing here knows HTTP.
 */
import { checkPoolTunables, type FcgiPoolTunables } from './pool.ts';
import { planPool, type PoolPlan } from './pool-plan.ts';

/** The config keys the pool reads. */
export interface PoolConfig {
  fastcgi: {
    address: string;
    keep_alive: 'auto' | 'on' | 'off';
    pool_size: number;
    queue_size: number;
    queue_timeout: number;
    connect_timeout: number;
    idle_timeout: number;
  };
  fpm: { max_children: number };
}

export interface PoolOptions {
  /** Mode and cap, with the reason the start log prints. */
  plan: PoolPlan;
  /** What reconfigure() applies (the cap is the plan's). */
  tunables: FcgiPoolTunables;
}

/**
 * Plans the pool and maps its tunables. An empty fastcgi.address means the managed php-fpm,
 * whose pm.max_children sizes the pool.
 * @throws ConfigError for a value the pool refuses.
 */
export function poolOptionsFrom(config: PoolConfig): PoolOptions {
  const { fastcgi } = config;
  const plan = planPool({
    keepAlive: fastcgi.keep_alive,
    poolSize: fastcgi.pool_size,
    managedMaxChildren: fastcgi.address === '' ? config.fpm.max_children : null,
  });
  const tunables: FcgiPoolTunables = {
    maxConnections: plan.maxConnections,
    queueSize: fastcgi.queue_size,
    queueTimeoutMs: fastcgi.queue_timeout,
    connectTimeoutMs: fastcgi.connect_timeout,
    idleTimeoutMs: fastcgi.idle_timeout,
  };
  checkPoolTunables(tunables);
  return { plan, tunables };
}
