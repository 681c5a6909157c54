/**
 * Mercure topic matchers (spec "Matcher Types"): `exact`, `urlpattern` and, for 0.x compatibility,
 * RFC 6570 `uritemplate` selectors (uri-template.ts); plus the value rules shared with publishing
 * (text constraints, reserved hub namespace, reserved `match` parameter namespace). Pure: no I/O,
 * no clock. Invariants: `*` matches everything whatever the type; `matches()` never throws; a URL
 * pattern or URI template is evaluated within a bounded cost: directly when its shape is provably
 * linear, else under a time limit (pattern-cost.ts says why: spec "URL-Pattern Denial of Service").
 * A matcher whose evaluation was aborted counts as not matching and stays so (a hostile pattern
 * costs one timeout, not one per published update); `onEvaluationAborted` reports it. With a
 * PatternCache the compiled pattern and its finished results are shared (pattern-cache.ts).
 */
import { compiledPattern, type CompiledPattern, type PatternCache } from './pattern-cache.ts';
import { ABORTED, runWithTimeLimit, urlPatternHint, urlPatternIsLinear } from './pattern-cost.ts';
import { uriTemplateRegExp } from './uri-template.ts';

export type MatcherType = 'exact' | 'urlpattern' | 'uritemplate'; // uritemplate: Mercure 0.x only

export interface TopicMatcher {
  readonly type: MatcherType;
  readonly pattern: string;
  /** The reserved wildcard `*` (matches every topic, whatever the type). */
  readonly any: boolean;
  /** True when `topic` matches. Never throws. */
  matches(topic: string): boolean;
}

export interface MatcherLimits {
  /** mercure.max_topic_length: bytes (UTF-8) of the pattern. */
  maxLength: number;
  /** Time limit of one evaluation of a pattern that is not provably linear; default 20 ms. */
  evaluationTimeoutMs?: number;
  /** Called once when a matcher's evaluation hit the time limit (it matches nothing from then on). */
  onEvaluationAborted?: (matcher: TopicMatcher) => void;
  /** Compiled patterns shared with other matchers; absent: this matcher compiles its own. */
  patterns?: PatternCache;
}

import { MatcherError } from './matcher-error.ts';

export { MatcherError };

const DEFAULT_EVALUATION_TIMEOUT_MS = 20;

/**
 * Compile a topic matcher. `hubUrl` (absolute, e.g. "http://127.0.0.1:8080/.well-known/mercure")
 * is the base of relative URL patterns and topics. Throws MatcherError for a pattern over
 * `limits.maxLength` bytes, with forbidden characters (textProblem) or invalid for its type.
 */
export function compileMatcher(
  type: MatcherType,
  pattern: string,
  hubUrl: string,
  limits: MatcherLimits,
): TopicMatcher {
  const bytes = Buffer.byteLength(pattern, 'utf8');
  if (bytes > limits.maxLength) {
    throw new MatcherError(
      `the ${type} matcher is ${bytes} bytes long, more than the ${limits.maxLength} allowed (mercure.max_topic_length)`,
    );
  }
  const problem = textProblem(pattern, `the ${type} matcher`);
  if (problem !== null) throw new MatcherError(problem);
  if (pattern === '*') return { type, pattern, any: true, matches: () => true };
  switch (type) {
    case 'exact':
      // Byte-for-byte: no resolution, no normalization (spec "Exact Matching").
      return { type, pattern, any: false, matches: (topic) => topic === pattern };
    case 'urlpattern':
      return urlPatternMatcher(pattern, hubUrl, limits);
    case 'uritemplate':
      return uriTemplateMatcher(pattern, limits);
    default:
      throw new MatcherError(`unknown matcher type ${JSON.stringify(type)}`);
  }
}

/**
 * Null, or why `value` is not a valid topic, matcher value, event id or type (spec "Terminology"):
 * a C0 control (U+0000-U+001F), DEL, a C1 control (U+0080-U+009F), a Unicode format character
 * (general category Cf) or a lone surrogate (not valid UTF-8). `what` names the value.
 */
