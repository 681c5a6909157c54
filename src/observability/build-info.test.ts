/**
 * Unit tests of build-info.ts: the git revision read from a checkout's metadata in each layout git
 * writes (loose ref, packed-refs, detached HEAD, a worktree sharing the main repository's refs),
 * "unknown" without one, and the ASKR_BUILD_COMMIT given by an image build winning over both.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VERSION } from '../version.ts';
import { gitRevision, readBuildInfo } from './build-info.ts';

const A = 'a'.repeat(40);
const B = '0123456789abcdef0123456789abcdef01234567';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A temp dir holding `files` (path relative to it -> content). */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'askr-build-info-'));
  dirs.push(root);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

describe('gitRevision', () => {
  it.each([
    [
      'a branch with a loose ref',
      { '.git/HEAD': 'ref: refs/heads/main\n', '.git/refs/heads/main': `${A}\n` },
      A,
    ],
    [
      'a branch in packed-refs',
      {
        '.git/HEAD': 'ref: refs/heads/main\n',
        '.git/packed-refs': `# pack-refs with: peeled fully-peeled sorted\n${B} refs/heads/other\n${A} refs/heads/main\n`,
      },
      A,
    ],
    ['a detached HEAD', { '.git/HEAD': `${B}\n` }, B],
    ['a ref that points nowhere', { '.git/HEAD': 'ref: refs/heads/gone\n' }, null],
    ['a HEAD that is no ref', { '.git/HEAD': 'nonsense\n' }, null],
    ['a ref climbing out of .git', { '.git/HEAD': 'ref: refs/../../etc/passwd\n' }, null],
    ['no .git at all', { 'package.json': '{}' }, null],
  ])('%s', (_name, files, expected) => {
    expect(gitRevision(tree(files))).toBe(expected);
  });

  it('follows a worktree to its own HEAD and the main repository refs', () => {
    const main = tree({
      '.git/HEAD': 'ref: refs/heads/main\n',
      '.git/refs/heads/main': `${A}\n`,
      '.git/refs/heads/feature': `${B}\n`,
      '.git/worktrees/wt/HEAD': 'ref: refs/heads/feature\n',
      '.git/worktrees/wt/commondir': '../..\n',
    });
    const worktree = tree({ '.git': `gitdir: ${join(main, '.git/worktrees/wt')}\n` });
    expect(gitRevision(worktree)).toBe(B);
  });
});

describe('readBuildInfo', () => {
  const checkout = (): string =>
    tree({ '.git/HEAD': 'ref: refs/heads/main\n', '.git/refs/heads/main': `${A}\n` });

  it('reports the package version, the Node version and the checkout revision', () => {
    expect(readBuildInfo({}, checkout())).toEqual({
      version: VERSION,
      nodeVersion: process.version,
      revision: A,
    });
  });

  it('prefers ASKR_BUILD_COMMIT from the build, lowercased, and ignores one that is no hash', () => {
    expect(readBuildInfo({ ASKR_BUILD_COMMIT: 'ABCDEF1' }, checkout()).revision).toBe('abcdef1');
    expect(readBuildInfo({ ASKR_BUILD_COMMIT: 'main; rm -rf' }, checkout()).revision).toBe(A);
  });

  it('says "unknown" without a checkout or a given commit', () => {
    expect(readBuildInfo({}, tree({})).revision).toBe('unknown');
  });
});
