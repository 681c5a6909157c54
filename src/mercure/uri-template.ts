/**
 * RFC 6570 URI Templates (levels 1-4) as Mercure 0.x matched them: the `uritemplate` selectors of
 * 0.x `topic=` parameters and legacy token claims, compiled to an anchored RegExp. Pure.
 * Invariant: `linear` is true only for a template whose shape bounds backtracking to
 * O(topic × template); matchers.ts evaluates any other under the time limit (pattern-cost.ts).
 */
import { MatcherError } from './matcher-error.ts';

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
 * most one expression between two literal "/" (see urlPatternIsLinear in pattern-cost.ts). Throws
 * MatcherError.
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
