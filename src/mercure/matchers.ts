/**
 * Mercure topic matchers (spec "Matcher Types"): `exact`, `urlpattern` and, for 0.x compatibility,
 * RFC 6570 `uritemplate` selectors; plus the value rules shared with publishing (text constraints,
 * reserved hub namespace, reserved `match` parameter namespace). Pure: no I/O, no clock.
 * Invariants: `*` matches everything whatever the type; `matches()` never throws; a URL pattern or
 * URI template is evaluated within a bounded cost.
 *
 * Catastrophic backtracking (spec "URL Pattern", "URL-Pattern Denial of Service"): Node's URLPattern
 * compiles to V8 regexps with the `u`/`v` flag. Measured on Node 24.21: `/:x((?:a+)+b)` against
 * `/aaa…a!` takes 160 ms at 22 a's and doubles per a; `/:a-:b-:c-:d-:e-:f!` (no regexp group at
 * all) takes 2.2 s on an 80-segment topic, and `/*a*a*a*b` grows as n^3. V8's
 * `--enable-experimental-regexp-engine-on-excessive-backtracks` (set by v8.setFlagsFromString)
 * rescues a plain regexp (2 ms) but not URLPattern's nor any `u` regexp (still 160 ms at 22 a's):
 * V8's linear engine cannot run `u`/`v`/`i` regexps. Refusing nested quantifiers is not enough
 * either (the two examples above have none). So: at compile time each pattern is classified
 * (urlPatternIsLinear, uriTemplateRegExp); a pattern whose shape bounds backtracking to
 * O(topic × pattern) runs directly, any other is evaluated under node:vm's `timeout` (V8
 * TerminateExecution aborts the regexp), default 20 ms, ~90 µs per uncached call. A matcher whose
 * evaluation was aborted counts as not matching and stays so (a hostile pattern costs one timeout,
 * not one per published update); `onEvaluationAborted` reports it.
 */
import { createContext, Script, type Context } from 'node:vm';
import { ErrorCodes, SidecarError, type SidecarErrorOptions } from '../errors.ts';

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
}

/** A pattern refused (too long, bad text, not valid for its type); the message is user-facing. */
export class MatcherError extends SidecarError {
  constructor(message: string, options: SidecarErrorOptions = {}) {
    super(ErrorCodes.BAD_REQUEST, message, options);
    this.name = 'MatcherError';
  }
}

const DEFAULT_EVALUATION_TIMEOUT_MS = 20;
/** Results kept per matcher: the same topics recur (one entry per published topic). */
const RESULT_CACHE_SIZE = 128;

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
 * Spec "reserved hub namespace": whether `topic`, resolved against `hubUrl` by the WHATWG URL
 * parser, dot-segments removed and %-escapes of unreserved characters decoded, has a path equal to
 * the hub's path or under it, whatever its scheme and host. A topic that does not parse → false.
 */
export function addressesHubNamespace(topic: string, hubUrl: string): boolean {
  let url: URL;
  try {
    url = new URL(topic, hubUrl);
  } catch {
    return false; // cannot name a hub path (spec)
  }
  let hubPath = normalizePath(new URL(hubUrl).pathname);
  if (hubPath.length > 1 && hubPath.endsWith('/')) hubPath = hubPath.slice(0, -1);
  const path = normalizePath(url.pathname);
  return path === hubPath || path.startsWith(`${hubPath}/`);
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
// Evaluation: result cache, time limit.

type Evaluate = (topic: string) => boolean;

/** A matcher that caches its recent results and, unless `linear`, runs under the time limit. */
function boundedMatcher(
  type: MatcherType,
  pattern: string,
  evaluate: Evaluate,
  linear: boolean,
  limits: MatcherLimits,
): TopicMatcher {
  const cache = new Map<string, boolean>();
  const timeoutMs = limits.evaluationTimeoutMs ?? DEFAULT_EVALUATION_TIMEOUT_MS;
  let aborted = false;
  const matcher: TopicMatcher = {
    type,
    pattern,
    any: false,
    matches(topic) {
      if (aborted) return false;
      const cached = cache.get(topic);
      if (cached !== undefined) {
        cache.delete(topic); // most recently used goes last
        cache.set(topic, cached);
        return cached;
      }
      const result = linear ? evaluate(topic) : runWithTimeLimit(() => evaluate(topic), timeoutMs);
      if (result === ABORTED) {
        // Spec: treated as not matching, evaluation aborted; this matcher stays off (see header).
        aborted = true;
        cache.clear();
        limits.onEvaluationAborted?.(matcher);
        return false;
      }
      if (cache.size >= RESULT_CACHE_SIZE) {
        const oldest = cache.keys().next();
        if (oldest.done !== true) cache.delete(oldest.value);
      }
      cache.set(topic, result);
      return result;
    },
  };
  return matcher;
}

const ABORTED = Symbol('aborted');
const TIMEOUT_CODE = 'ERR_SCRIPT_EXECUTION_TIMEOUT';
// One sandbox for every guarded call, made on first use: a context is a whole realm (~1 ms, MBs).
// Calls are synchronous, so the `job` slot is never shared by two evaluations.
let guard: { context: Context; script: Script } | undefined;

/** Run `job` (which must not throw) and abort it after `timeoutMs`: V8 TerminateExecution via node:vm. */
function runWithTimeLimit(job: () => boolean, timeoutMs: number): boolean | typeof ABORTED {
  guard ??= {
    context: createContext({ job: null }),
    script: new Script('job()', { filename: 'mercure-matcher-time-limit' }),
  };
  const { context, script } = guard;
  context['job'] = job;
  try {
    return script.runInContext(context, { timeout: timeoutMs }) === true;
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === TIMEOUT_CODE) {
      return ABORTED;
    }
    throw err; // evaluate() catches its own errors: anything else is a bug
  } finally {
    context['job'] = null;
  }
}

