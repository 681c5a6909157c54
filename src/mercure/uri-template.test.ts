// Mercure 0.x URI template selectors (RFC 6570): what they match, which templates are refused,
// which shapes run directly. Security regression: a pathological template must come back `false`
// (its evaluation aborted by the time limit), never hang the event loop; a recurrence shows as this
// file timing out instead of passing.
import { describe, expect, it } from 'vitest';
import { compile, refusal } from '../../test/helpers/matcher-fixtures.ts';
import type { MatcherLimits } from './matchers.ts';
import { uriTemplateRegExp } from './uri-template.ts';

describe('uritemplate (Mercure 0.x)', () => {
  it.each([
    ['https://example.com/books/{id}', 'https://example.com/books/1', true],
    ['https://example.com/books/{id}', 'https://example.com/books/a%20b', true],
    ['https://example.com/books/{id}', 'https://example.com/books/', true], // undefined variable
    ['https://example.com/books/{id}', 'https://example.com/books/1/2', false],
    ['https://example.com/books/{id}', 'https://example.com/books/1?x', false],
    ['https://example.com/books/{id}', 'https://example.com/Books/1', false],
    ['https://example.com/a.b/{id}', 'https://example.com/aXb/1', false], // literals escaped
    ['https://example.com/{+path}', 'https://example.com/a/b/c?d', true],
    ['https://example.com/page{#frag}', 'https://example.com/page#sec/1', true],
    ['https://example.com/page{#frag}', 'https://example.com/page', true],
    ['https://example.com{/a,b}', 'https://example.com/x/y', true],
    ['https://example.com{/a,b}', 'https://example.com/x/y/z', false],
    ['https://example.com{/a*}', 'https://example.com/x/y/z', true],
    ['https://example.com/file{.ext}', 'https://example.com/file.json', true],
    ['https://example.com/m{;x,y}', 'https://example.com/m;x=1;y=2', true],
    ['https://example.com/m{;x,y}', 'https://example.com/m;x=1;y=2;z=3', false],
    ['https://example.com/s{?q,page}', 'https://example.com/s?q=a&page=2', true],
    ['https://example.com/s?q=1{&x}', 'https://example.com/s?q=1&x=2', true],
    ['https://example.com/{a,b}', 'https://example.com/1,2', true],
    ['https://example.com/{var:3}', 'https://example.com/val', true],
    ['https://example.com/books/{id}', 'https://example.com/books/{id}', true], // equal string
    ['https://example.com/books/1', 'https://example.com/books/1', true], // no expression: equality
    ['https://example.com/books/1', 'https://example.com/books/2', false],
    ['https://example.com/caf\u00e9/{id}', 'https://example.com/caf\u00e9/1', true],
  ])('%s against %s → %s', (pattern, topic, expected) => {
    expect(compile('uritemplate', pattern).matches(topic)).toBe(expected);
  });

  it('takes a selector without an expression as a plain string, as 0.x did', () => {
    expect(compile('uritemplate', 'a}b').matches('a}b')).toBe(true);
  });

  it.each([
    ['https://example.com/{id', 'the expression opened at index 20 is not closed'],
    ['https://example.com/{}', '"" in the expression at index 20 is not a variable'],
    ['https://example.com/{a b}', '"a b" in the expression'],
    ['https://example.com/{=x}', 'operator "=" at index 21 is reserved'],
    ['https://example.com/{id}}', '"}" at index 24 is not allowed outside an expression'],
    ['https://example.com/ {id}', '" " at index 20 is not allowed'],
    ['https://example.com/%zz/{id}', '"%" at index 20 is not followed by two hex digits'],
    ['https://example.com/{id:0}', '"id:0" in the expression'],
  ])('refuses %s', (pattern, why) => {
    const message = refusal('uritemplate', pattern);
    expect(message).toContain('is not a valid URI template (RFC 6570)');
    expect(message).toContain(why);
  });

  it.each([
    ['https://example.com/books/{id}', true],
    ['https://example.com/{+base}/books/{id}', true],
    ['https://example.com/users/{u}/books/{id}{?q}', false],
    ['{+a}/{+b}', false],
    ['{a}{b}', false],
  ])('%s linear: %s', (pattern, linear) => {
    expect(uriTemplateRegExp(pattern).linear).toBe(linear);
  });

  it('a pathological template evaluates to false, aborted, instead of hanging', () => {
    let aborted = 0;
    const limits: MatcherLimits = { maxLength: 2048, onEvaluationAborted: () => aborted++ };
    const m = compile('uritemplate', '{a}{b}{c}{d}{e}{f}{g}!', limits);
    expect(m.matches('a'.repeat(400))).toBe(false);
    expect(aborted).toBe(1);
  });
});
