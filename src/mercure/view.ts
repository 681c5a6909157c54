/**
 * A Mercure subscribe request's topic matchers, parsed from its query (and, in 0.x compatibility,
 * its `topic=` selectors), and the hub's view of the stream they make: exact topics are indexed
 * like askr channels, any other matcher makes the stream see every event through selects().
 */
import type { TopicView } from '../sse/hub.ts';
import type { PatternCache } from './pattern-cache.ts';
import { canSubscribe, type Grants } from './token.ts';
import {
  compileMatcher,
  MatcherError,
  matcherTypeOfParam,
  textProblem,
  type MatcherLimits,
  type TopicMatcher,
} from './matchers.ts';

export interface MatcherRequestLimits {
  /** mercure.max_matchers */
  maxMatchers: number;
  /** mercure.max_topic_length, bytes */
  maxLength: number;
  compatibility: boolean;
  /** A URL pattern hit its evaluation time limit (see matchers.ts). */
  onAborted?: (matcher: TopicMatcher) => void;
  /** Compiled patterns shared between subscribers (pattern-cache.ts). */
  patterns?: PatternCache;
}

/**
 * The matchers a subscribe query carries, in order; a string is why the request is refused (400):
 * a name in the reserved `match` namespace that is not a supported matcher type, a value that is
 * not valid text or not valid for its type, too many or too long, or no matcher at all.
 */
export function matchersOf(
  params: URLSearchParams,
  hubUrl: string,
  limits: MatcherRequestLimits,
): TopicMatcher[] | string {
  const matchers: TopicMatcher[] = [];
  const seen = new Set<string>();
  const matcherLimits: MatcherLimits = { maxLength: limits.maxLength };
  if (limits.onAborted !== undefined) matcherLimits.onEvaluationAborted = limits.onAborted;
  if (limits.patterns !== undefined) matcherLimits.patterns = limits.patterns;
  for (const [name, value] of params) {
    let type = matcherTypeOfParam(name);
    if (type === 'unsupported') {
      return `unsupported topic matcher parameter "${name.slice(0, 64)}": use match (exact) or match_urlpattern`;
    }
    if (type === null) {
      if (!(limits.compatibility && name === 'topic')) continue;
      type = 'uritemplate';
    }
    if (matchers.length === limits.maxMatchers) {
      return `more than ${limits.maxMatchers} topic matchers (mercure.max_matchers)`;
    }
    const problem = textProblem(value, `the ${name} value`);
    if (problem !== null) return problem;
    try {
      const matcher = compileMatcher(type, value, hubUrl, matcherLimits);
      // Identical matchers make one subscription (the spec lets a hub deduplicate them).
      const key = `${matcher.type}\u0000${matcher.pattern}`;
      if (!seen.has(key)) {
        seen.add(key);
        matchers.push(matcher);
      }
    } catch (err) {
      if (err instanceof MatcherError) return err.message;
      throw err;
    }
  }
  if (matchers.length === 0) {
    return limits.compatibility
      ? 'no topic matcher: add ?match=TOPIC, ?match_urlpattern=PATTERN or ?topic=SELECTOR'
      : 'no topic matcher: add ?match=TOPIC or ?match_urlpattern=PATTERN';
  }
  return matchers;
}

/** The hub's view of a Mercure stream: what it selects, and (grants) which private events it may read. */
export function topicView(matchers: readonly TopicMatcher[], grants: Grants | null): TopicView {
  const exact: string[] = [];
  const others: TopicMatcher[] = [];
  for (const m of matchers) {
    if (m.type === 'exact' && !m.any) exact.push(m.pattern);
    else others.push(m);
  }
  const exactSet = new Set(exact);
  return {
    exact,
    patterns: others.length > 0,
    selects: (topics) => topics.some((t) => exactSet.has(t) || others.some((m) => m.matches(t))),
    mayRead: (topics) => canSubscribe(grants, topics),
  };
}
