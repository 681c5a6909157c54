/**
 * Auth of Pushpin-compatible publishing, against the headers @fanoutio/grip's own auth classes
 * build (JWT for control_iss + key, the bare key, Basic for user + pass): what must pass passes,
 * and each refusal says why. Config mistakes stop with a ConfigError naming the key.
 */
import { describe, expect, it } from 'vitest';
import { Auth, loadKey } from '@fanoutio/grip';
import { SignJWT } from 'jose';
import { GripAuth, type GripAuthConfig } from './grip-auth.ts';

const KEY = 'k'.repeat(32);
const NONE: GripAuthConfig = {
  publish_key: '',
  publish_iss: '',
  publish_user: '',
  publish_password: '',
};

function auth(config: Partial<GripAuthConfig>): GripAuth {
  return new GripAuth({ ...NONE, ...config });
}

/** The header PublisherClient sends for control_iss + key. */
function jwtHeader(iss: string, key: string): Promise<string> {
  return new Auth.Jwt({ iss }, loadKey(key)).buildHeader();
}

describe('GripAuth', () => {
  it('is off with nothing configured', () => {
    expect(auth({}).enabled).toBe(false);
    expect(auth({ publish_key: KEY }).enabled).toBe(true);
    expect(auth({ publish_user: 'u', publish_password: 'p' }).enabled).toBe(true);
  });

  it("accepts the Publisher's JWT (control_iss + key), checking iss when configured", async () => {
    expect(await auth({ publish_key: KEY }).check(await jwtHeader('any', KEY))).toBeNull();
    const strict = auth({ publish_key: KEY, publish_iss: 'realm' });
    expect(await strict.check(await jwtHeader('realm', KEY))).toBeNull();
    expect(await strict.check(await jwtHeader('other', KEY))).toBe(
      'the publish JWT has another iss than grip.publish_iss',
    );
    expect(await strict.check(await jwtHeader('realm', 'x'.repeat(32)))).toBe(
      'the publish JWT is not signed with grip.publish_key',
    );
  });

  it('accepts a "base64:" key as the Publisher decodes it', async () => {
    const bytes = Buffer.from([0, 1, 2, 250, 251, 252]);
    const key = `base64:${bytes.toString('base64')}`;
    expect(await auth({ publish_key: key }).check(await jwtHeader('r', key))).toBeNull();
  });

  it('accepts the bare key as a bearer token (Publisher with key, no control_iss)', async () => {
    const header = await new Auth.Bearer(KEY).buildHeader();
    expect(await auth({ publish_key: KEY }).check(header)).toBeNull();
    expect(await auth({ publish_key: KEY, publish_iss: 'r' }).check(header)).toBe(
      'a bare bearer token is refused while grip.publish_iss is set: give the publisher control_iss so it signs a JWT',
    );
    expect(await auth({ publish_key: KEY }).check('Bearer nope')).toBe(
      'the bearer token is neither a JWT nor grip.publish_key',
    );
  });

  it('refuses an expired JWT, one without exp, and alg none', async () => {
    const key = new TextEncoder().encode(KEY);
    const expired = await new SignJWT({ iss: 'r' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(Math.floor(Date.now() / 1000) - 120)
      .sign(key);
    const a = auth({ publish_key: KEY });
    expect(await a.check(`Bearer ${expired}`)).toBe(
      "the publish JWT has expired (exp); check the publisher's clock",
    );
    const noExp = await new SignJWT({ iss: 'r' }).setProtectedHeader({ alg: 'HS256' }).sign(key);
    expect(await a.check(`Bearer ${noExp}`)).toBe('the publish JWT has no exp claim');
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"iss":"r"}').toString('base64url')}.`;
    expect(await a.check(`Bearer ${none}`)).toBe(
      "the publish JWT's alg is not accepted (HS256, HS384, HS512 with grip.publish_key)",
    );
  });

  it("accepts the Publisher's Basic credentials (user + pass) and refuses others", async () => {
    const a = auth({ publish_user: 'pub', publish_password: 's3cret:with:colons' });
    expect(
      await a.check(await new Auth.Basic('pub', 's3cret:with:colons').buildHeader()),
    ).toBeNull();
    expect(await a.check(await new Auth.Basic('pub', 'wrong').buildHeader())).toBe(
      'the Basic credentials do not match grip.publish_user / grip.publish_password',
    );
    expect(await a.check('Basic !!')).toBe(
      'the Basic credentials are not base64 of "user:password"',
    );
    expect(await a.check(await new Auth.Bearer(KEY).buildHeader())).toBe(
      'Bearer auth is off (grip.publish_key is empty)',
    );
  });

  it('names what to send when the header is missing or of another scheme', async () => {
    const both = auth({ publish_key: KEY, publish_user: 'u', publish_password: 'p' });
    expect(await both.check(undefined)).toBe(
      'no Authorization header: send Bearer: a JWT signed with grip.publish_key, or the key itself; or Basic: grip.publish_user and grip.publish_password',
    );
    expect(await both.check('Digest x')).toBe(
      'the Authorization scheme is neither Bearer nor Basic: send Bearer: a JWT signed with grip.publish_key, or the key itself; or Basic: grip.publish_user and grip.publish_password',
    );
    expect(both.challenges()).toEqual([
      'Bearer realm="askr-grip"',
      'Basic realm="askr-grip", charset="UTF-8"',
    ]);
  });

  it.each<[string, Partial<GripAuthConfig>, string]>([
    [
      'user without password',
      { publish_user: 'u' },
      'grip.publish_user and grip.publish_password go together',
    ],
    [
      'password without user',
      { publish_password: 'p' },
      'grip.publish_user and grip.publish_password go together',
    ],
    [
      'iss without key',
      { publish_iss: 'r' },
      'grip.publish_iss is set but grip.publish_key is empty',
    ],
    [
      'a PEM key',
      { publish_key: '-----BEGIN PUBLIC KEY-----\nx' },
      'grip.publish_key: PEM keys are not supported',
    ],
    [
      'bad base64',
      { publish_key: 'base64:%%%' },
      'grip.publish_key: "base64:" is not followed by base64',
    ],
  ])('refuses the config: %s', (_name, config, message) => {
    expect(() => auth(config)).toThrow(message);
  });
});
