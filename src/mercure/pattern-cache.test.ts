// The shared compiled-pattern cache (issue 13): matchers of one pattern and base compile it once
// and share its finished results, while the denial-of-service protection stays per matcher. A
// regression here looks like a pattern compiled against the wrong base or type, an invalid pattern
// accepted from the cache, a cache past its bound, or a catastrophic pattern that a cached copy
// lets run without the time limit (this file then times out instead of passing).
import { describe, expect, it } from 'vitest';
import { HUB, LIMITS } from '../../test/helpers/matcher-fixtures.ts';
import { compileMatcher, MatcherError, type MatcherLimits, type TopicMatcher } from './matchers.ts';
import { compiledPattern, PatternCache, type PatternCacheOutcome } from './pattern-cache.ts';

function cache(size = 100): { patterns: PatternCache; outcomes: PatternCacheOutcome[] } {
  const outcomes: PatternCacheOutcome[] = [];
  return { patterns: new PatternCache(size, (o) => outcomes.push(o)), outcomes };
}

const mustBeCached = (): never => {
  throw new Error('expected a cached compiled pattern');
};

describe('PatternCache shares compiled patterns', () => {
  it('N matchers of one URL pattern compile it once and share its results', () => {
    const { patterns, outcomes } = cache();
    const limits: MatcherLimits = { ...LIMITS, patterns };
    const matchers = Array.from({ length: 50 }, () =>
      compileMatcher('urlpattern', '/books/:id', HUB, limits),
    );
    expect(outcomes.filter((o) => o === 'miss')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'hit')).toHaveLength(49);
    expect(patterns.size).toBe(1);
    expect(matchers.every((m) => m.matches('/books/1'))).toBe(true);
    expect(matchers.every((m) => !m.matches('/authors/1'))).toBe(true);
    const shared = patterns.get('urlpattern', '/books/:id', HUB, mustBeCached);
    expect(shared.results.get('/books/1')).toBe(true);
    expect(shared.results.get('/authors/1')).toBe(false);
  });

  it('0.x URI templates are shared too; a literal selector needs no compiled pattern', () => {
    const { patterns, outcomes } = cache();
    const limits: MatcherLimits = { ...LIMITS, patterns };
    const a = compileMatcher('uritemplate', 'https://example.com/books/{id}', HUB, limits);
    const b = compileMatcher('uritemplate', 'https://example.com/books/{id}', HUB, limits);
    compileMatcher('uritemplate', 'https://example.com/books/1', HUB, limits);
    expect(outcomes).toEqual(['miss', 'hit']);
    expect(a.matches('https://example.com/books/7')).toBe(true);
    expect(b.matches('https://example.com/books/7')).toBe(true);
  });

  it('the base and the type are part of the key', () => {
    const { patterns } = cache();
    const a = 'http://a.example/.well-known/mercure';
    const b = 'http://b.example/.well-known/mercure';
    const onA = compileMatcher('urlpattern', '/books/:id', a, { ...LIMITS, patterns });
    const onB = compileMatcher('urlpattern', '/books/:id', b, { ...LIMITS, patterns });
    expect(patterns.size).toBe(2);
    expect(onA.matches('http://a.example/books/1')).toBe(true);
    expect(onB.matches('http://a.example/books/1')).toBe(false);
    expect(onB.matches('/books/1')).toBe(true); // relative topics resolve against its own base
    compileMatcher('uritemplate', '/books/{id}', a, { ...LIMITS, patterns });
    expect(patterns.size).toBe(3);
  });

  it('an invalid pattern is refused every time and never kept', () => {
    const { patterns, outcomes } = cache();
    for (let i = 0; i < 2; i++) {
      expect(() =>
        compileMatcher('urlpattern', '/books/{:id', HUB, { ...LIMITS, patterns }),
      ).toThrow(MatcherError);
    }
    expect(outcomes).toEqual(['miss', 'miss']);
    expect(patterns.size).toBe(0);
  });

  it('keeps at most its bound, the least recently used out first; 0 keeps nothing', () => {
    const { patterns, outcomes } = cache(2);
    let compiles = 0;
    const get = (p: string): void => {
      patterns.get('urlpattern', p, HUB, () => {
        compiles++;
        return compiledPattern(() => true, true);
      });
    };
    for (const p of ['/a', '/b', '/a', '/c', '/a', '/b']) get(p);
    expect(patterns.size).toBe(2);
    // /b was pushed out by /c (/a was used more recently), then /b pushed /c out.
    expect(compiles).toBe(4);
    expect(outcomes.filter((o) => o === 'evict')).toHaveLength(2);
    const none = new PatternCache(0);
    none.get('urlpattern', '/a', HUB, () => compiledPattern(() => true, true));
    expect(none.size).toBe(0);
  });
});

describe('the denial-of-service protection is as strict with a shared pattern', () => {
  it('every matcher of a catastrophic pattern is aborted and counted on its own', () => {
    const { patterns, outcomes } = cache();
    const aborted: TopicMatcher[] = [];
    const limits: MatcherLimits = {
      ...LIMITS,
      patterns,
      onEvaluationAborted: (m) => aborted.push(m),
    };
    const first = compileMatcher('urlpattern', '/:x((?:a+)+b)', HUB, limits);
    const second = compileMatcher('urlpattern', '/:x((?:a+)+b)', HUB, limits);
    expect(outcomes).toEqual(['miss', 'hit']);
    const hostile = `/${'a'.repeat(40)}!`; // 2^40 backtracking steps unbounded
    expect(first.matches(hostile)).toBe(false);
    expect(aborted).toEqual([first]);
    // The shared copy kept no result for the aborted topic: the second matcher evaluates it
    // itself, under the time limit, and is aborted and reported too (as without the cache).
    expect(second.matches(hostile)).toBe(false);
    expect(aborted).toEqual([first, second]);
    expect(patterns.get('urlpattern', '/:x((?:a+)+b)', HUB, mustBeCached).results.size).toBe(0);
    // Both stay off; a new matcher of the pattern starts fresh, as a new subscriber would.
    expect(first.matches('/aab')).toBe(false);
    expect(second.matches('/aab')).toBe(false);
    const third = compileMatcher('urlpattern', '/:x((?:a+)+b)', HUB, limits);
    expect(third.matches('/aab')).toBe(true);
    expect(aborted).toHaveLength(2);
  });

  it('a shared pattern keeps its cost class: not linear, so only under the time limit', () => {
    const { patterns } = cache();
    compileMatcher('urlpattern', '/:a-:b-:c-:d-:e-:f-:g!', HUB, { ...LIMITS, patterns });
    compileMatcher('urlpattern', '/books/:id', HUB, { ...LIMITS, patterns });
    expect(patterns.get('urlpattern', '/:a-:b-:c-:d-:e-:f-:g!', HUB, mustBeCached).linear).toBe(
      false,
    );
    expect(patterns.get('urlpattern', '/books/:id', HUB, mustBeCached).linear).toBe(true);
  });
});
