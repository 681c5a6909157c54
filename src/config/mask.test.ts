/**
 * Secrets never leave through a printed config or an error message: every key whose name says
 * secret is marked in the schema, marked values show "****", URL passwords and secret-named
 * table entries are masked. A recurrence looks like a token in `check-config --print` output.
 */
import { describe, expect, it } from 'vitest';
import { describeValue, isSecretName, maskValue, MASK } from './mask.ts';
import { schema, type Field } from './schema.ts';

const fields = Object.entries(schema).flatMap(([section, f]) =>
  Object.entries(f as Record<string, Field>).map(([key, field]) => ({ section, key, field })),
);
const field = (section: string, key: string): Field | undefined =>
  fields.find((f) => f.section === section && f.key === key)?.field;

describe('schema secret marks', () => {
  it('marks every key whose name holds a secret, token, key or password', () => {
    const named = fields.filter(({ key }) => /secret|_token$|password|(^|_)key$|_url$/.test(key));
    const unmarked = named.filter(({ field: f }) => f.secret === undefined);
    expect(unmarked.map((f) => `${f.section}.${f.key}`)).toEqual([]);
    expect(named.map((f) => `${f.section}.${f.key}`)).toEqual([
      'sse.publish_token',
      'sse.grant_secret',
      'cluster.redis_url',
      'mercure.jwt_key',
      'mercure.publisher_jwt_key',
      'mercure.subscriber_jwt_key',
      'grip.publish_key',
      'grip.publish_password',
    ]);
  });
});

describe('maskValue', () => {
  it('masks a set secret, keeping its length as a hint', () => {
    expect(maskValue(field('sse', 'grant_secret'), 'x'.repeat(64))).toEqual({
      value: MASK,
      note: 'secret, set: 64 characters',
    });
  });
  it('shows an empty secret as empty: "not set" is no secret', () => {
    expect(maskValue(field('grip', 'publish_key'), '')).toEqual({ value: '', note: null });
  });
  it('masks the password of a URL and keeps the rest', () => {
    expect(maskValue(field('cluster', 'redis_url'), 'redis://:hunter2@redis:6379/0')).toEqual({
      value: 'redis://:***@redis:6379/0',
      note: 'secrets masked',
    });
    expect(
      maskValue(field('proxy', 'routes'), { '/app/': 'http://u:pw@127.0.0.1:6001' }).value,
    ).toEqual({ '/app/': 'http://u:***@127.0.0.1:6001' });
  });
  it('masks table entries whose name says secret (fpm.env)', () => {
    expect(
      maskValue(field('fpm', 'env'), { DB_PASSWORD: 'pw', APP_KEY: 'base64:x', APP_ENV: 'prod' }),
    ).toEqual({
      value: { DB_PASSWORD: MASK, APP_KEY: MASK, APP_ENV: 'prod' },
      note: 'secrets masked',
    });
  });
  it('leaves other values alone', () => {
    expect(maskValue(field('server', 'listen'), '127.0.0.1:8080')).toEqual({
      value: '127.0.0.1:8080',
      note: null,
    });
  });
  it.each(['API_TOKEN', 'db_pwd', 'STRIPE_SECRET', 'AWS_SECRET_ACCESS_KEY', 'APP_KEY'])(
    '%s is a secret name',
    (name) => expect(isSecretName(name)).toBe(true),
  );
});

describe('describeValue', () => {
  it('never prints a secret, whatever its type', () => {
    expect(describeValue(field('sse', 'grant_secret'), 'hunter2')).toBe(MASK);
    expect(describeValue(field('sse', 'grant_secret'), 42)).toBe(MASK);
    expect(describeValue(field('cluster', 'redis_url'), 'redis://:hunter2@h:1')).not.toContain(
      'hunter2',
    );
    expect(describeValue(field('server', 'listen'), 8080)).toBe('8080');
  });
});
