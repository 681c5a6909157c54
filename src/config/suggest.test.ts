/**
 * "Did you mean": edit distance, the closest key in the section and across sections, sections,
 * and ASKR_* names; the PHP side's own ASKR_* variables must not be taken for typos.
 */
import { describe, expect, it } from 'vitest';
import {
  closest,
  didYouMeanKey,
  editDistance,
  sectionsWithKey,
  suggestEnvName,
  suggestKey,
  suggestSection,
} from './suggest.ts';

describe('editDistance', () => {
  it.each([
    ['', '', 0],
    ['abc', 'abc', 0],
    ['abc', '', 3],
    ['grant_secert', 'grant_secret', 1], // a transposition counts once
    ['listen', 'lisen', 1],
    ['root', 'port', 2],
    ['kitten', 'sitting', 3],
  ])('%j -> %j = %i', (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });
});

describe('closest', () => {
  it('keeps ties, drops names too far to be typos', () => {
    expect(closest('lisen', ['listen', 'root'])).toEqual(['listen']);
    expect(closest('xyz', ['listen', 'root'])).toEqual([]);
    expect(closest('MAX-BODY-SIZE', ['max_body_size'])).toEqual(['max_body_size']);
  });
  it('takes a name plus a suffix as meaning the name', () => {
    expect(closest('listen_addr', ['listen', 'root'])).toEqual(['listen']);
  });
  it('honours an explicit limit', () => {
    expect(closest('abcdefgh', ['abcdefxy'], 1)).toEqual([]);
    expect(closest('abcdefgh', ['abcdefxy'], 2)).toEqual(['abcdefxy']);
  });
});

describe('suggestKey', () => {
  it.each([
    ['sse', 'grant_secert', [{ section: 'sse', key: 'grant_secret' }]],
    ['server', 'listn', [{ section: 'server', key: 'listen' }]],
    ['server', 'redis_url', [{ section: 'cluster', key: 'redis_url' }]],
    ['fastcgi', 'max_children', [{ section: 'fpm', key: 'max_children' }]],
    [
      'sse',
      'listen',
      [
        { section: 'server', key: 'listen' },
        { section: 'metrics', key: 'listen' },
      ],
    ],
    ['server', 'port', []],
  ])('[%s] %s', (section, key, expected) => {
    expect(suggestKey(section, key)).toEqual(expected);
  });

  it('words the hint for the section it was typed in', () => {
    expect(didYouMeanKey('sse', suggestKey('sse', 'grant_secert'))).toBe(
      'did you mean "grant_secret"?',
    );
    expect(didYouMeanKey('server', suggestKey('server', 'redis_url'))).toBe(
      'did you mean [cluster] redis_url? (that key belongs in another section)',
    );
    expect(didYouMeanKey('server', [])).toBe('');
  });
});

describe('sections', () => {
  it('suggests a section and names the sections of a key', () => {
    expect(suggestSection('servr')).toEqual(['server']);
    expect(suggestSection('nope')).toEqual([]);
    expect(sectionsWithKey('listen')).toEqual(['server', 'metrics']);
  });
});

describe('suggestEnvName', () => {
  it.each([
    ['ASKR_SERVR_LISTEN', 'ASKR_SERVER_LISTEN'],
    ['ASKR_SSE_GRANT_SECERT', 'ASKR_SSE_GRANT_SECRET'],
    ['ASKR_FASTCGI_ADRESS', 'ASKR_FASTCGI_ADDRESS'],
  ])('%s -> %s', (typed, meant) => expect(suggestEnvName(typed)).toBe(meant));

  // The PHP client reads these (php/): they are no typos of config keys.
  it.each([
    'ASKR_SOCKET',
    'ASKR_DEFAULT_SOCKET',
    'ASKR_MAX_DATAGRAM',
    'ASKR_MAX_CHANNELS',
    'ASKR_MAX_CHANNEL_NAME_LENGTH',
    'ASKR_MAX_ID_BYTES',
    'ASKR_SEND_TIMEOUT_SECONDS',
    'ASKR_THROW',
  ])('%s is not taken for a typo', (name) => expect(suggestEnvName(name)).toBeNull());
});
