/**
 * What askr_build_info reports: the package version, the Node version running it and the git
 * commit of the code. The commit is ASKR_BUILD_COMMIT when the image build set it, else read from
 * the .git of a source checkout (no `git` process: HEAD, loose refs, packed-refs, worktrees),
 * else "unknown" (an npm package or an image built without it). Read once; never throws.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../version.ts';

export interface BuildInfo {
  /** package.json's version. */
  version: string;
  /** process.version, e.g. "v24.1.0". */
  nodeVersion: string;
  /** The full git commit hash (hex), or "unknown". */
  revision: string;
}

const HASH = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
/** A commit given by the build (`docker build --build-arg`): abbreviated hashes are accepted. */
const GIVEN_HASH = /^[0-9a-f]{7,64}$/;
/** Packaged as src/observability/ or dist/observability/: the package root is two levels up. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The commit `root`'s checkout is at, or null when `root` is no git checkout or its metadata is
 * not readable as expected (the label then says "unknown": the build info never stops a start).
 */
export function gitRevision(root: string): string | null {
  try {
    let gitDir = join(root, '.git');
    if (statSync(gitDir).isFile()) {
      // A worktree or a submodule: ".git" is a file naming the real directory.
      const target = /^gitdir: (.+)$/m.exec(readFileSync(gitDir, 'utf8'))?.[1];
      if (target === undefined) return null;
      gitDir = resolve(root, target.trim());
    }
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (HASH.test(head)) return head; // detached HEAD
    const ref = /^ref: (refs\/[\w./-]+)$/.exec(head)?.[1];
    if (ref === undefined || ref.includes('..')) return null;
    // A worktree has its own HEAD but shares the refs of the main repository (its commondir).
    const commonFile = join(gitDir, 'commondir');
    const common = existsSync(commonFile)
      ? resolve(gitDir, readFileSync(commonFile, 'utf8').trim())
      : gitDir;
    for (const dir of new Set([gitDir, common])) {
      const loose = join(dir, ref);
      if (!existsSync(loose)) continue;
      const hash = readFileSync(loose, 'utf8').trim();
      return HASH.test(hash) ? hash : null;
    }
    const packedFile = join(common, 'packed-refs');
    if (!existsSync(packedFile)) return null;
    for (const line of readFileSync(packedFile, 'utf8').split('\n')) {
      const [hash = '', name] = line.trim().split(' ');
      if (name === ref && HASH.test(hash)) return hash;
    }
    return null;
  } catch {
    // No .git (an npm package, an image), or unreadable: the revision is unknown, not an error.
    return null;
  }
}

/** The build info of this process; `env` and `root` are parameters for the tests. */
export function readBuildInfo(
  env: NodeJS.ProcessEnv = process.env,
  root: string = PACKAGE_ROOT,
): BuildInfo {
  const given = (env['ASKR_BUILD_COMMIT'] ?? '').trim().toLowerCase();
  const revision = GIVEN_HASH.test(given) ? given : (gitRevision(root) ?? 'unknown');
  return { version: VERSION, nodeVersion: process.version, revision };
}
