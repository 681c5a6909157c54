/**
 * Finding the system programs the integration tests run (redis-server, mariadbd, ...): PATH
 * first, then the given system dirs, since sbin dirs are often not in a non-root PATH.
 */
import fs from 'node:fs';
import path from 'node:path';

/**
 * The first executable file named one of `names` (in that order of preference) in PATH, then
 * `extraDirs`; null when there is none.
 */
export function findProgram(names: readonly string[], extraDirs: readonly string[]): string | null {
  const dirs = [...(process.env['PATH'] ?? '').split(path.delimiter), ...extraDirs];
  for (const name of names) {
    for (const dir of dirs.filter((d) => d !== '')) {
      const file = path.join(dir, name);
      try {
        fs.accessSync(file, fs.constants.X_OK);
        if (fs.statSync(file).isFile()) return file;
      } catch {
        // Not in this directory: try the next one.
      }
    }
  }
  return null;
}