// ---------------------------------------------------------------------------------------------
// urlpattern

function urlPatternMatcher(pattern: string, hubUrl: string, limits: MatcherLimits): TopicMatcher {
  if (!URL.canParse(hubUrl))
    throw new TypeError(`hub URL ${JSON.stringify(hubUrl)} is not absolute`);
  let compiled: URLPattern;
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
  return boundedMatcher('urlpattern', pattern, evaluate, urlPatternIsLinear(compiled), limits);
}

type URLPattern = InstanceType<typeof globalThis.URLPattern>;

/**
 * Whether URLPattern's regexps for `compiled` backtrack at most O(topic × pattern) (see header),
 * component by component. A piece is a name, a regexp group, a `*` or an optional `{…}?`. It is
 * bounded when it cannot match the component's delimiter (`/` in pathname, `.` in hostname): a name,
 * or a single-class regexp like `\d+`. Linear when: no `+`/`*` modifier, no other regexp group, at
 * most one unbounded piece (wildcard, optional, or any piece of a delimiter-less component) per
 * component, and at most one piece between two literal delimiters.
 */
export function urlPatternIsLinear(compiled: URLPattern): boolean {
  const components: [string, string, string][] = [
    [compiled.protocol, '', ''],
    [compiled.username, '', ''],
    [compiled.password, '', ''],
    [compiled.hostname, '.', ''],
    [compiled.port, '', ''],
    [compiled.pathname, '/', '/'],
    [compiled.search, '', ''],
    [compiled.hash, '', ''],
  ];
  return components.every(([source, delimiter, prefix]) =>
    componentIsLinear(source, delimiter, prefix),
  );
}

/** A token of the URL Pattern tokenizer (https://urlpattern.spec.whatwg.org/#tokens). */
type Token =
  | { t: 'char'; v: string; escaped: boolean }
  | { t: 'name' }
  | { t: 'regexp'; v: string }
  | { t: 'asterisk' }
  | { t: 'modifier'; v: string }
  | { t: 'open' }
  | { t: 'close' };

class PatternSyntaxError extends Error {}

/** The URL Pattern tokenizer, strict; `lenientNames` takes a bare `:` as a char (constructor strings). */
function tokenize(input: string, lenientNames = false): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const c = String.fromCodePoint(input.codePointAt(i) ?? 0);
    if (c === '*') tokens.push({ t: 'asterisk' });
    else if (c === '+' || c === '?') tokens.push({ t: 'modifier', v: c });
    else if (c === '{') tokens.push({ t: 'open' });
    else if (c === '}') tokens.push({ t: 'close' });
    else if (c === '\\') {
      if (i + 1 >= input.length)
        throw new PatternSyntaxError(`a "\\" at index ${i} escapes nothing`);
      const escaped = String.fromCodePoint(input.codePointAt(i + 1) ?? 0);
      tokens.push({ t: 'char', v: escaped, escaped: true });
      i += 1 + escaped.length;
      continue;
    } else if (c === ':') {
      let j = i + 1;
      while (j < input.length) {
        const d = String.fromCodePoint(input.codePointAt(j) ?? 0);
        if (!(j === i + 1 ? NAME_START : NAME_PART).test(d)) break;
        j += d.length;
      }
      if (j > i + 1) {
        tokens.push({ t: 'name' });
        i = j;
        continue;
      }
      if (!lenientNames) {
        throw new PatternSyntaxError(`":" at index ${i} is not followed by a group name`);
      }
      tokens.push({ t: 'char', v: c, escaped: false });
    } else if (c === '(') {
      const end = regexpEnd(input, i);
      tokens.push({ t: 'regexp', v: input.slice(i + 1, end - 1) });
      i = end;
      continue;
    } else tokens.push({ t: 'char', v: c, escaped: false });
    i += c.length;
  }
  return tokens;
}
const NAME_START = /[\p{ID_Start}$_]/u;
const NAME_PART = /[\p{ID_Continue}$\u200C\u200D]/u;

