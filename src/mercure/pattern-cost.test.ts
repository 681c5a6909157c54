// The evaluation cost of URL patterns (spec "URL-Pattern Denial of Service"): which shapes run
// directly, which under the time limit. Security regressions: a pathological URL pattern must come
// back `false` (its evaluation aborted by the time limit), never hang the event loop; a recurrence
// shows as this file timing out instead of passing.
import { describe, expect, it } from 'vitest';
import { compile, HUB } from '../../test/helpers/matcher-fixtures.ts';
import type { MatcherLimits, TopicMatcher } from './matchers.ts';
import { urlPatternIsLinear } from './pattern-cost.ts';

describe('urlpattern evaluation cost (spec "URL-Pattern Denial of Service")', () => {
  it.each([
    'https://example.com/books/:id',
    '/.well-known/mercure/subscriptions/:type/:match/:sub',
    '/.well-known/mercure/subscriptions{/*}?',
    '/books/:id(\\d+)',
    '/books/:id([0-9a-f]+).json',
    '/books/:id/:rev?',
    'https://*.example.com/*',
    'http{s}?://example.com/*',
    '/a/*/b/:c/:d',
  ])('%s runs directly (backtracking bounded by its shape)', (pattern) => {
    expect(urlPatternIsLinear(new URLPattern(pattern, HUB))).toBe(true);
  });

  it.each([
    '/:x((?:a+)+b)', // nested quantifiers in a regexp group
    '/:x((?:a|a)*b)', // ambiguous alternation, star height 1
    '/*a*a*b', // three wildcards: n^3 without any regexp group
    '/:a-:b-:c', // several names in one segment
    '/:path+', // repeated group
    '/*/x/*', // two wildcards across segments
    '{/:a}?/:b{/:c}?', // two optional segments: ambiguous alignment
    '/:x(.*)',
  ])('%s is evaluated under the time limit', (pattern) => {
    expect(urlPatternIsLinear(new URLPattern(pattern, HUB))).toBe(false);
  });

  it('a pathological pattern evaluates to false, aborted, instead of hanging', () => {
    const aborted: TopicMatcher[] = [];
    const limits: MatcherLimits = { maxLength: 2048, onEvaluationAborted: (m) => aborted.push(m) };
    const m = compile('urlpattern', '/:x((?:a+)+b)', limits);
    // Unbounded, 40 a's would backtrack 2^40 times (measured: 22 a's take ~160 ms, x2 per a).
    expect(m.matches(`/${'a'.repeat(40)}!`)).toBe(false);
    expect(aborted).toEqual([m]);
    // Aborted once, the matcher stays off: a hostile pattern costs one timeout, not one per update.
    expect(m.matches('/aab')).toBe(false);
    expect(aborted).toHaveLength(1);
  });

  it('a time-limited pattern still matches normal topics', () => {
    const m = compile('urlpattern', '/:x((?:a+)+b)');
    expect(m.matches('/aab')).toBe(true);
    expect(m.matches('/aac')).toBe(false);
    expect(compile('urlpattern', '/:a-:b-:c').matches('/x-y-z')).toBe(true);
  });

  it('a polynomial pattern without regexp groups is aborted too', () => {
    let aborted = 0;
    const limits: MatcherLimits = { maxLength: 2048, onEvaluationAborted: () => aborted++ };
    const m = compile('urlpattern', '/:a-:b-:c-:d-:e-:f-:g!', limits);
    expect(m.matches(`/${'a-'.repeat(400)}`)).toBe(false);
    expect(aborted).toBe(1);
  });
});
