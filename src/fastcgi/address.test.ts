// FastCGI address forms accepted by `fastcgi.address`, and the ones refused at start.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { parseFcgiAddress } from './address.ts';

describe('parseFcgiAddress', () => {
  it.each([
    ['unix:/run/php/php-fpm.sock', { kind: 'unix', path: '/run/php/php-fpm.sock' }],
    ['unix:relative.sock', { kind: 'unix', path: 'relative.sock' }],
    ['127.0.0.1:9000', { kind: 'tcp', host: '127.0.0.1', port: 9000 }],
    ['php:9000', { kind: 'tcp', host: 'php', port: 9000 }],
    ['[::1]:9000', { kind: 'tcp', host: '::1', port: 9000 }],
    ['[fe80::1%eth0]:65535', { kind: 'tcp', host: 'fe80::1%eth0', port: 65535 }],
  ])('%s', (address, expected) => {
    expect(parseFcgiAddress(address)).toEqual(expected);
  });

  it.each([
    '',
    'unix:',
    '127.0.0.1',
    '::1:9000',
    '127.0.0.1:0',
    'host:65536',
    'host:port',
    '[::1]',
  ])('refuses %j with a ConfigError', (address) => {
    expect(() => parseFcgiAddress(address)).toThrow(ConfigError);
  });
});