/** Index after the `)` closing the regexp group opened at `open` (URL Pattern tokenizer rules). */
function regexpEnd(input: string, open: number): number {
  let depth = 1;
  let j = open + 1;
  while (j < input.length) {
    const c = input.charCodeAt(j);
    if (c > 0x7f) {
      throw new PatternSyntaxError(`the regexp group at index ${open} has a non-ASCII character`);
    }
    if (j === open + 1 && c === 0x3f /* ? */) {
      throw new PatternSyntaxError(`the regexp group at index ${open} cannot start with "?"`);
    }
    if (c === 0x5c /* \ */) {
      j += 2;
      continue;
    }
    if (c === 0x29 /* ) */ && --depth === 0) {
      if (j === open + 1)
        throw new PatternSyntaxError(`the regexp group at index ${open} is empty`);
      return j + 1;
    }
    if (c === 0x28 /* ( */) {
      depth++;
      if (input[j + 1] !== '?') {
        throw new PatternSyntaxError(
          `capturing group at index ${j} inside a regexp group: write (?:…) instead`,
        );
      }
    }
    j++;
  }
  throw new PatternSyntaxError(`the regexp group opened at index ${open} is not closed`);
}

/** Why URLPattern refused `pattern`, when our tokenizer can tell; else a pointer to the syntax. */
function urlPatternHint(pattern: string): string {
  try {
    const tokens = tokenize(pattern, true);
    let depth = 0;
    for (const tok of tokens) {
      if (tok.t === 'open' && ++depth > 1) return 'groups "{…}" cannot be nested';
      if (tok.t === 'close' && --depth < 0) return 'a "}" closes no group';
    }
    if (depth > 0) return 'a "{" group is not closed';
  } catch (err) {
    if (err instanceof PatternSyntaxError) return err.message;
    throw err;
  }
  return 'see https://urlpattern.spec.whatwg.org/ for the syntax (":name", "*", "{…}?", "(regexp)")';
}

interface Piece {
  end: number; // index of the token after the piece (and its modifier)
  unbounded: boolean;
  unsafe: boolean;
  optional: boolean;
}

// A regexp group that is one ASCII class, quantified: it cannot match "/" or ".".
const SIMPLE_REGEXP =
  /^(?:\\d|\\w|\[(?:[A-Za-z0-9]-[A-Za-z0-9]|[A-Za-z0-9_])+\])(?:[*+?]|\{\d{1,4}(?:,\d{0,4})?\})?$/;

/** The piece starting at tokens[k] (name, regexp or `*`, with its modifier), or null. */
function pieceAt(tokens: readonly Token[], k: number, delimiter: string): Piece | null {
  let j = k;
  let regexp: string | null = null;
  let wildcard = false;
  const tok = tokens[j];
  if (tok?.t === 'name') {
    j++;
    const next = tokens[j];
    if (next?.t === 'regexp') {
      regexp = next.v;
      j++;
    }
  } else if (tok?.t === 'regexp') {
    regexp = tok.v;
    j++;
  } else if (tok?.t === 'asterisk') {
    wildcard = true;
    j++;
  } else return null;
  let modifier = '';
  const m = tokens[j];
  if (m?.t === 'modifier' || m?.t === 'asterisk') {
    modifier = m.t === 'asterisk' ? '*' : m.v;
    j++;
  }
  const unsafe =
    (regexp !== null && !SIMPLE_REGEXP.test(regexp)) || modifier === '*' || modifier === '+';
  const optional = modifier === '?';
  return { end: j, unbounded: wildcard || optional || delimiter === '', unsafe, optional };
}

