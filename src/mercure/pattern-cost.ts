/**
 * The cost of evaluating a URL pattern or URI template (spec "URL Pattern", "URL-Pattern Denial of
 * Service"): which URL patterns are provably linear (urlPatternIsLinear) and the time limit for any
 * other (runWithTimeLimit). Pure but for one shared node:vm sandbox; matchers.ts applies both.
 *
 * Catastrophic backtracking: Node's URLPattern compiles to V8 regexps with the `u`/`v` flag.
 * Measured on Node 24.21: `/:x((?:a+)+b)` against `/aaa…a!` takes 160 ms at 22 a's and doubles per
 * a; `/:a-:b-:c-:d-:e-:f!` (no regexp group at all) takes 2.2 s on an 80-segment topic, and
 * `/*a*a*a*b` grows as n^3. V8's `--enable-experimental-regexp-engine-on-excessive-backtracks` (set
 * by v8.setFlagsFromString) rescues a plain regexp (2 ms) but not URLPattern's nor any `u` regexp
 * (still 160 ms at 22 a's): V8's linear engine cannot run `u`/`v`/`i` regexps. Refusing nested
 * quantifiers is not enough either (the two examples above have none). So: at compile time each
 * pattern is classified (urlPatternIsLinear, uriTemplateRegExp in uri-template.ts); a pattern whose
 * shape bounds backtracking to O(topic × pattern) runs directly, any other is evaluated under
 * node:vm's `timeout` (V8 TerminateExecution aborts the regexp), default 20 ms, ~90 µs per uncached
 * call. The URL Pattern tokenizer also tells why URLPattern refused a pattern (urlPatternHint).
 */
import { createContext, Script, type Context } from 'node:vm';

// ---------------------------------------------------------------------------------------------
// Time limit

/** What runWithTimeLimit returns when the time limit aborted the job. */
export const ABORTED = Symbol('aborted');
const TIMEOUT_CODE = 'ERR_SCRIPT_EXECUTION_TIMEOUT';
// One sandbox for every guarded call, made on first use: a context is a whole realm (~1 ms, MBs).
// Calls are synchronous, so the `job` slot is never shared by two evaluations.
let guard: { context: Context; script: Script } | undefined;

/** Run `job` (which must not throw) and abort it after `timeoutMs`: V8 TerminateExecution via node:vm. */
export function runWithTimeLimit(job: () => boolean, timeoutMs: number): boolean | typeof ABORTED {
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
// URL pattern shape

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
export function urlPatternHint(pattern: string): string {
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
