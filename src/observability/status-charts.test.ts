/**
 * Unit tests of the SVG charts (status-charts.ts): the y axis maximum is a 1-2-5 step at or above
 * the data, figures read short, unknown values break the line instead of drawing 0, points older
 * than the window are not drawn, and no text reaches the markup unescaped (a channel or an error
 * message with "<script>" must stay text).
 */
import { describe, expect, it } from 'vitest';
import { escapeHtml, formatValue, niceMax, renderChart, type ChartSpec } from './status-charts.ts';

describe('niceMax', () => {
  it.each([
    [0, 1],
    [0.3, 1],
    [1, 1],
    [1.01, 2],
    [3, 5],
    [7, 10],
    [12, 20],
    [49.9, 50],
    [50, 50],
    [51, 100],
    [1234, 2000],
  ])('%s -> %s', (value, want) => {
    expect(niceMax(value)).toBe(want);
  });

  it('honours a lower floor for sub-unit values', () => {
    expect(niceMax(0.3, 0.1)).toBe(0.5);
    expect(niceMax(0.03, 0.01)).toBe(0.05);
  });
});

describe('formatValue', () => {
  it.each([
    [0, '0'],
    [3, '3'],
    [0.25, '0.25'],
    [0.5, '0.5'],
    [2.5, '2.5'],
    [12.34, '12.3'],
    [123.4, '123'],
    [12_345, '12.3k'],
    [3_400_000, '3.4M'],
  ])('%s -> %s', (value, want) => {
    expect(formatValue(value)).toBe(want);
  });
});

describe('renderChart', () => {
  const view = { times: [1000, 2000, 3000, 4000, 5000], nowMs: 5000, windowMs: 5000 };
  const spec = (values: Array<number | null>, title = 'Requests'): ChartSpec => ({
    id: 'chart-x',
    title,
    unit: '/s',
    series: [{ label: 'requests', style: 'main', values }],
  });

  it('has a title, the axis maximum and the newest value as text', () => {
    const html = renderChart(spec([1, 2, 3, 4, 12]), view);
    expect(html).toContain('<span class="title">Requests</span>');
    expect(html).toMatch(/<text class="ymax"[^>]*>20\/s<\/text>/);
    expect(html).toContain('requests <b>12/s</b>');
    expect(html).toContain(
      '<title id="chart-x-title">Requests, last 5 s, axis maximum 20/s</title>',
    );
    expect(html).toContain('role="img"');
  });

  it('breaks the line at unknown values and says "–" when the newest is unknown', () => {
    const html = renderChart(spec([1, null, 3, 4, null]), view);
    const d = /<path d="([^"]*)"/.exec(html)?.[1] ?? '';
    // Two segments: the lone first point and the run 3, 4.
    expect(d.match(/M/g)).toHaveLength(2);
    expect(d.match(/L/g)).toHaveLength(3);
    expect(html).toContain('requests <b>–</b>');
  });

  it('does not draw points older than the window', () => {
    const html = renderChart(spec([9, 9, 9, 9, 9]), { ...view, windowMs: 2500 });
    const d = /<path d="([^"]*)"/.exec(html)?.[1] ?? '';
    expect(d.match(/[ML]/g)).toHaveLength(4); // 3000 (its dot: M + L), 4000, 5000
  });

  it('draws every series, each with its key', () => {
    const html = renderChart(
      {
        id: 'chart-y',
        title: 'Busy',
        unit: '',
        series: [
          { label: 'busy', style: 'main', values: [1] },
          { label: 'cap', style: 'cap', values: [8] },
        ],
      },
      { times: [5000], nowMs: 5000, windowMs: 5000 },
    );
    expect(html.match(/<path /g)).toHaveLength(2);
    expect(html).toContain('class="key key-cap">cap <b>8</b>');
    expect(html).toMatch(/<text class="ymax"[^>]*>10<\/text>/);
  });

  it('escapes every text it is given', () => {
    const html = renderChart(spec([1], '<script>alert(1)</script>'), {
      times: [5000],
      nowMs: 5000,
      windowMs: 5000,
    });
    expect(html).not.toContain('<script>');
    expect(escapeHtml(`<a href="x" title='y'>&`)).toBe(
      '&#60;a href=&#34;x&#34; title=&#39;y&#39;&#62;&#38;',
    );
  });
});
