// Unit tests of the php-fpm search order, on fake executables in temp directories.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findPhpFpm } from './find-php-fpm.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function dirWith(...names: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'askr-find-fpm-'));
  dirs.push(dir);
  for (const name of names) fs.writeFileSync(path.join(dir, name), '#!/bin/sh\n', { mode: 0o755 });
  return dir;
}

describe('findPhpFpm', () => {
  it('prefers an unversioned php-fpm in any directory', () => {
    const a = dirWith('php-fpm8.4');
    const b = dirWith('php-fpm');
    expect(findPhpFpm('', [a, b])).toBe(path.join(b, 'php-fpm'));
  });

  it('picks the highest version across directories, comparing numerically', () => {
    const a = dirWith('php-fpm7.4', 'php-fpm8.2');
    const b = dirWith('php-fpm8.10', 'php-fpm8.3', 'php-fpm-not-a-version');
    expect(findPhpFpm('', [a, b])).toBe(path.join(b, 'php-fpm8.10'));
    expect(findPhpFpm('', [a])).toBe(path.join(a, 'php-fpm8.2'));
  });

  it('skips non-executable files and missing directories', () => {
    const a = dirWith('php-fpm8.1');
    fs.writeFileSync(path.join(a, 'php-fpm8.3'), '', { mode: 0o644 });
    expect(findPhpFpm('', ['/nonexistent/dir', a])).toBe(path.join(a, 'php-fpm8.1'));
    expect(findPhpFpm('', ['/nonexistent/dir'])).toBeNull();
  });

  it('uses an explicit path as is, and looks a bare explicit name up in the directories', () => {
    const a = dirWith('php-fpm8.1', 'php-fpm8.3');
    expect(findPhpFpm(path.join(a, 'php-fpm8.1'), [])).toBe(path.join(a, 'php-fpm8.1'));
    expect(findPhpFpm('php-fpm8.1', [a])).toBe(path.join(a, 'php-fpm8.1'));
    expect(findPhpFpm(path.join(a, 'php-fpm9.9'), [a])).toBeNull();
    expect(findPhpFpm('php-fpm9.9', [a])).toBeNull();
  });
});
