import { describe, expect, it } from 'vitest';
import { redactTarget } from './log-redact.ts';

describe('redactTarget', () => {
  it('replaces the values of credential parameters and keeps everything else byte for byte', () => {
    expect(redactTarget('/askr/events?channel=a&grant=eyJ2Ijo.sig&channel=b')).toBe(
      '/askr/events?channel=a&grant=REDACTED&channel=b',
    );
    expect(redactTarget('/.well-known/mercure?topic=x&authorization=t.o.k')).toBe(
      '/.well-known/mercure?topic=x&authorization=REDACTED',
    );
    expect(redactTarget('/p?Access_Token=abc')).toBe('/p?Access_Token=REDACTED');
    expect(redactTarget('/p?%67rant=abc')).toBe('/p?%67rant=REDACTED');
  });

  it('leaves targets without credentials untouched', () => {
    for (const t of ['/', '/a/b?x=1&y=%zz', '/p?grant', '/p?granted=1', '/index.php?q=grant=1']) {
      expect(redactTarget(t)).toBe(t);
    }
  });
});
