/**
 * Temp directories and files PHP uses in the integration tests. PHP never runs as root (issue 14):
 * run as root, the tests' php-fpm pools run their workers as www-data, as a stock pool does, and a
 * mkdtemp directory (0700, root's) is closed to them. These helpers open what PHP needs and no
 * more, as a deploy does: search and read for sockets and code, ownership for what PHP writes.
 */
import fs from 'node:fs';
import { chmod, lchown, lstat, mkdtemp, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolvePhpIdentity, type PhpIdentity } from '../../src/fpm/php-identity.ts';

let workers: PhpIdentity | null | undefined;

/**
 * Who PHP's workers run as in these tests: as root, the identity a managed pool with default
 * settings resolves (www-data, or nobody where the system has none), the one the shared php-fpm
 * of global-setup.ts and startTestFpm run; undefined when not root (FPM cannot switch users, so
 * PHP runs as this process's user and needs nothing opened). Throws as resolvePhpIdentity does.
 */
export function phpWorkers(): PhpIdentity | undefined {
  if (workers === undefined) {
    workers =
      process.getuid?.() === 0
        ? resolvePhpIdentity(
            { user: '', group: '' },
            {
              passwd: fs.readFileSync('/etc/passwd', 'utf8'),
              group: fs.readFileSync('/etc/group', 'utf8'),
            },
          ).identity
        : null;
  }
  return workers ?? undefined;
}

/**
 * A new private temp dir (mkdtemp under the OS temp dir, `prefix` as mkdtemp takes it) that PHP's
 * workers may search and read: mode 0755 (mkdtemp makes 0700, which shuts out www-data from a
 * datagram socket, a copied app or fixtures inside it; files written with the default umask are
 * 0644). PHP may not write in it: givePhp() what it must write. Resolves its path.
 */
export async function phpTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}

/**
 * Gives each of `paths` (a directory with everything in it, or a file) to PHP's user and group,
 * as a deploy chowns storage/ or uploads/ to www-data: PHP writes there while the directory is not
 * world-writable. Symbolic links are changed themselves, never followed out of the tree. Does
 * nothing when not root (PHP runs as this process's user). Rejects when a chown fails.
 */
export async function givePhp(...paths: string[]): Promise<void> {
  const who = phpWorkers();
  if (who === undefined) return;
  const give = async (p: string, isDir: boolean): Promise<void> => {
    await lchown(p, who.uid, who.gid);
    if (!isDir) return;
    for (const entry of await readdir(p, { withFileTypes: true })) {
      await give(path.join(p, entry.name), entry.isDirectory());
    }
  };
  for (const p of paths) {
    const st = await lstat(p);
    if (st.isSymbolicLink()) await lchown(p, who.uid, who.gid);
    else await give(p, st.isDirectory());
  }
}

/**
 * Options for child_process that run a PHP CLI command as PHP's workers do (`sudo -u www-data php
 * artisan ...`, or a worker container running as www-data): what it writes (logs, caches, the
 * SQLite file) stays writable by FPM's workers. Empty when not root.
 */
export function asPhpUser(): { uid?: number; gid?: number } {
  const who = phpWorkers();
  return who === undefined ? {} : { uid: who.uid, gid: who.gid };
}
