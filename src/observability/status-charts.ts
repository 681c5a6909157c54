/**
 * Line charts as plain inline SVG, rendered on the server: no script, no library, no build step,
 * and they read without JavaScript. Each chart is a <figure> with its title, the newest value of
 * every series as text and an SVG whose y axis is labelled with its maximum. Invariants: every
 * text that reaches the markup goes through escapeHtml(); a missing value (null) breaks the line
 * instead of drawing a 0.
 */

/** How a series is drawn: `main` solid, `second` dashed, `bad` solid red, `cap` a dotted limit. */
export type SeriesStyle = 'main' | 'second' | 'bad' | 'cap';

export interface ChartSeries {
  label: string;
  style: SeriesStyle;
  /** One value per time in the chart's `times`; null where unknown. */
  values: ReadonlyArray<number | null>;
}

export interface ChartSpec {
  /** The figure's id (an HTML id: letters, digits and dashes). */
  id: string;
  title: string;
  /** Appended to values, e.g. "/s", " ms"; "" for counts. */
  unit: string;
  series: readonly ChartSeries[];
}

export interface ChartView {
  /** End time of each value (the samples' `at`), ms since the epoch, oldest first. */
  times: readonly number[];
  /** The right edge of the charts, ms since the epoch. */
  nowMs: number;
  /** Time the x axis spans, ms. */
  windowMs: number;
}

const WIDTH = 480;
const HEIGHT = 150;
const LEFT = 52;
const RIGHT = 8;
const TOP = 10;
const BOTTOM = 20;
const PLOT_W = WIDTH - LEFT - RIGHT;
const PLOT_H = HEIGHT - TOP - BOTTOM;

/** Escapes the five characters that matter in HTML text and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A figure for people: 0, 0.25, 3.5, 12, 1.2k, 3.4M. */
export function formatValue(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e4) return `${trim(value / 1e3)}k`;
  if (abs >= 100 || Number.isInteger(value)) return String(Math.round(value));
  if (abs >= 10) return value.toFixed(1).replace(/\.0$/, '');
  if (abs >= 1) return value.toFixed(2).replace(/\.?0+$/, '');
  return value.toFixed(3).replace(/\.?0+$/, '');
}

function trim(value: number): string {
  return value.toFixed(1).replace(/\.0$/, '');
}

/** The smallest 1, 2 or 5 x 10^k at or above `value` (and at least `floor`): the y axis maximum. */
export function niceMax(value: number, floor = 1): number {
  const target = Math.max(value, floor);
  const exponent = Math.floor(Math.log10(target));
  for (const step of [1, 2, 5, 10]) {
    const candidate = step * 10 ** exponent;
    // Rounding: 3 * 0.1 is 0.30000000000000004, so compare with a little slack.
    if (candidate >= target * (1 - 1e-9)) return Number(candidate.toPrecision(12));
  }
  return 10 ** (exponent + 1);
}

const STROKE: Record<SeriesStyle, string> = {
  main: 'stroke="#4b2e83" stroke-width="2"',
  second: 'stroke="#c46a00" stroke-width="2" stroke-dasharray="6 3"',
  bad: 'stroke="#c0392b" stroke-width="2"',
  cap: 'stroke="#888" stroke-width="1.5" stroke-dasharray="2 3"',
};

/** The SVG path of one series; segments break at nulls and at times outside the window. */
function seriesPath(series: ChartSeries, view: ChartView, max: number): string {
  const parts: string[] = [];
  let drawing = false;
  series.values.forEach((value, i) => {
    const at = view.times[i];
    const age = at === undefined ? Infinity : view.nowMs - at;
    if (value === null || age > view.windowMs || age < 0) {
      drawing = false;
      return;
    }
    const x = LEFT + PLOT_W * (1 - age / view.windowMs);
    const y = TOP + PLOT_H * (1 - Math.min(value, max) / max);
    const point = `${x.toFixed(1)} ${y.toFixed(1)}`;
    // A lone point is a zero-length segment: the round cap draws it as a dot.
    parts.push(drawing ? `L${point}` : `M${point}L${point}`);
    drawing = true;
  });
  return parts.join('');
}

/** The newest value of a series, or null when it has none or the newest is unknown. */
function newest(series: ChartSeries): number | null {
  return series.values.length === 0 ? null : (series.values[series.values.length - 1] ?? null);
}

/** A span of time in whole minutes or else seconds: "15 min", "90 s". */
export function spanLabel(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 120 && s % 60 === 0 ? `${s / 60} min` : `${s} s`;
}

/** One chart: a <figure> with a caption (title, newest values) and its SVG. */
export function renderChart(spec: ChartSpec, view: ChartView): string {
  let top = 0;
  for (const series of spec.series)
    for (const value of series.values) if (value !== null && value > top) top = value;
  const max = niceMax(top);
  const maxLabel = `${formatValue(max)}${spec.unit}`;
  const legend = spec.series
    .map((series) => {
      const value = newest(series);
      const text = value === null ? '–' : `${formatValue(value)}${spec.unit}`;
      return `<span class="key key-${series.style}">${escapeHtml(series.label)} <b>${escapeHtml(text)}</b></span>`;
    })
    .join(' ');
  const paths = spec.series
    .map(
      (series) =>
        `<path d="${seriesPath(series, view, max)}" fill="none" ${STROKE[series.style]} stroke-linecap="round" stroke-linejoin="round"/>`,
    )
    .join('');
  const titleId = `${spec.id}-title`;
  const summary = `${spec.title}, last ${spanLabel(view.windowMs)}, axis maximum ${maxLabel}`;
  const midY = TOP + PLOT_H / 2;
  const baseY = TOP + PLOT_H;
  return `<figure class="chart" id="${escapeHtml(spec.id)}">
<figcaption><span class="title">${escapeHtml(spec.title)}</span> <span class="now">now: ${legend}</span></figcaption>
<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${escapeHtml(titleId)}" xmlns="http://www.w3.org/2000/svg">
<title id="${escapeHtml(titleId)}">${escapeHtml(summary)}</title>
<rect x="${LEFT}" y="${TOP}" width="${PLOT_W}" height="${PLOT_H}" fill="#fafafa" stroke="#ddd"/>
<line x1="${LEFT}" y1="${midY}" x2="${LEFT + PLOT_W}" y2="${midY}" stroke="#eee"/>
<text class="ymax" x="${LEFT - 4}" y="${TOP + 9}" text-anchor="end">${escapeHtml(maxLabel)}</text>
<text x="${LEFT - 4}" y="${baseY}" text-anchor="end">0</text>
<text x="${LEFT}" y="${HEIGHT - 4}">-${escapeHtml(spanLabel(view.windowMs))}</text>
<text x="${LEFT + PLOT_W}" y="${HEIGHT - 4}" text-anchor="end">now</text>
${paths}
</svg>
</figure>`;
}
