/**
 * Compiled topic patterns shared between matchers (issue 13): N subscribers, or N token grants,
 * with the same URL pattern (or 0.x URI template) against the same hub URL compile it once, keep
 * one copy, and share its evaluation results. Bounded by a count (LRU, mercure.pattern_cache_size).
 * Invariants: only what is a pure function of (type, pattern, base) is shared: the compiled
 * pattern, its cost class (pattern-cost.ts) and the results of evaluations that finished. The time
 * limit and the aborted state stay per matcher (matchers.ts), so sharing never makes the
 * denial-of-service protection weaker or changes what an aborted evaluation counts.
 */
import { BoundedLru } from './lru.ts';

/** Results kept per compiled pattern: the same topics recur (one entry per published topic). */
const RESULT_CACHE_SIZE = 128;

/** A pattern compiled for one base: how to test a topic, and at what cost. */
export interface CompiledPattern {
  /** True when `topic` matches. Never throws; may be slow unless `linear` (pattern-cost.ts). */
  readonly evaluate: (topic: string) => boolean;
  /** Provably linear: evaluated directly; otherwise only under the time limit. */
  readonly linear: boolean;
  /** Results of finished evaluations, keyed by topic (an aborted one is never stored). */
  readonly results: BoundedLru<string, boolean>;
}

/** Makes a CompiledPattern from its evaluation function and cost class. */
export function compiledPattern(
  evaluate: (topic: string) => boolean,
  linear: boolean,
): CompiledPattern {
  return { evaluate, linear, results: new BoundedLru(RESULT_CACHE_SIZE) };
}

/** What a lookup did: served a compiled pattern, compiled one, or pushed one out of the bound. */
export type PatternCacheOutcome = 'hit' | 'miss' | 'evict';

/** The compiled-pattern cache of one [mercure] configuration (see the file header). */
export class PatternCache {
  readonly #compiled: BoundedLru<string, CompiledPattern>;
  readonly #onOutcome: ((outcome: PatternCacheOutcome) => void) | undefined;

  /** `maxEntries`: compiled patterns kept (0: none, every matcher compiles its own). */
  constructor(maxEntries: number, onOutcome?: (outcome: PatternCacheOutcome) => void) {
    this.#onOutcome = onOutcome;
    this.#compiled = new BoundedLru(maxEntries, () => onOutcome?.('evict'));
  }

  /** Compiled patterns held now. */
  get size(): number {
    return this.#compiled.size;
  }

  /**
   * The compiled form of `pattern` of `type` against `base` (the hub URL; '' when the type does
   * not resolve against one): the cached one, else `compile()`'s, then kept. What `compile` throws
   * (MatcherError for an invalid pattern) propagates and nothing is kept.
   */
  get(
    type: string,
    pattern: string,
    base: string,
    compile: () => CompiledPattern,
  ): CompiledPattern {
    // Unambiguous: `type` is a fixed word and the pattern, last, holds no NUL (textProblem
    // refuses C0 controls before a pattern gets here), so the last NUL ends the base.
    const key = `${type}\u0000${base}\u0000${pattern}`;
    const cached = this.#compiled.get(key);
    if (cached !== undefined) {
      this.#onOutcome?.('hit');
      return cached;
    }
    this.#onOutcome?.('miss');
    const compiled = compile();
    this.#compiled.set(key, compiled);
    return compiled;
  }
}
