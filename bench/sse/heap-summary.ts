/**
 * Compares two V8 heap snapshots (e.g. the sidecar before and after opening N streams, written by
 * mem-probe.ts with BENCH_PROBE_SNAPSHOT=1) and prints, per constructor / node type, how many
 * objects and self bytes were added, divided by N: what one held stream costs in the V8 heap.
 *   node bench/sse/heap-summary.ts BEFORE.heapsnapshot AFTER.heapsnapshot N [TOP]
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** key "type:name" -> [count, self bytes] */
function aggregate(file: string): Map<string, [number, number]> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const out = new Map<string, [number, number]>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt] ?? 0] ?? '?';
    let name = snap.strings[snap.nodes[i + nameAt] ?? 0] ?? '?';
    // Strings and code are keyed by their type only: their names are their contents.
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '';
    if (type === 'code' || type === 'number' || type === 'hidden') name = name.slice(0, 40);
    const key = `${type}:${name}`;
    const cur = out.get(key) ?? [0, 0];
    cur[0]++;
    cur[1] += snap.nodes[i + sizeAt] ?? 0;
    out.set(key, cur);
  }
  return out;
}

const [before, after, nArg, topArg] = process.argv.slice(2);
if (before === undefined || after === undefined || nArg === undefined) {
  console.error('usage: node bench/sse/heap-summary.ts BEFORE AFTER N [TOP]');
  process.exit(2);
}
const n = Number(nArg);
const a = aggregate(before);
const b = aggregate(after);
const rows: { key: string; count: number; bytes: number }[] = [];
for (const [key, [count, bytes]] of b) {
  const [c0, b0] = a.get(key) ?? [0, 0];
  rows.push({ key, count: (count - c0) / n, bytes: (bytes - b0) / n });
}
rows.sort((x, y) => y.bytes - x.bytes);
const total = rows.reduce((s, r) => s + r.bytes, 0);
console.log(`self bytes added per stream: ${total.toFixed(0)}`);
for (const r of rows.slice(0, Number(topArg ?? 40))) {
  console.log(
    `${r.bytes.toFixed(0).padStart(7)} B  ${r.count.toFixed(2).padStart(6)} objs  ${r.key}`,
  );
}
