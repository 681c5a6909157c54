/**
 * Markdown helpers of the SSE and cluster benchmark reports: a table, and the cell formats they
 * share. Pure formatting: no I/O.
 */

/** Milliseconds with 2, 1 or 0 decimals (below 10, below 100, from 100). */
export const ms = (v: number): string =>
  v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
/** Rounded, with thousands separators. */
export const int = (v: number): string => Math.round(v).toLocaleString('en-US');
/** `part` of `whole` in % (3 decimals unless all), 'n/a' when `whole` is 0. */
export const pct = (part: number, whole: number): string =>
  whole === 0 ? 'n/a' : `${((100 * part) / whole).toFixed(part === whole ? 0 : 3)} %`;

/** A Markdown table: the header row, the separator, one row per entry of `rows`. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}
