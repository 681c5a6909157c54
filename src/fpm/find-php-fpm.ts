/**
 * Locates a php-fpm binary for the managed mode. Debian ships it versioned (/usr/sbin/php-fpm8.2),
 * the official Docker images unversioned (/usr/local/sbin/php-fpm): an unversioned one wins,
 * otherwise the highest version found in any searched directory. Pure file-system look-ups.
 */
import fs from 'node:fs';
import path from 'node:path';

const VERSIONED = /^php-fpm(\d+)\.(\d+)$/;

/** Directories searched when no binary is configured: PATH, then the sbin dirs FPM installs to. */
export function defaultSearchDirs(): string[] {
  const fromPath = (process.env['PATH'] ?? '').split(path.delimiter).filter((d) => d !== '');
  const dirs = [...fromPath, '/usr/sbin', '/usr/local/sbin'];
  return [...new Set(dirs.map((d) => path.resolve(d)))];
}

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    // ENOENT / EACCES: simply not a candidate; the caller reports what was searched.
    return false;
  }
}

/**
 * Returns the absolute path of the php-fpm binary to run, or null when none is found.
 * `explicit` non-empty: a path (absolute or with a slash) is used as is if executable; a bare name
 * is looked up in `searchDirs`. Empty: `php-fpm` in `searchDirs` first, then the highest
 * `php-fpmX.Y` (8.4 before 8.3 ... before 7.4); ties go to the earlier directory.
 */
export function findPhpFpm(
  explicit: string,
  searchDirs: readonly string[] = defaultSearchDirs(),
): string | null {
  if (explicit !== '') {
    if (explicit.includes('/')) {
      const abs = path.resolve(explicit);
      return isExecutableFile(abs) ? abs : null;
    }
    for (const dir of searchDirs) {
      const candidate = path.join(dir, explicit);
      if (isExecutableFile(candidate)) return candidate;
    }
    return null;
  }

  for (const dir of searchDirs) {
    const candidate = path.join(dir, 'php-fpm');
    if (isExecutableFile(candidate)) return candidate;
  }
  let best: { file: string; major: number; minor: number } | null = null;
  for (const dir of searchDirs) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      // A PATH entry that does not exist or is unreadable is common and harmless.
      continue;
    }
    for (const name of names) {
      const m = VERSIONED.exec(name);
      if (m === null) continue;
      const major = Number(m[1]);
      const minor = Number(m[2]);
      const newer =
        best === null || major > best.major || (major === best.major && minor > best.minor);
      const file = path.join(dir, name);
      if (newer && isExecutableFile(file)) best = { file, major, minor };
    }
  }
  return best?.file ?? null;
}
