#!/usr/bin/env node
// Ensures the system programs a mode needs are installed: `node scripts/ensure-system.mjs <mode>`.
// Checks files only (fast, silent) when everything is present; otherwise, as root with apt-get,
// installs Debian's packages (one `apt-get update`, one install), else exits 1 naming the command.
// Plain JS without dependencies: it runs under the system Node (20) before `npm ci` is useful.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';

/**
 * Debian package -> what proves it is installed, and the modes that need it. Add rows here.
 * `bin`: a program name searched in PATH and the sbin dirs; `file`: an absolute path;
 * `match`: a file-name pattern searched in the same dirs (versioned binaries).
 */
const PACKAGES = [
  {
    pkg: 'php-fpm',
    match: /^php-fpm(\d+\.\d+)?$/,
    shows: 'php-fpm8.x',
    modes: ['php', 'test', 'bench'],
  },
  { pkg: 'php-cli', bin: 'php', modes: ['php', 'test', 'bench'] },
  { pkg: 'redis-server', bin: 'redis-server', modes: ['test', 'bench'] },
  { pkg: 'chromium', bin: 'chromium', modes: ['test', 'bench'] },
  { pkg: 'prometheus', bin: 'promtool', modes: ['test', 'bench'] },
  // The Laravel integration tests run a real Laravel 8 app on Debian's framework package.
  {
    pkg: 'php-laravel-framework',
    file: '/usr/share/php/Illuminate/Foundation/Application.php',
    modes: ['test'],
  },
  { pkg: 'php-sqlite3', file: '/usr/share/doc/php-sqlite3', modes: ['test'] },
  // The WordPress tests run Debian's real WordPress on a private MariaDB behind the sidecar.
  { pkg: 'mariadb-server', bin: 'mariadbd', modes: ['test'] },
  { pkg: 'wordpress', file: '/usr/share/wordpress/wp-settings.php', modes: ['test'] },
  // Recommended by wordpress (skipped by --no-install-recommends): its default theme.
  {
    pkg: 'wordpress-theme-twentytwentythree',
    file: '/usr/share/wordpress/wp-content/themes/twentytwentythree/style.css',
    modes: ['test'],
  },
  { pkg: 'php-mysql', file: '/usr/share/doc/php-mysql', modes: ['test'] },
  // test/mercure-symfony.test.ts publishes with Symfony's Mercure component (0.6, Hub + Update),
  // which sends over Symfony HttpClient (a dependency of the package; listed so that a missing
  // transport is named here rather than as a PHP autoload error).
  {
    pkg: 'php-symfony-mercure',
    file: '/usr/share/php/Symfony/Component/Mercure/autoload.php',
    modes: ['test'],
  },
  {
    pkg: 'php-symfony-http-client',
    file: '/usr/share/php/Symfony/Component/HttpClient/autoload.php',
    modes: ['test'],
  },
  // test/nginx-parity.test.ts runs nginx with each app's documented config beside the sidecar.
  { pkg: 'nginx-light', file: '/usr/sbin/nginx', modes: ['test', 'bench'] },
  {
    pkg: 'libnginx-mod-nchan',
    file: '/usr/lib/nginx/modules/ngx_nchan_module.so',
    modes: ['bench'],
  },
  { pkg: 'wrk', bin: 'wrk', modes: ['bench'] },
  // bench:browser compares GRIP publishing with Pushpin (Debian 12: 1.36).
  { pkg: 'pushpin', bin: 'pushpin', modes: ['bench'] },
];

const MODES = [...new Set(PACKAGES.flatMap((p) => p.modes))];

function searchDirs() {
  const fromPath = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  return [
    ...new Set([
      ...fromPath,
      '/usr/local/sbin',
      '/usr/local/bin',
      '/usr/sbin',
      '/usr/bin',
      '/sbin',
      '/bin',
    ]),
  ];
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function isPresent(entry, dirs) {
  if (entry.file !== undefined) return fs.existsSync(entry.file);
  for (const dir of dirs) {
    if (entry.bin !== undefined && isExecutable(path.join(dir, entry.bin))) return true;
    if (entry.match !== undefined) {
      let names = [];
      try {
        names = fs.readdirSync(dir);
      } catch {
        continue; // a PATH entry that does not exist
      }
      if (names.some((n) => entry.match.test(n) && isExecutable(path.join(dir, n)))) return true;
    }
  }
  return false;
}

function what(entry) {
  return entry.file ?? entry.bin ?? entry.shows;
}

function run(cmd, args) {
  const res = spawnSync(cmd, args, {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.status !== 0) {
    const output = `${res.stdout ?? ''}${res.stderr ?? ''}`
      .trim()
      .split('\n')
      .slice(-30)
      .join('\n');
    console.error(
      `ensure-system: "${cmd} ${args.join(' ')}" failed (${res.error?.message ?? `exit ${res.status}`}):`,
    );
    console.error(output);
    process.exit(1);
  }
}

const mode = process.argv[2];
if (!MODES.includes(mode)) {
  console.error(`usage: node scripts/ensure-system.mjs <${MODES.join('|')}>`);
  process.exit(2);
}

const dirs = searchDirs();
const missing = PACKAGES.filter((p) => p.modes.includes(mode) && !isPresent(p, dirs));
if (missing.length === 0) process.exit(0);

const names = missing.map((p) => p.pkg);
const canInstall = process.getuid?.() === 0 && isExecutable('/usr/bin/apt-get');
if (!canInstall) {
  for (const p of missing)
    console.error(`ensure-system: missing ${what(p)} (Debian package ${p.pkg})`);
  console.error(
    `ensure-system: "${mode}" needs them. Install with:\n` +
      `  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${names.join(' ')}`,
  );
  process.exit(1);
}

for (const p of missing) console.log(`ensure-system: installing ${p.pkg} (for ${what(p)})`);
run('apt-get', ['update', '-qq']);
run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...names]);

const still = missing.filter((p) => !isPresent(p, searchDirs()));
if (still.length > 0) {
  for (const p of still) {
    console.error(`ensure-system: ${p.pkg} was installed but ${what(p)} is still missing`);
  }
  process.exit(1);
}