function componentIsLinear(source: string, delimiter: string, prefix: string): boolean {
  let tokens: Token[];
  try {
    tokens = tokenize(source);
  } catch {
    return false; // not expected for URLPattern's own normalized components: be safe
  }
  let piecesInRun = 0;
  let unbounded = 0;
  const isDelimiter = (tok: Token | undefined): boolean =>
    tok === undefined || (delimiter !== '' && tok.t === 'char' && tok.v === delimiter);
  const add = (piece: Piece, startsWithDelimiter: boolean): boolean => {
    if (piece.unsafe) return false;
    // An optional "/…" followed by "/" or the end starts a new run: the run before it still ends
    // at the next "/" of the topic whether or not the option is taken.
    if (piece.optional && startsWithDelimiter && isDelimiter(tokens[piece.end])) piecesInRun = 0;
    piecesInRun++;
    if (piece.unbounded) unbounded++;
    return piecesInRun <= 1 && unbounded <= 1;
  };
  let k = 0;
  while (k < tokens.length) {
    const tok = tokens[k];
    if (tok?.t === 'char') {
      if (prefix !== '' && tok.v === prefix && !tok.escaped) {
        // An implicit prefix belongs to an optional piece right after it.
        const piece = pieceAt(tokens, k + 1, delimiter);
        if (piece?.optional === true) {
          if (!add(piece, true)) return false;
          k = piece.end;
          continue;
        }
      }
      if (isDelimiter(tok)) piecesInRun = 0;
      k++;
    } else if (tok?.t === 'open') {
      const close = tokens.findIndex((t, i) => i > k && t.t === 'close');
      if (close < 0) return false;
      const inner = tokens.slice(k + 1, close);
      if (inner.some((t) => t.t === 'open')) return false;
      const m = tokens[close + 1];
      const modifier = m?.t === 'modifier' ? m.v : m?.t === 'asterisk' ? '*' : '';
      if (modifier === '') {
        tokens = [...tokens.slice(0, k), ...inner, ...tokens.slice(close + 1)]; // plain grouping
        continue;
      }
      if (modifier !== '?') return false;
      let variables = 0;
      for (let q = 0; q < inner.length;) {
        const piece = pieceAt(inner, q, delimiter);
        if (piece === null) {
          if (inner[q]?.t !== 'char') return false;
          q++;
        } else {
          if (piece.unsafe || piece.optional) return false;
          variables++;
          q = piece.end;
        }
      }
      const first = inner[0];
      const startsWithDelimiter = first?.t === 'char' && first.v === delimiter && delimiter !== '';
      const group: Piece = {
        end: close + 2,
        unbounded: true,
        unsafe: variables > 1,
        optional: true,
      };
      if (!add(group, startsWithDelimiter)) return false;
      k = group.end;
    } else {
      const piece = pieceAt(tokens, k, delimiter);
      if (piece === null || !add(piece, false)) return false;
      k = piece.end;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// uritemplate (Mercure 0.x `topic=` selectors and legacy token claims)

function uriTemplateMatcher(pattern: string, limits: MatcherLimits): TopicMatcher {
  // 0.x: a selector matches a topic equal to it, or, when it has an expression, that it matches.
  if (!pattern.includes('{')) {
    return { type: 'uritemplate', pattern, any: false, matches: (topic) => topic === pattern };
  }
  const { regexp, linear } = uriTemplateRegExp(pattern);
  const evaluate: Evaluate = (topic) => {
    try {
      return topic === pattern || regexp.test(topic);
    } catch {
      return false; // only a RangeError (regexp stack) could land here; matches() never throws
    }
  };
  return boundedMatcher('uritemplate', pattern, evaluate, linear, limits);
}

// RFC 6570 section 3.2.1: first string, separator, named expansion, allowed characters.
const OPERATORS: Record<string, { first: string; sep: string; named: boolean; reserved: boolean }> =
  {
    '': { first: '', sep: ',', named: false, reserved: false },
    '+': { first: '', sep: ',', named: false, reserved: true },
    '#': { first: '#', sep: ',', named: false, reserved: true },
    '.': { first: '.', sep: '.', named: false, reserved: false },
    '/': { first: '/', sep: '/', named: false, reserved: false },
    ';': { first: ';', sep: ';', named: true, reserved: false },
    '?': { first: '?', sep: '&', named: true, reserved: false },
    '&': { first: '&', sep: '&', named: true, reserved: false },
  };
const UNRESERVED_CLASS = 'A-Za-z0-9\\-._~';
const RESERVED_CLASS = ":/?#\\[\\]@!$&'()*+,;=";
const VARSPEC =
  /^(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})+(?:\.(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})+)*(?::[1-9]\d{0,3}|\*)?$/;

/**
 * The anchored RegExp a URI Template (RFC 6570, levels 1-4) matches, as Mercure 0.x did (an
 * expression may expand to nothing; values are unreserved characters, plus reserved ones for `+`
 * and `#`, or %-escapes). `linear`: at most one expression that can span "/" (`+`, `#`, `/`) and at
 * most one expression between two literal "/" (see urlPatternIsLinear). Throws MatcherError.
 */
export function uriTemplateRegExp(template: string): { regexp: RegExp; linear: boolean } {
  const invalid = (why: string): MatcherError =>
    new MatcherError(`the uritemplate matcher is not a valid URI template (RFC 6570): ${why}`);
  let source = '^';
  let piecesInRun = 0;
  let spanning = 0;
  let linear = true;
  let i = 0;
  while (i < template.length) {
    const c = template[i];
    if (c === '{') {
      const close = template.indexOf('}', i + 1);
      if (close < 0) throw invalid(`the expression opened at index ${i} is not closed`);
      let body = template.slice(i + 1, close);
      const op = body[0] !== undefined && '+#./;?&'.includes(body[0]) ? body[0] : '';
      if (body[0] !== undefined && '=,!@|'.includes(body[0])) {
        throw invalid(`operator "${body[0]}" at index ${i + 1} is reserved`);
      }
      body = body.slice(op.length);
      const specs = body.split(',');
      for (const spec of specs) {
        if (!VARSPEC.test(spec)) {
          throw invalid(
            `${JSON.stringify(spec)} in the expression at index ${i} is not a variable`,
          );
        }
      }
      const rules = OPERATORS[op] ?? { first: '', sep: ',', named: false, reserved: false };
      source += expressionSource(rules, specs);
      piecesInRun++;
      if (op === '+' || op === '#' || op === '/') spanning++;
      if (piecesInRun > 1 || spanning > 1) linear = false;
      i = close + 1;
      continue;
    }
    const cp = template.codePointAt(i) ?? 0;
    const char = String.fromCodePoint(cp);
    if (c === '%') {
      if (!/^%[0-9A-Fa-f]{2}/.test(template.slice(i, i + 3))) {
        throw invalid(`"%" at index ${i} is not followed by two hex digits`);
      }
    } else if (!isLiteral(cp)) {
      throw invalid(`${JSON.stringify(char)} at index ${i} is not allowed outside an expression`);
    }
    if (c === '/') piecesInRun = 0;
    source += escapeRegExp(char);
    i += char.length;
  }
  return { regexp: new RegExp(`${source}$`), linear };
}

/**
 * One expression: `(?:first value(?:sep value){0,n})?`. When the separator is itself an allowed
 * value character the repetition adds nothing and is left out, so no two quantifiers compete.
 */
function expressionSource(
  rules: { first: string; sep: string; named: boolean; reserved: boolean },
  specs: readonly string[],
): string {
  const explode = specs.some((s) => s.endsWith('*'));
  let chars = UNRESERVED_CLASS;
  if (rules.reserved) chars += RESERVED_CLASS;
  else chars += rules.named || explode ? ',=' : ',';
  const value = `(?:[${chars}]|%[0-9A-Fa-f]{2})*`;
  const sepAllowed = rules.reserved || rules.sep === ',' || rules.sep === '.';
  let body = value;
  if (!sepAllowed && (explode || specs.length > 1)) {
    const more = explode ? '*' : `{0,${specs.length - 1}}`;
    body += `(?:${escapeRegExp(rules.sep)}${value})${more}`;
  }
  return rules.first === '' ? body : `(?:${escapeRegExp(rules.first)}${body})?`;
}

/** RFC 6570 `literals` (pct-encoded handled by the caller). */
function isLiteral(cp: number): boolean {
  if (cp < 0x80) {
    return cp > 0x20 && !'"\'%<>\\^`{|}'.includes(String.fromCharCode(cp)) && cp !== 0x7f;
  }
  if (cp < 0xa0 || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0xfdd0 && cp <= 0xfdef)) return false;
  if ((cp & 0xfffe) === 0xfffe) return false; // noncharacters U+xFFFE, U+xFFFF
  return cp < 0xe0000 || cp >= 0xe1000;
}

function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
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
