// Topic matchers: exact, urlpattern (absolute and relative to the hub URL), 0.x URI templates, the
// reserved hub namespace, the text constraints and the reserved `match` parameter namespace.
// Security regressions: a pathological URL pattern or URI template must come back `false` (its
// evaluation aborted by the time limit), never hang the event loop; a recurrence shows as this file
// timing out instead of passing.
import { describe, expect, it } from 'vitest';
import {
  addressesHubNamespace,
  compileMatcher,
  MatcherError,
  matcherTypeOfParam,
  textProblem,
  type MatcherLimits,
  type MatcherType,
  type TopicMatcher,
  uriTemplateRegExp,
  urlPatternIsLinear,
} from './matchers.ts';

const HUB = 'http://127.0.0.1:8080/.well-known/mercure';
const LIMITS: MatcherLimits = { maxLength: 2048 };

const compile = (
  type: MatcherType,
  pattern: string,
  limits: MatcherLimits = LIMITS,
): TopicMatcher => compileMatcher(type, pattern, HUB, limits);

function refusal(type: MatcherType, pattern: string, limits: MatcherLimits = LIMITS): string {
  try {
    compile(type, pattern, limits);
  } catch (err) {
    if (err instanceof MatcherError) return err.message;
    throw err;
  }
  throw new Error(`${type} ${JSON.stringify(pattern)} was accepted`);
}

describe('the * wildcard', () => {
  it.each<MatcherType>(['exact', 'urlpattern', 'uritemplate'])(
    'matches every topic as %s',
    (type) => {
      const m = compile(type, '*');
      expect(m.any).toBe(true);
      for (const topic of [
        '*',
        'x',
        '',
        'https://example.com/a',
        'http://[',
        '/.well-known/mercure/x',
      ]) {
        expect(m.matches(topic)).toBe(true);
      }
    },
  );
});

describe('exact', () => {
  const m = compile('exact', 'https://example.com/Books/1');

  it.each([
    ['https://example.com/Books/1', true],
    ['https://example.com/books/1', false], // case-sensitive
    ['https://EXAMPLE.com/Books/1', false], // no URL canonicalization either
    ['https://example.com/Books/1/', false],
    ['https://example.com/Books/%31', false],
  ])('%s → %s', (topic, expected) => {
    expect(m.matches(topic)).toBe(expected);
    expect(m.any).toBe(false);
  });

  it('does not resolve relative values against the hub URL', () => {
    expect(compile('exact', 'foo').matches('http://127.0.0.1:8080/.well-known/foo')).toBe(false);
    expect(compile('exact', 'foo').matches('foo')).toBe(true);
  });

  it('does not normalize Unicode (NFC vs NFD)', () => {
    expect(compile('exact', 'caf\u00e9').matches('cafe\u0301')).toBe(false);
  });
});

