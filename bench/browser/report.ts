/**
 * The Markdown report of bench:browser: medians over rounds per storm variant and size, and per
 * GRIP target; ratios auth-route / grants (the storm) and Pushpin / sidecar (GRIP). Pure.
 */
import { int, ms, table } from '../lib/markdown.ts';
import { median } from '../lib/stats.ts';
import type { GripMeasurement } from './grip.ts';
import type { StormMeasurement } from './storm.ts';

const ratio = (a: number, b: number): string =>
  !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? 'n/a' : `${(a / b).toFixed(2)}x`;

function med<T>(rows: readonly T[], f: (r: T) => number): number {
  return median(rows.map(f));
}

export function renderStorm(rows: readonly StormMeasurement[]): string {
  const sizes = [...new Set(rows.map((r) => r.clients))];
  const out: string[][] = [];
  const ratios: string[][] = [];
  for (const n of sizes) {
    const of = (v: string): StormMeasurement[] =>
      rows.filter((r) => r.clients === n && r.variant === v);
    const g = of('grants');
    const a = of('auth-route');
    for (const [name, rs] of [
      ['grants', g],
      ['auth-route', a],
    ] as const) {
      if (rs.length === 0) continue;
      out.push([
        String(n),
        name,
        int(med(rs, (r) => r.fpmRequests)),
        `${int(med(rs, (r) => r.back))} (${int(med(rs, (r) => r.failed))} failed)`,
        ms(med(rs, (r) => r.allBackMs)),
        ms(med(rs, (r) => r.p99Ms)),
        `${int(med(rs, (r) => r.delivered))}/${int(med(rs, (r) => r.back))}`,
        ms(med(rs, (r) => r.deliveryP99Ms)),
      ]);
    }
    if (g.length > 0 && a.length > 0) {
      const r = (f: (m: StormMeasurement) => number): string => ratio(med(a, f), med(g, f));
      ratios.push([
        String(n),
        `${int(med(a, (m) => m.fpmRequests))} vs ${int(med(g, (m) => m.fpmRequests))}`,
        r((m) => m.allBackMs),
        r((m) => m.p99Ms),
        r((m) => m.deliveryP99Ms),
      ]);
    }
  }
  return [
    '### Reconnect storm (medians of rounds)',
    '',
    table(
      [
        'clients',
        'variant',
        'FPM requests in storm',
        'back',
        'all back ms',
        'p99 reconnect ms',
        'event after',
        'its p99 ms',
      ],
      out,
    ),
    '',
    'Ratios auth-route / grants (above 1: grants better):',
    '',
    table(['clients', 'FPM requests', 'all back', 'p99 reconnect', 'event p99'], ratios),
  ].join('\n');
}

export function renderGrip(rows: readonly GripMeasurement[]): string {
  const targets = [...new Set(rows.map((r) => r.target))];
  const out = targets.map((t) => {
    const rs = rows.filter((r) => r.target === t);
    return [
      t,
      int(med(rs, (r) => r.opened)),
      (med(rs, (r) => r.rssPerStreamBytes) / 1024).toFixed(1),
      ms(med(rs, (r) => r.p50Ms)),
      ms(med(rs, (r) => r.p99Ms)),
      `${int(med(rs, (r) => r.received))}/${int(med(rs, (r) => r.expected))}`,
      int(med(rs, (r) => r.publishesPerS)),
      `${int(med(rs, (r) => r.loopReceived))}/${int(med(rs, (r) => r.loopExpected))}`,
    ];
  });
  const ratios: string[][] = [];
  for (const [p, s] of [
    ['pushpin', 'sidecar'],
    ['pushpin-lean', 'sidecar-lean'],
  ] as const) {
    const a = rows.filter((r) => r.target === p);
    const b = rows.filter((r) => r.target === s);
    if (a.length === 0 || b.length === 0) continue;
    const r = (f: (m: GripMeasurement) => number): string => ratio(med(a, f), med(b, f));
    ratios.push([
      `${p} / ${s}`,
      r((m) => m.rssPerStreamBytes),
      r((m) => m.p50Ms),
      r((m) => m.p99Ms),
      ratio(
        med(b, (m) => m.publishesPerS),
        med(a, (m) => m.publishesPerS),
      ),
    ]);
  }
  return [
    '### GRIP publishing (medians of rounds)',
    '',
    table(
      [
        'server',
        'held',
        'KiB RSS/stream',
        'p50 ms',
        'p99 ms',
        'delivered',
        'publishes/s (x1)',
        'loop delivered',
      ],
      out,
    ),
    '',
    'Ratios Pushpin / sidecar (above 1: the sidecar better; publishes/s is sidecar / Pushpin):',
    '',
    table(['pair', 'RSS/stream', 'p50', 'p99', 'publishes/s'], ratios),
  ].join('\n');
}
