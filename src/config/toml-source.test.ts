/**
 * TOML messages: an unclosed quote is named with its line and column (smol-toml reports it as
 * "control characters are not allowed in strings" at the line break), a stray control character
 * is named by code point, the offending value is never quoted; key lines are found for messages.
 */
import { parse, TomlError } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { explainTomlError, locateKeys, unclosedString } from './toml-source.ts';

/** The parser's error for `text`, explained; fails the test when the text parses. */
function explained(text: string): { line: number; column: number; text: string } | null {
  try {
    parse(text);
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    return explainTomlError(text, err.line, err.column, err.message.split('\n')[0] ?? '');
  }
  throw new Error(`parsed: ${text}`);
}

describe('unclosedString', () => {
  it.each([
    ['listen = "127.0.0.1:80', { quote: '"', column: 10 }],
    ["listen = '127.0.0.1:80", { quote: "'", column: 10 }],
    ['listen = "a\\"b', { quote: '"', column: 10 }], // an escaped quote does not close
    ['headers = { "X" = "a }', { quote: '"', column: 19 }],
    ['v = """abc', { quote: '"""', column: 5 }],
    ['listen = "a" # "b', null], // a comment
    ['listen = "a" \'b\'', null],
    ["path = 'C:\\dir\\'", null], // a literal string has no escapes
  ])('%j', (line, expected) => expect(unclosedString(line)).toEqual(expected));
});

describe('explainTomlError', () => {
  it.each([
    [
      '[server]\nlisten = "127.0.0.1:80\nroot = "x"\n',
      2,
      10,
      'unclosed string (") in the value of listen at line 2, column 10: the line ends before the closing "',
    ],
    [
      "[server]\nroot = '/srv/app\n",
      2,
      8,
      "unclosed string (') in the value of root at line 2, column 8",
    ],
    [
      '[server]\ntrusted_proxies = ["a", "b]\n',
      2,
      25,
      'unclosed string (") in the value of trusted_proxies at line 2, column 25',
    ],
    ['[sse]\ngrant_secret = "s3cr3t', 2, 16, 'unclosed string (") in the value of grant_secret'],
    ['[server]\nindex = """abc\n', 2, 9, 'unclosed string (""") in the value of index'],
    ['[server]\nindex = "a\u0001b"\n', 2, 11, 'control character U+0001 in a string'],
  ])('%j', (text, line, column, words) => {
    const result = explained(text);
    expect(result?.line).toBe(line);
    expect(result?.column).toBe(column);
    expect(result?.text).toContain(words);
  });

  it('never quotes the value (it may be a secret)', () => {
    expect(explained('[sse]\ngrant_secret = "s3cr3t\n')?.text).not.toContain('s3cr3t');
  });

  it('keeps the parser message for other errors', () => {
    expect(explained('[server]\nlisten = \n')).toBeNull();
    expect(explained('[server\n')).toBeNull();
  });
});

describe('locateKeys', () => {
  it('finds sections, keys, dotted keys and sub-tables, skipping multi-line strings', () => {
    const { sections, keys } = locateKeys(
      [
        'top = 1', // 1
        '[server]', // 2
        'listen = "x"', // 3
        '"root" = "y"', // 4
        'index = """', // 5
        'fake = 1', // 6: inside the string
        '"""', // 7
        '[fpm.env]', // 8
        'A = "b"', // 9
        '[log]', // 10
        'level = "info" # level = "x"', // 11
        'cluster.redis_url = "z"', // 12: a dotted key under [log] is log.cluster
      ].join('\n'),
    );
    expect(sections.get('server')).toBe(2);
    expect(sections.get('fpm')).toBe(8);
    expect(keys.get('.top')).toBe(1);
    expect(keys.get('server.listen')).toBe(3);
    expect(keys.get('server.root')).toBe(4);
    expect(keys.get('server.index')).toBe(5);
    expect(keys.has('server.fake')).toBe(false);
    expect(keys.get('fpm.env')).toBe(8);
    expect(keys.get('log.level')).toBe(11);
    expect(keys.get('log.cluster')).toBe(12);
  });
});
