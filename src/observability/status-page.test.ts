/**
 * Unit tests of the status page's rendering (status-page.ts): the panel shows the version,
 * revision and uptime, FPM's figures with their age (a 15 s-old "1/8 busy" must say it is 15 s
 * old), why they are missing otherwise, and the seven charts; /status.json carries the same.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { FpmStatus } from './fpm-status.ts';
import { StatusHistory } from './status-history.ts';
import { formatDuration, renderPanel, statusJson, type StatusPageOptions } from './status-page.ts';
import type { FpmReading, StatusSources } from './status-sources.ts';

const FPM: FpmStatus = {
  activeProcesses: 1,
  idleProcesses: 7,
  totalProcesses: 8,
  listenQueue: 0,
  maxListenQueue: 0,
  maxChildrenReached: 2,
  slowRequests: 0,
  acceptedConnections: 10,
};
const NOW = 1_700_000_000_000;

function options(fpm: FpmReading): StatusPageOptions {
  const sources: StatusSources = {
    hub: () => ({ byKind: { hold: 2, events: 1 }, channels: 3 }),
    passthroughStreams: () => 0,
    totals: () => ({
      published: 5,
      delivered: 9,
      requests: 40,
      serverErrors: 1,
      latencyBuckets: [40],
    }),
    pool: () => ({ open: 8, busy: 8, idle: 0, queued: 4, max: 8 }),
    fpm: () => fpm,
  };
  const history = new StatusHistory({
    sources,
    logger: pino({ level: 'silent' }),
    now: () => NOW,
  });
  history.sample();
  return {
    sources,
    history,
    build: { version: '1.2.3', nodeVersion: 'v24.0.0', revision: 'a'.repeat(40) },
    now: () => NOW,
    uptimeSeconds: () => 3725,
  };
}

describe('status page', () => {
  it('shows FPM figures with their age beside the pool figures of now', () => {
    const html = renderPanel(statusJson(options({ state: 'ok', status: FPM, at: NOW - 15_000 })));
    expect(html).toContain('busy <b id="pool">8 / 8</b>');
    expect(html).toContain('workers active <b>1 / 8</b>');
    expect(html).toContain('<span id="fpm-age">FPM figures as of 15 s ago</span>');
  });

  it('says why FPM figures are missing, escaped', () => {
    expect(renderPanel(statusJson(options({ state: 'off' })))).toContain('not scraped');
    expect(renderPanel(statusJson(options({ state: 'pending' })))).toContain(
      'waiting for the first status scrape',
    );
    const failed = renderPanel(statusJson(options({ state: 'failed', error: '<b>refused</b>' })));
    expect(failed).toContain('the status scrape failed (&#60;b&#62;refused&#60;/b&#62;)');
  });

  it('shows version, revision, uptime and the seven charts', () => {
    const html = renderPanel(statusJson(options({ state: 'off' })));
    expect(html).toContain('<b id="version">1.2.3</b>');
    expect(html).toContain(`<b id="revision" title="${'a'.repeat(40)}">${'a'.repeat(12)}</b>`);
    expect(html).toContain('<b id="uptime">1 h 2 min</b>');
    expect(html).toContain('data-seq="1"');
    expect(html.match(/<figure class="chart"/g)).toHaveLength(7);
    for (const id of ['requests', 'latency', 'errors', 'streams', 'events', 'busy', 'queue'])
      expect(html).toContain(`id="chart-${id}"`);
  });

  it('/status.json has the build, the figures of now with the FPM age, and the samples', () => {
    const json = statusJson(options({ state: 'ok', status: FPM, at: NOW - 4_400 }));
    expect(json).toMatchObject({
      version: '1.2.3',
      uptimeSeconds: 3725,
      seq: 1,
      sampleMs: 5000,
      windowMs: 900_000,
      now: {
        streams: { hold: 2, events: 1, passthrough: 0 },
        channels: 3,
        fpm: { state: 'ok', ageSeconds: 4, activeProcesses: 1, totalProcesses: 8 },
        totals: { published: 5, delivered: 9, requests: 40, serverErrors: 1 },
      },
    });
    expect(json.samples).toHaveLength(1);
  });

  it.each([
    [0, '0 s'],
    [59.9, '59 s'],
    [60, '1 min'],
    [3725, '1 h 2 min'],
    [2 * 86_400 + 4 * 3600 + 59, '2 d 4 h'],
  ])('formatDuration(%s) = %s', (seconds, want) => {
    expect(formatDuration(seconds)).toBe(want);
  });
});
