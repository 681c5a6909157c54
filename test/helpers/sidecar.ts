/**
 * Starts a real sidecar in-process for an integration test: the shared php-fpm from globalSetup
 * (or its own), a free port, the fixtures app as root, and logs captured for assertions.
 */
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import type { SidecarConfig } from '../../src/config/schema.ts';
import { startSidecar, type Sidecar } from '../../src/main.ts';

export const APP_ROOT = fileURLToPath(new URL('../../fixtures-php/app/public', import.meta.url));
export const APP_PRIVATE = fileURLToPath(
  new URL('../../fixtures-php/app/private', import.meta.url),
);

export interface TestSidecar extends Sidecar {
  config: SidecarConfig;
  logs: Array<Record<string, unknown>>;
}

/** A pino destination that parses each JSON line into `logs`, for assertions on log records. */
export function jsonLogSink(): { logs: Array<Record<string, unknown>>; sink: Writable } {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  return { logs, sink };
}

/** `overrides` keys are "section.key" with TOML-style values (e.g. "2s", "1MiB"). */
export async function startTestSidecar(
  overrides: Record<string, unknown> = {},
): Promise<TestSidecar> {
  const config = loadConfig({
    env: {},
    overrides: {
      'server.listen': '127.0.0.1:0',
      'server.root': APP_ROOT,
      'fastcgi.address': inject('fpmAddress'),
      'metrics.enabled': 'false',
      'broadcast.socket': '',
      ...overrides,
    },
  });
  const { logs, sink } = jsonLogSink();
  const logger = pino({ level: config.log.level === 'info' ? 'debug' : config.log.level }, sink);
  const sidecar = await startSidecar(config, logger);
  return Object.assign(sidecar, { config, logs });
}