describe('urlpattern', () => {
  it.each([
    ['https://example.com/books/:id', 'https://example.com/books/1', true],
    ['https://example.com/books/:id', 'https://EXAMPLE.COM/books/1', true], // host case-insensitive
    ['https://example.com/books/:id', 'https://example.com/Books/1', false], // path case-sensitive
    ['https://example.com/books/:id', 'https://example.com/books/1/2', false],
    ['https://example.com/books/:id', 'https://example.com/books/1?x=1#y', true],
    ['https://example.com/books/:id', 'http://example.com/books/1', false],
    ['https://example.com/books/:id', '/books/1', false], // resolves against the hub's host
    ['https://example.com/books/:id(\\d+)', 'https://example.com/books/42', true],
    ['https://example.com/books/:id(\\d+)', 'https://example.com/books/abc', false],
    ['https://*.example.com/*', 'https://a.example.com/x/y', true],
    ['https://*.example.com/*', 'https://example.org/x', false],
    ['http{s}?://example.com/*', 'http://example.com/x', true],
    ['urn\\:uuid\\:*', 'urn:uuid:1234', true],
  ])('%s against %s → %s', (pattern, topic, expected) => {
    expect(compile('urlpattern', pattern).matches(topic)).toBe(expected);
  });

  it.each([
    ['/.well-known/mercure/subscriptions/exact/a%2Fb/urn%3Auuid%3Ax', true],
    ['http://127.0.0.1:8080/.well-known/mercure/subscriptions/exact/a%2Fb/urn%3Auuid%3Ax', true],
    ['http://other.example/.well-known/mercure/subscriptions/exact/a%2Fb/urn%3Auuid%3Ax', false],
    ['/.well-known/mercure/subscriptions/exact/a/b/urn%3Auuid%3Ax', false],
    ['/.well-known/mercure/subscriptions/exact/a%2Fb', false],
  ])('a relative pattern is resolved against the hub URL: %s → %s', (topic, expected) => {
    const m = compile('urlpattern', '/.well-known/mercure/subscriptions/:type/:match/:sub');
    expect(m.matches(topic)).toBe(expected);
  });

  it.each([
    ['/.well-known/mercure/subscriptions', true],
    ['/.well-known/mercure/subscriptions/exact/a/b', true],
    ['/.well-known/mercure/subscriptionsX', false],
  ])('the optional subscriptions subtree: %s → %s', (topic, expected) => {
    expect(compile('urlpattern', '/.well-known/mercure/subscriptions{/*}?').matches(topic)).toBe(
      expected,
    );
  });

  it('a relative pattern without a leading slash resolves like a relative URL', () => {
    expect(compile('urlpattern', 'books/:id').matches('/.well-known/books/1')).toBe(true);
  });

  it.each(['http://[', 'https://exa mple.com/books/1', 'http://example.com:99999/'])(
    'an unparseable topic %j matches nothing and does not throw',
    (topic) => {
      expect(compile('urlpattern', '*://*/*').matches(topic)).toBe(false);
      expect(compile('urlpattern', '/*').matches(topic)).toBe(false);
    },
  );

  it('gives the same answers from its cache and past its bound', () => {
    const m = compile('urlpattern', 'https://example.com/books/:id');
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 300; i++) {
        expect(m.matches(`https://example.com/books/${i}`)).toBe(true);
        expect(m.matches(`https://example.com/authors/${i}`)).toBe(false);
      }
    }
  });

  it.each([
    ['/books/:id(', 'the regexp group opened at index 10 is not closed'],
    ['/books/:id((a))', 'capturing group at index 11 inside a regexp group: write (?:…) instead'],
    ['/books/:id(é)', 'non-ASCII character'],
    ['/books/:id()', 'is empty'],
    ['/books/{:id', 'a "{" group is not closed'],
    ['/books/{{:id}}', 'cannot be nested'],
    ['https://exa mple.com/*', 'urlpattern.spec.whatwg.org'],
  ])('refuses the invalid pattern %s', (pattern, why) => {
    const message = refusal('urlpattern', pattern);
    expect(message).toContain('is not a valid URL pattern');
    expect(message).toContain(why);
  });
});

