/**
 * Fixtures of the topic matcher unit tests (src/mercure/matchers, uri-template and pattern-cost
 * tests): the hub URL relative patterns resolve against, default limits, and shorthands that compile
 * a matcher or return the MatcherError message of a refused pattern.
 */
import {
  compileMatcher,
  MatcherError,
  type MatcherLimits,
  type MatcherType,
  type TopicMatcher,
} from '../../src/mercure/matchers.ts';

export const HUB = 'http://127.0.0.1:8080/.well-known/mercure';
export const LIMITS: MatcherLimits = { maxLength: 2048 };

export const compile = (
  type: MatcherType,
  pattern: string,
  limits: MatcherLimits = LIMITS,
): TopicMatcher => compileMatcher(type, pattern, HUB, limits);

/** The message of the MatcherError refusing `pattern`; throws if the pattern is accepted. */
export function refusal(
  type: MatcherType,
  pattern: string,
  limits: MatcherLimits = LIMITS,
): string {
  try {
    compile(type, pattern, limits);
  } catch (err) {
    if (err instanceof MatcherError) return err.message;
    throw err;
  }
  throw new Error(`${type} ${JSON.stringify(pattern)} was accepted`);
}
