/**
 * CGI head parsing as php-fpm emits it: CRLF and bare LF, Status, repeated Set-Cookie, a head split
 * across chunks at every offset, and malformed input from a broken or hostile FPM.
 */
import { describe, expect, it } from 'vitest';
import { CgiHeadParser } from './cgi-head.ts';

const sample =
  'Status: 404 Not Found\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-type: text/html; charset=UTF-8\r\n\r\nbody\r\n\r\nmore';

describe('CgiHeadParser', () => {
  it('parses status, repeated headers and keeps the body bytes', () => {
    const r = new CgiHeadParser(1024).push(Buffer.from(sample));
    expect(r.done).toBe(true);
    if (!r.done) return;
    expect(r.head.status).toBe(404);
    expect(r.head.statusText).toBe('Not Found');
    expect(r.head.headers).toEqual([
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
      ['Content-type', 'text/html; charset=UTF-8'],
    ]);
    expect(r.rest.toString()).toBe('body\r\n\r\nmore');
  });

  it('gives the same result for every split point', () => {
    const whole = Buffer.from(sample);
    for (let i = 1; i < whole.length; i++) {
      const p = new CgiHeadParser(1024);
      const a = p.push(whole.subarray(0, i));
      const r = a.done ? a : p.push(whole.subarray(i));
      expect(r.done, `split at ${i}`).toBe(true);
      if (!r.done) continue;
      const rest = a.done ? Buffer.concat([a.rest, whole.subarray(i)]) : r.rest;
      expect(r.head.status).toBe(404);
      expect(rest.toString()).toBe('body\r\n\r\nmore');
    }
  });

  it('accepts bare LF line ends', () => {
    const r = new CgiHeadParser(1024).push(Buffer.from('X-A: 1\nContent-Type: text/plain\n\nhi'));
    expect(r.done && r.head.headers.length === 2 && r.rest.toString() === 'hi').toBe(true);
  });

  it('defaults to 200, and 302 for a Location without Status', () => {
    const a = new CgiHeadParser(1024).push(Buffer.from('Content-Type: text/plain\r\n\r\n'));
    expect(a.done && a.head.status).toBe(200);
    const b = new CgiHeadParser(1024).push(Buffer.from('Location: /x\r\n\r\n'));
    expect(b.done && b.head.status).toBe(302);
  });

  it('finish() accepts a head with no blank line (headers only)', () => {
    const p = new CgiHeadParser(1024);
    expect(p.push(Buffer.from('Status: 204\r\n')).done).toBe(false);
    const r = p.finish();
    expect(r.done && r.head.status).toBe(204);
  });

  it.each([
    ['no colon\r\n\r\n', /malformed header line/],
    ['Bad Name: x\r\n\r\n', /invalid header name/],
    ['Status: abc\r\n\r\n', /invalid Status header/],
    ['Status: 42\r\n\r\n', /invalid Status header/],
  ])('rejects %j', (input, message) => {
    const r = new CgiHeadParser(1024).push(Buffer.from(input));
    expect(r.done).toBe(false);
    expect('error' in r && r.error).toMatch(message);
  });

  it('bounds the head size', () => {
    const r = new CgiHeadParser(64).push(Buffer.from(`X-Big: ${'a'.repeat(100)}`));
    expect('error' in r && r.error).toMatch(/exceed 64 bytes/);
  });
});