describe('urlpattern evaluation cost (spec "URL-Pattern Denial of Service")', () => {
  it.each([
    'https://example.com/books/:id',
    '/.well-known/mercure/subscriptions/:type/:match/:sub',
    '/.well-known/mercure/subscriptions{/*}?',
    '/books/:id(\\d+)',
    '/books/:id([0-9a-f]+).json',
    '/books/:id/:rev?',
    'https://*.example.com/*',
    'http{s}?://example.com/*',
    '/a/*/b/:c/:d',
  ])('%s runs directly (backtracking bounded by its shape)', (pattern) => {
    expect(urlPatternIsLinear(new URLPattern(pattern, HUB))).toBe(true);
  });

  it.each([
    '/:x((?:a+)+b)', // nested quantifiers in a regexp group
    '/:x((?:a|a)*b)', // ambiguous alternation, star height 1
    '/*a*a*b', // three wildcards: n^3 without any regexp group
    '/:a-:b-:c', // several names in one segment
    '/:path+', // repeated group
    '/*/x/*', // two wildcards across segments
    '{/:a}?/:b{/:c}?', // two optional segments: ambiguous alignment
    '/:x(.*)',
  ])('%s is evaluated under the time limit', (pattern) => {
    expect(urlPatternIsLinear(new URLPattern(pattern, HUB))).toBe(false);
  });

  it('a pathological pattern evaluates to false, aborted, instead of hanging', () => {
    const aborted: TopicMatcher[] = [];
    const limits: MatcherLimits = { maxLength: 2048, onEvaluationAborted: (m) => aborted.push(m) };
    const m = compile('urlpattern', '/:x((?:a+)+b)', limits);
    // Unbounded, 40 a's would backtrack 2^40 times (measured: 22 a's take ~160 ms, x2 per a).
    expect(m.matches(`/${'a'.repeat(40)}!`)).toBe(false);
    expect(aborted).toEqual([m]);
    // Aborted once, the matcher stays off: a hostile pattern costs one timeout, not one per update.
    expect(m.matches('/aab')).toBe(false);
    expect(aborted).toHaveLength(1);
  });

  it('a time-limited pattern still matches normal topics', () => {
    const m = compile('urlpattern', '/:x((?:a+)+b)');
    expect(m.matches('/aab')).toBe(true);
    expect(m.matches('/aac')).toBe(false);
    expect(compile('urlpattern', '/:a-:b-:c').matches('/x-y-z')).toBe(true);
  });

  it('a polynomial pattern without regexp groups is aborted too', () => {
    let aborted = 0;
    const limits: MatcherLimits = { maxLength: 2048, onEvaluationAborted: () => aborted++ };
    const m = compile('urlpattern', '/:a-:b-:c-:d-:e-:f-:g!', limits);
    expect(m.matches(`/${'a-'.repeat(400)}`)).toBe(false);
    expect(aborted).toBe(1);
  });
});

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

describe('limits and text constraints on patterns', () => {
  it.each<MatcherType>(['exact', 'urlpattern', 'uritemplate'])(
    'refuses a %s pattern over maxLength bytes',
    (type) => {
      expect(() => compile(type, 'a'.repeat(16), { maxLength: 16 })).not.toThrow();
      const message = refusal(type, 'a'.repeat(17), { maxLength: 16 });
      expect(message).toContain(
        '17 bytes long, more than the 16 allowed (mercure.max_topic_length)',
      );
      // Bytes, not characters: 9 × "é" is 18 bytes.
      expect(refusal(type, '\u00e9'.repeat(9), { maxLength: 16 })).toContain('18 bytes');
    },
  );

  it.each<MatcherType>(['exact', 'urlpattern', 'uritemplate'])(
    'refuses a %s pattern with a format character',
    (type) => {
      expect(refusal(type, '/books/\u200b1')).toBe(
        `the ${type} matcher contains an invisible Unicode format character (category Cf, U+200B at index 7)`,
      );
    },
  );

  it('MatcherError carries the bad-request code', () => {
    let caught: unknown;
    try {
      compile('exact', '\u0000');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MatcherError);
    expect(caught).toBeInstanceOf(Error);
    expect((caught as MatcherError).code).toBe('ASKR_ERR_BAD_REQUEST');
  });
});

