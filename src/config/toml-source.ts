/**
 * The TOML text side of config messages: the line each key was set on (for provenance and for
 * "unknown key" errors, which the parser does not locate) and plain words for the parser errors
 * that name the symptom rather than the cause (an unclosed quote reads "control characters are
 * not allowed in strings"). Pure: text in, positions and sentences out; never quotes a value, so a
 * secret on the offending line is never echoed.
 */

/** Line numbers (1-based) of a TOML document's sections and keys. */
export interface KeyLines {
  /** "section" → the line of its [section] header. */
  sections: Map<string, number>;
  /** "section.key" → the line that sets it (a dotted key or a [section.key] sub-table too). */
  keys: Map<string, number>;
}

const BARE_OR_QUOTED = String.raw`(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)`;
const DOTTED = new RegExp(`^(${BARE_OR_QUOTED}(?:\\s*\\.\\s*${BARE_OR_QUOTED})*)`);
const KEY_LINE = new RegExp(`^(${BARE_OR_QUOTED}(?:\\s*\\.\\s*${BARE_OR_QUOTED})*)\\s*=`);

function segments(dotted: string): string[] {
  const out: string[] = [];
  const re = new RegExp(BARE_OR_QUOTED, 'g');
  for (const m of dotted.matchAll(re)) {
    const s = m[0];
    out.push(
      s.startsWith('"') ? (JSON.parse(s) as string) : s.startsWith("'") ? s.slice(1, -1) : s,
    );
  }
  return out;
}

/**
 * Finds where each section and key is written. Best effort on a document the parser accepted:
 * lines inside multi-line strings are skipped; the first line wins.
 */
export function locateKeys(text: string): KeyLines {
  const sections = new Map<string, number>();
  const keys = new Map<string, number>();
  const remember = (map: Map<string, number>, name: string, line: number): void => {
    if (!map.has(name)) map.set(name, line);
  };
  let section = '';
  let table: string[] = [];
  let inMultiline: string | null = null;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = (lines[i] ?? '').trim();
    if (inMultiline !== null) {
      if (line.includes(inMultiline)) inMultiline = null;
      continue;
    }
    if (line.startsWith('[')) {
      const header = DOTTED.exec(line.replace(/^\[\[?\s*/, ''));
      table = header?.[1] === undefined ? [] : segments(header[1]);
      section = table[0] ?? '';
      remember(sections, section, lineNo);
      if (table[1] !== undefined) remember(keys, `${section}.${table[1]}`, lineNo);
      continue;
    }
    const key = KEY_LINE.exec(line);
    if (key?.[1] === undefined) continue;
    const path = [...table, ...segments(key[1])];
    if (path.length >= 2) remember(keys, `${path[0] ?? ''}.${path[1] ?? ''}`, lineNo);
    else remember(keys, `.${path[0] ?? ''}`, lineNo);
    const value = line.slice(key[0].length);
    for (const delim of ['"""', "'''"]) {
      if (value.split(delim).length % 2 === 0) inMultiline = delim;
    }
  }
  return { sections, keys };
}

/** The opening of a string the line never closes, or null (a `#` comment ends the scan). */
export function unclosedString(line: string): { quote: string; column: number } | null {
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === '#') return null;
    if (c !== '"' && c !== "'") {
      i++;
      continue;
    }
    const quote = line.startsWith(c.repeat(3), i) ? c.repeat(3) : c;
    const start = i;
    i += quote.length;
    let closed = false;
    while (i < line.length) {
      if (c === '"' && line[i] === '\\') {
        i += 2;
        continue;
      }
      if (line.startsWith(quote, i)) {
        i += quote.length;
        closed = true;
        break;
      }
      i++;
    }
    if (!closed) return { quote, column: start + 1 };
  }
  return null;
}

/**
 * Plain words for a parser error at `line`:`column` (1-based), or null to keep the parser's own.
 * An unclosed quote (which the parser reports as a control character, the line break, inside a
 * string) becomes `unclosed string (") in the value of listen at line 2, column 10`.
 */
export function explainTomlError(
  text: string,
  line: number,
  column: number,
  message: string,
): { line: number; column: number; text: string } | null {
  if (!/control characters are not allowed in strings|unfinished string/.test(message)) {
    return null;
  }
  const lineText = text.split(/\r?\n/)[line - 1] ?? '';
  const open = unclosedString(lineText);
  const keyName = KEY_LINE.exec(lineText.trim())?.[1];
  const of = keyName === undefined ? '' : ` in the value of ${segments(keyName).join('.')}`;
  if (open !== null) {
    const closing = open.quote.length === 3 ? 'the file ends' : 'the line ends';
    const hint =
      open.quote.length === 3
        ? ''
        : `; a "…" or '…' string ends on its line (use """…""" for text over several lines)`;
    return {
      line,
      column: open.column,
      text: `unclosed string (${open.quote})${of} at line ${line}, column ${open.column}: ${closing} before the closing ${open.quote}${hint}`,
    };
  }
  const char = lineText.codePointAt(column - 1);
  if (char !== undefined && (char < 0x20 || char === 0x7f) && char !== 0x09) {
    const code = `U+${char.toString(16).toUpperCase().padStart(4, '0')}`;
    return {
      line,
      column,
      text: `control character ${code} in a string${of} at line ${line}, column ${column}: write it as the escape \\u${code.slice(2)} inside "…"`,
    };
  }
  return null;
}
