// Where a request presents an access token (spec "Presenting the Access Token", RFC 6750 section
// 2) and the Bearer challenge (RFC 6750 section 3). A regression here looks like a token read from
// the wrong place, a malformed presentation accepted, or a challenge header that can be injected.
import { describe, expect, it } from 'vitest';
import { HUB } from '../../test/helpers/token-fixtures.ts';
import { AuthError, bearerChallenge, tokenOf } from './token-presentation.ts';

describe('tokenOf', () => {
  const url = (query = ''): URL => new URL(`${HUB}${query}`);
  const opts = {
    cookieName: '__Secure-mercure_access_token',
    compatibility: false,
    maxTokenSize: 64,
  };
  const compat = { ...opts, compatibility: true };
  const T = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';

  /** A request as node:http parses it: repeated Authorization keeps the first, cookies are joined. */
  function request(pairs: [string, string][]): {
    headers: Record<string, string>;
    rawHeaders: string[];
  } {
    const headers: Record<string, string> = {};
    for (const [name, value] of pairs) {
      const key = name.toLowerCase();
      if (key === 'cookie' && headers['cookie'] !== undefined) headers['cookie'] += `; ${value}`;
      else headers[key] ??= value;
    }
    return { headers, rawHeaders: pairs.flat() };
  }

  it.each([['Bearer'], ['bearer'], ['BEARER']])('reads Authorization: %s <token>', (scheme) => {
    expect(tokenOf(request([['Authorization', `${scheme} ${T}`]]), url(), opts)).toEqual({
      token: T,
      via: 'header',
    });
  });

  it('the header wins over the cookie', () => {
    const req = request([
      ['Cookie', `__Secure-mercure_access_token=${T}x`],
      ['Authorization', `Bearer ${T}`],
    ]);
    expect(tokenOf(req, url(), opts)).toEqual({ token: T, via: 'header' });
  });

  it('reads the named cookie among others, quoted or not', () => {
    expect(
      tokenOf(request([['Cookie', `a=1; __Secure-mercure_access_token=${T}; b=2`]]), url(), opts),
    ).toEqual({ token: T, via: 'cookie' });
    expect(
      tokenOf(
        request([
          ['Cookie', 'a=1'],
          ['Cookie', `__Secure-mercure_access_token="${T}"`],
        ]),
        url(),
        opts,
      ),
    ).toEqual({ token: T, via: 'cookie' });
  });

  it('null when nothing is presented; an empty (cleared) cookie counts as none', () => {
    expect(tokenOf(request([]), url(), opts)).toBeNull();
    expect(
      tokenOf(request([['Cookie', '__Secure-mercure_access_token=; other=x']]), url(), opts),
    ).toBeNull();
    expect(tokenOf(request([['Cookie', `mercure_access_token=${T}`]]), url(), opts)).toBeNull();
  });

  it('0.x sources only in compatibility mode, after the configured cookie', () => {
    const legacyCookie = request([['Cookie', `mercureAuthorization=${T}`]]);
    expect(tokenOf(legacyCookie, url(), opts)).toBeNull();
    expect(tokenOf(legacyCookie, url(), compat)).toEqual({ token: T, via: 'cookie' });
    expect(tokenOf(request([]), url(`?authorization=${T}`), opts)).toBeNull();
    expect(tokenOf(request([]), url(`?authorization=${T}`), compat)).toEqual({
      token: T,
      via: 'query',
    });
    const both = request([
      ['Cookie', `mercureAuthorization=${T}legacy; __Secure-mercure_access_token=${T}`],
    ]);
    expect(tokenOf(both, url(`?authorization=${T}query`), compat)).toEqual({
      token: T,
      via: 'cookie',
    });
    expect(tokenOf(legacyCookie, url(`?authorization=${T}query`), compat)).toEqual({
      token: T,
      via: 'cookie',
    });
  });

  it.each<[string, [string, string][], string, typeof opts, RegExp]>([
    ['a non-Bearer scheme', [['Authorization', `Basic ${T}`]], '', opts, /scheme "Basic"/],
    ['an empty Authorization', [['Authorization', '']], '', opts, /empty Authorization/],
    ['Bearer without a token', [['Authorization', 'Bearer']], '', opts, /without a token/],
    ['Bearer and spaces', [['Authorization', 'Bearer   ']], '', opts, /without a token/],
    [
      'two Authorization headers',
      [
        ['Authorization', `Bearer ${T}`],
        ['authorization', `Bearer ${T}`],
      ],
      '',
      opts,
      /several Authorization/,
    ],
    ['a token with a space inside', [['Authorization', `Bearer ${T} x`]], '', opts, /b64token/],
    [
      'a header token over max_token_size',
      [['Authorization', `Bearer ${'a'.repeat(65)}`]],
      '',
      opts,
      /65 bytes, over max_token_size 64/,
    ],
    [
      'a cookie token over max_token_size',
      [['Cookie', `__Secure-mercure_access_token=${'a'.repeat(65)}`]],
      '',
      opts,
      /cookie is 65 bytes/,
    ],
    [
      'a cookie token with bad characters',
      [['Cookie', '__Secure-mercure_access_token=a,b']],
      '',
      opts,
      /b64token/,
    ],
    [
      'two authorization query parameters',
      [],
      `?authorization=${T}&authorization=${T}`,
      compat,
      /several authorization/,
    ],
  ])('400 invalid_request: %s', (_name, pairs, query, options, reason) => {
    let err: unknown;
    try {
      tokenOf(request(pairs), url(query), options);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AuthError);
    expect(err).toMatchObject({ status: 400, error: 'invalid_request' });
    expect((err as AuthError).message).toMatch(reason);
  });
});

describe('bearerChallenge', () => {
  it.each<[Parameters<typeof bearerChallenge>[0], string]>([
    [{}, 'Bearer'],
    [
      {
        error: null,
        resourceMetadata:
          'https://hub.example.com/.well-known/oauth-protected-resource/.well-known/mercure',
      },
      'Bearer resource_metadata="https://hub.example.com/.well-known/oauth-protected-resource/.well-known/mercure"',
    ],
    [{ error: 'invalid_token' }, 'Bearer error="invalid_token"'],
    [
      {
        error: 'insufficient_scope',
        description: 'no publish grant',
        resourceMetadata: 'https://h/m',
      },
      'Bearer error="insufficient_scope", error_description="no publish grant", resource_metadata="https://h/m"',
    ],
    [
      { error: 'invalid_request', description: 'a "quoted" \\ value' },
      'Bearer error="invalid_request", error_description="a \\"quoted\\" \\\\ value"',
    ],
    [{ description: 'line\r\nbreak\u00e9' }, 'Bearer error_description="line  break "'],
  ])('%j', (opts, expected) => {
    expect(bearerChallenge(opts)).toBe(expected);
  });
});
