/** The package version, read once from package.json (shown by --version and in SERVER_SOFTWARE). */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    if (typeof pkg.version === 'string') return pkg.version;
  } catch {
    // dist/ layout: one level deeper.
  }
  try {
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version?: unknown };
    if (typeof pkg.version === 'string') return pkg.version;
  } catch {
    // Fall through: an unknown version never stops the server.
  }
  return '0.0.0';
}

export const VERSION = readVersion();