describe('textProblem', () => {
  it.each([
    '',
    'https://example.com/caf\u00e9',
    'emoji \u{1F600}',
    'tab-free',
    '\u00a0nbsp',
    '\u{10FFFD}',
  ])('accepts %j', (value) => {
    expect(textProblem(value, 'the topic')).toBeNull();
  });

  it.each([
    ['a\u0000b', 'the topic contains a C0 control character (U+0000 at index 1)'],
    ['a\nb', 'the topic contains a C0 control character (U+000A at index 1)'],
    ['\u001f', 'the topic contains a C0 control character (U+001F at index 0)'],
    ['a\u007f', 'the topic contains the DEL control character (U+007F at index 1)'],
    ['\u0080', 'the topic contains a C1 control character (U+0080 at index 0)'],
    ['x\u0085', 'the topic contains a C1 control character (U+0085 at index 1)'],
    ['\u009f', 'the topic contains a C1 control character (U+009F at index 0)'],
    [
      'a\u200bb',
      'the topic contains an invisible Unicode format character (category Cf, U+200B at index 1)',
    ],
    [
      '\u202e',
      'the topic contains an invisible Unicode format character (category Cf, U+202E at index 0)',
    ],
    [
      '\ufeff',
      'the topic contains an invisible Unicode format character (category Cf, U+FEFF at index 0)',
    ],
    [
      '\u00ad',
      'the topic contains an invisible Unicode format character (category Cf, U+00AD at index 0)',
    ],
    [
      '\u{E0001}',
      'the topic contains an invisible Unicode format character (category Cf, U+E0001 at index 0)',
    ],
    ['a\ud800', 'the topic is not valid UTF-8: lone surrogate U+D800 at index 1'],
    ['\udc00a', 'the topic is not valid UTF-8: lone surrogate U+DC00 at index 0'],
    ['\ud83d\ud83d\ude00', 'the topic is not valid UTF-8: lone surrogate U+D83D at index 0'],
  ])('refuses %j', (value, message) => {
    expect(textProblem(value, 'the topic')).toBe(message);
  });
});

describe('addressesHubNamespace', () => {
  it.each([
    ['/.well-known/mercure', true],
    ['/.well-known/mercure/', true],
    ['/.well-known/mercure/subscriptions/exact/a/b', true],
    ['/.well-known/mercure?x=1', true],
    ['/.well-known/mercure#f', true],
    ['http://127.0.0.1:8080/.well-known/mercure/x', true],
    ['https://other.example/.well-known/mercure/x', true], // any scheme and host
    ['urn:/.well-known/mercure/x', true],
    ['/.well-known/%6Dercure/x', true], // unreserved %-escape
    ['https://other.example/.well-known/%6dercure/x', true],
    ['/.well-known/%6D%65%72%63%75%72%65', true],
    ['/.well-known/mercure/../mercure/x', true],
    ['/.well-known/x/../mercure/y', true],
    ['/.well-known/x/%2E%2E/mercure/y', true],
    ['/.well-known/./mercure/x', true],
    ['mercure/x', true], // relative to /.well-known/
    ['\\.well-known\\mercure\\x', true], // a special scheme reads "\" as "/"
    ['/.well-known/mercurex', false],
    ['/.well-known/mercure-x/y', false],
    ['/.well-known/MERCURE/x', false], // paths are case-sensitive
    ['/.well-known%2Fmercure/x', false], // "/" is reserved: its escape is not decoded
    ['/.well-known/mercure/%2e%2e/x', false],
    ['/.well-known/mercure/../x', false],
    ['.well-known/mercure/x', false],
    ['https://example.com/books/1', false],
    ['urn:uuid:9b3a5c2e', false],
    ['*', false],
    ['http://[', false], // unparseable
  ])('%s → %s', (topic, expected) => {
    expect(addressesHubNamespace(topic, HUB)).toBe(expected);
  });

  it('uses the configured hub path', () => {
    expect(addressesHubNamespace('/hub/x', 'http://h/hub')).toBe(true);
    expect(addressesHubNamespace('/hub', 'http://h/hub/')).toBe(true);
    expect(addressesHubNamespace('/.well-known/mercure/x', 'http://h/hub')).toBe(false);
  });
});

describe('matcherTypeOfParam', () => {
  it.each([
    ['match', 'exact'],
    ['match_exact', 'exact'],
    ['match_urlpattern', 'urlpattern'],
    ['MATCH', 'unsupported'],
    ['Match_exact', 'unsupported'],
    ['match_URLPattern', 'unsupported'],
    ['match_regex', 'unsupported'],
    ['match_uritemplate', 'unsupported'],
    ['matches', 'unsupported'],
    ['matchfoo', 'unsupported'],
    ['mAtCh', 'unsupported'],
    ['topic', null],
    ['last_event_id', null],
    ['xmatch', null],
    ['mat', null],
    ['', null],
  ])('%j → %s', (name, expected) => {
    expect(matcherTypeOfParam(name)).toBe(expected);
  });
});
