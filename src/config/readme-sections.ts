/**
 * The README sections generated from code: the config key table (from the schema) and the
 * metrics list (from a registry populated by createMetrics). Both live between
 * `<!-- generated:NAME -->` and `<!-- /generated:NAME -->` markers.
 */
import { Registry } from 'prom-client';
import { createMetrics } from '../observability/metrics.ts';
import { schema, type Field } from './schema.ts';

function configTable(): string {
  const rows = ['| key | default | env | meaning |', '|---|---|---|---|'];
  for (const [section, fields] of Object.entries(schema)) {
    for (const [key, field] of Object.entries(fields as Record<string, Field>)) {
      const def = JSON.stringify(field.default).replace(/\|/g, '\\|');
      rows.push(
        `| \`${section}.${key}\` | \`${def}\` | \`ASKR_${section.toUpperCase()}_${key.toUpperCase()}\` | ${field.doc.replace(/\|/g, '\\|')} |`,
      );
    }
  }
  return rows.join('\n');
}

async function metricsTable(): Promise<string> {
  const registry = new Registry();
  // The cluster's metrics exist only with [cluster] redis_url; the list shows them too.
  createMetrics(registry, { defaultMetrics: false }).clusterHooks();
  const metrics = await registry.getMetricsAsJSON();
  const rows = ['| metric | type | labels | meaning |', '|---|---|---|---|'];
  for (const m of metrics.sort((a, b) => a.name.localeCompare(b.name))) {
    const labels = new Set<string>();
    for (const v of m.values as Array<{ labels: Record<string, unknown> }>) {
      for (const l of Object.keys(v.labels)) if (l !== 'le') labels.add(l);
    }
    rows.push(
      `| \`${m.name}\` | ${m.type} | ${[...labels].join(', ')} | ${m.help.replace(/\|/g, '\\|')} |`,
    );
  }
  rows.push(
    '| `process_*`, `nodejs_*` | | | Node.js process metrics (prom-client defaults: CPU, memory, event loop lag, GC, handles) |',
  );
  return rows.join('\n');
}

export async function renderReadmeSections(): Promise<Record<string, string>> {
  return { config: configTable(), metrics: await metricsTable() };
}

/** Replaces the body between the markers of `name`; throws when the markers are missing. */
export function spliceGenerated(text: string, name: string, body: string): string {
  const start = `<!-- generated:${name} -->`;
  const end = `<!-- /generated:${name} -->`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i === -1 || j === -1 || j < i)
    throw new Error(`README.md lacks the ${start} ... ${end} markers`);
  return `${text.slice(0, i + start.length)}\n${body}\n${text.slice(j)}`;
}