export function textProblem(value: string, what: string): string | null {
  const found = FORBIDDEN_TEXT.exec(value);
  if (found === null) return null;
  const cp = found[0].codePointAt(0) ?? 0;
  const at = `U+${cp.toString(16).toUpperCase().padStart(4, '0')} at index ${found.index}`;
  if (cp < 0x20) return `${what} contains a C0 control character (${at})`;
  if (cp === 0x7f) return `${what} contains the DEL control character (${at})`;
  if (cp <= 0x9f) return `${what} contains a C1 control character (${at})`;
  if (cp >= 0xd800 && cp <= 0xdfff) return `${what} is not valid UTF-8: lone surrogate ${at}`;
  return `${what} contains an invisible Unicode format character (category Cf, ${at})`;
}
// Cc is exactly C0 + DEL + C1; a `u` regexp sees a lone surrogate as a Cs code point.
const FORBIDDEN_TEXT = /[\p{Cc}\p{Cf}\p{Cs}]/u;

/**
 * Spec "reserved hub namespace", for one hub URL parsed once (a publish checks up to
 * mercure.max_topics topics against it): the returned function tells whether `topic`, resolved
 * against `hubUrl` by the WHATWG URL parser, dot-segments removed and %-escapes of unreserved
 * characters decoded, has a path equal to the hub's path or under it, whatever its scheme and
 * host; a topic that does not parse → false. Null when `hubUrl` itself does not parse (a Host
 * header that makes no URL): then no topic can be resolved, so the caller must refuse the request
 * (resolving against it failed for every topic, which let such a request publish in the namespace).
 */
export function hubNamespace(hubUrl: string): ((topic: string) => boolean) | null {
  const hub = URL.parse(hubUrl);
  if (hub === null) return null;
  let hubPath = normalizePath(hub.pathname);
  if (hubPath.length > 1 && hubPath.endsWith('/')) hubPath = hubPath.slice(0, -1);
  const under = `${hubPath}/`;
  return (topic) => {
    const url = URL.parse(topic, hubUrl);
    if (url === null) return false; // cannot name a hub path (spec)
    const path = normalizePath(url.pathname);
    return path === hubPath || path.startsWith(under);
  };
}

/**
 * The matcher type a subscribe query parameter selects (spec "Subscription"): `match` and
 * `match_exact` → exact, `match_urlpattern` → urlpattern; any other name in the reserved `match`
 * namespace (ASCII case-insensitive prefix) → 'unsupported' (400); another name → null.
 */
export function matcherTypeOfParam(name: string): MatcherType | 'unsupported' | null {
  if (name === 'match' || name === 'match_exact') return 'exact';
  if (name === 'match_urlpattern') return 'urlpattern';
  return /^match/i.test(name) ? 'unsupported' : null;
}

// ---------------------------------------------------------------------------------------------
// Evaluation: result cache, time limit (runWithTimeLimit, pattern-cost.ts).

type Evaluate = (topic: string) => boolean;

/**
 * The compiled form of `pattern`: shared through `limits.patterns` when given (compiled at most
 * once per base there), else compiled for this matcher alone.
 */
function compiledFor(
  type: MatcherType,
  pattern: string,
  base: string,
  limits: MatcherLimits,
  compile: () => CompiledPattern,
): CompiledPattern {
  return limits.patterns === undefined
    ? compile()
    : limits.patterns.get(type, pattern, base, compile);
}

/**
 * A matcher over a compiled pattern: a finished evaluation's result is kept (in the pattern's
 * results, shared with the other matchers of the pattern); unless the pattern is linear, every
 * evaluation runs under the time limit. The aborted state is this matcher's own: each matcher of a
 * hostile pattern pays and reports its own timeout, exactly as without sharing.
 */
