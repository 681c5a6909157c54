/**
 * The Laravel fixture app (fixtures-php/laravel on Debian's php-laravel-framework) for the Laravel
 * tests: a private copy per test file, so its .env, SQLite file, storage/ and sidecar socket are
 * that file's own (the php-fpm is shared with other test files running at the same time). As in a
 * deploy, storage/, bootstrap/cache and database/ belong to PHP's user, and artisan runs as it.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { asPhpUser, givePhp } from './php-temp.ts';

const FIXTURE = fileURLToPath(new URL('../../fixtures-php/laravel', import.meta.url));
const PHP_PACKAGE = fileURLToPath(new URL('../../php', import.meta.url));
/** A file of Debian's php-laravel-framework: its absence means the package is not installed. */
export const LARAVEL = '/usr/share/php/Illuminate/Foundation/Application.php';
const run = promisify(execFile);

/** Throws an Error naming the missing packages and the fix when Laravel is not installed. */
export async function assertLaravelInstalled(): Promise<void> {
  if ((await stat(LARAVEL).catch(() => null)) === null) {
    throw new Error(
      `The Laravel tests need Debian's php-laravel-framework (${LARAVEL}) and php-sqlite3. ` +
        `Run "node scripts/ensure-system.mjs test" (as root it installs them).`,
    );
  }
}

/**
 * Copies the fixture app to `<tmp>/app` and returns that path: a fresh .env (new APP_KEY, the
 * askr broadcaster on `socket`, sync queue), a migrated and seeded SQLite database, askr-echo.js
 * published. vendor/askr/sidecar links to php/, as Composer's path repository does. `tmp` must
 * be searchable by PHP's workers (phpTempDir). Rejects when a copy or an artisan command fails.
 */
export async function makeLaravelApp(tmp: string, socket: string): Promise<string> {
  const app = join(tmp, 'app');
  await cp(FIXTURE, app, {
    recursive: true,
    // Leftovers of a run in place (.env, database, logs, published assets) are not copied.
    filter: async (src) => {
      const rel = relative(FIXTURE, src);
      if (/^(\.env|vendor|public\/vendor)$/.test(rel) || rel.endsWith('.sqlite')) return false;
      if (!/^(storage|bootstrap\/cache)\//.test(rel)) return true;
      return (await stat(src)).isDirectory() || rel.endsWith('.gitignore');
    },
  });
  await mkdir(join(app, 'vendor/askr'), { recursive: true });
  await symlink(PHP_PACKAGE, join(app, 'vendor/askr/sidecar'));
  const database = join(app, 'database/database.sqlite');
  await writeFile(database, '');
  await writeFile(
    join(app, '.env'),
    [
      'APP_ENV=local',
      `APP_KEY=base64:${randomBytes(32).toString('base64')}`,
      'APP_DEBUG=true',
      `DB_DATABASE=${database}`,
      `ASKR_SOCKET=${socket}`,
      'BROADCAST_DRIVER=askr',
      'QUEUE_CONNECTION=sync',
      '',
    ].join('\n'),
  );
  // PHP (www-data as root) writes logs, sessions, caches and the SQLite file (and its journal,
  // beside it): these belong to it, as `chown -R www-data storage bootstrap/cache` in a deploy.
  await givePhp(...['storage', 'bootstrap/cache', 'database'].map((dir) => join(app, dir)));
  await artisan(app, ['migrate', '--seed', '--force']);
  // A build step that writes into public/, which PHP may not: run as this process's user.
  await run('php', ['artisan', 'vendor:publish', '--tag=askr-js', '--force'], {
    cwd: app,
    timeout: 30_000,
  });
  return app;
}

/**
 * Runs `php artisan <args>` in `app` as PHP's workers run (asPhpUser: www-data as root, so what
 * it writes in storage/ stays writable by FPM), with this process's environment plus `env` (a real
 * environment variable wins over .env). Rejects, with `code`, `stdout` and `stderr` on the error,
 * when the command exits non-zero or runs longer than 30 s.
 */
export async function artisan(
  app: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ stdout: string; stderr: string }> {
  return run('php', ['artisan', ...args], {
    cwd: app,
    env: { ...process.env, ...env },
    timeout: 30_000,
    ...asPhpUser(),
  });
}
