// Topic matchers: exact, urlpattern (absolute and relative to the hub URL), the reserved hub
// namespace, the text constraints and the reserved `match` parameter namespace. URI templates are
// tested in uri-template.test.ts, the evaluation cost of patterns in pattern-cost.test.ts.
import { describe, expect, it } from 'vitest';
import { compile, HUB, refusal } from '../../test/helpers/matcher-fixtures.ts';
import {
  hubNamespace,
  MatcherError,
  matcherTypeOfParam,
  textProblem,
  type MatcherType,
} from './matchers.ts';

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

/** hubNamespace(hubUrl)(topic), failing the test when the hub URL does not parse. */
function addressesHubNamespace(topic: string, hubUrl: string): boolean {
  const inNamespace = hubNamespace(hubUrl);
  if (inNamespace === null) throw new Error(`${hubUrl} did not parse`);
  return inNamespace(topic);
}

describe('hubNamespace', () => {
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

  it('is null for a hub URL that does not parse (a bad Host): the caller must refuse', () => {
    expect(hubNamespace('http://exa mple.com/.well-known/mercure')).toBeNull();
    expect(hubNamespace('http://[/.well-known/mercure')).toBeNull();
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