function boundedMatcher(
  type: MatcherType,
  pattern: string,
  compiled: CompiledPattern,
  limits: MatcherLimits,
): TopicMatcher {
  const { evaluate, linear, results } = compiled;
  const timeoutMs = limits.evaluationTimeoutMs ?? DEFAULT_EVALUATION_TIMEOUT_MS;
  let aborted = false;
  const matcher: TopicMatcher = {
    type,
    pattern,
    any: false,
    matches(topic) {
      if (aborted) return false;
      const cached = results.get(topic);
      if (cached !== undefined) return cached;
      const result = linear ? evaluate(topic) : runWithTimeLimit(() => evaluate(topic), timeoutMs);
      if (result === ABORTED) {
        // Spec: treated as not matching, evaluation aborted; this matcher stays off (see header).
        aborted = true;
        limits.onEvaluationAborted?.(matcher);
        return false;
      }
      results.set(topic, result);
      return result;
    },
  };
  return matcher;
}

// ---------------------------------------------------------------------------------------------
// urlpattern

function urlPatternMatcher(pattern: string, hubUrl: string, limits: MatcherLimits): TopicMatcher {
  const compiled = compiledFor('urlpattern', pattern, hubUrl, limits, () =>
    compileUrlPattern(pattern, hubUrl),
  );
  return boundedMatcher('urlpattern', pattern, compiled, limits);
}

function compileUrlPattern(pattern: string, hubUrl: string): CompiledPattern {
  if (!URL.canParse(hubUrl))
    throw new TypeError(`hub URL ${JSON.stringify(hubUrl)} is not absolute`);
  let compiled: InstanceType<typeof URLPattern>;
  try {
    compiled = new URLPattern(pattern); // absolute: the hub URL must not fill in its components
  } catch {
    try {
      // Relative (spec "URL Pattern": the hub's URL is the base). No `ignoreCase` (spec).
      compiled = new URLPattern(pattern, hubUrl);
    } catch (err) {
      throw new MatcherError(
        `the urlpattern matcher ${JSON.stringify(pattern.slice(0, 128))} is not a valid URL pattern: ${urlPatternHint(pattern)}`,
        { cause: err },
      );
    }
  }
  const evaluate: Evaluate = (topic) => {
    try {
      return compiled.test(topic, hubUrl); // relative topics resolve against the hub URL
    } catch {
      return false; // spec: a topic that cannot be parsed matches no URL pattern
    }
  };
  return compiledPattern(evaluate, urlPatternIsLinear(compiled));
}

// ---------------------------------------------------------------------------------------------
// uritemplate (Mercure 0.x `topic=` selectors and legacy token claims)

function uriTemplateMatcher(pattern: string, limits: MatcherLimits): TopicMatcher {
  // 0.x: a selector matches a topic equal to it, or, when it has an expression, that it matches.
  if (!pattern.includes('{')) {
    return { type: 'uritemplate', pattern, any: false, matches: (topic) => topic === pattern };
  }
  // No base: a template is matched against the topic as given.
  const compiled = compiledFor('uritemplate', pattern, '', limits, () => {
    const { regexp, linear } = uriTemplateRegExp(pattern);
    const evaluate: Evaluate = (topic) => {
      try {
        return topic === pattern || regexp.test(topic);
      } catch {
        return false; // only a RangeError (regexp stack) could land here; matches() never throws
      }
    };
    return compiledPattern(evaluate, linear);
  });
  return boundedMatcher('uritemplate', pattern, compiled, limits);
}

// ---------------------------------------------------------------------------------------------
// Reserved namespace helpers

function normalizePath(path: string): string {
  return removeDotSegments(path.replace(/%[0-9A-Fa-f]{2}/g, decodeUnreserved));
}

function decodeUnreserved(escape: string): string {
  const char = String.fromCharCode(Number.parseInt(escape.slice(1), 16));
  return /^[A-Za-z0-9\-._~]$/.test(char) ? char : escape;
}

/** RFC 3986 section 5.2.4, for a path already normalized once by the WHATWG parser. */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/');
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    if (segment === '.' || segment === '..') {
      if (segment === '..' && out.length > 1) out.pop();
      if (last) out.push('');
    } else out.push(segment);
  }
  return out.join('/');
}
