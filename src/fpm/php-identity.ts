/**
 * Who PHP runs as (the user and group of FPM's workers) and whether that identity may reach a
 * path. Node has no getpwnam(), so the local /etc/passwd and /etc/group are read, as FPM's own
 * lookups see them on a system without NSS modules. Invariants: a resolved identity is never uid 0
 * or gid 0 (PHP never runs as root); the access check follows the permission bits only (ACLs and
 * capabilities are not considered, so it may warn about a path an ACL opens, never the reverse).
 */
import fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../errors.ts';

/** The workers' identity as the kernel sees it once FPM switched to it (setgid, initgroups, setuid). */
export interface PhpIdentity {
  /** User name, or the uid as digits when /etc/passwd has no entry for it. */
  user: string;
  uid: number;
  /** Group name, or the gid as digits when /etc/group has no entry for it. */
  group: string;
  gid: number;
  /** gid and the supplementary groups initgroups() gives the user: what access checks use. */
  gids: readonly number[];
}

/** The text of /etc/passwd and /etc/group (parameters, so resolution is testable without files). */
export interface UserDatabase {
  passwd: string;
  group: string;
}

/** The user of Debian's stock php-fpm pool and of the official Docker php images. */
export const DEFAULT_PHP_USER = 'www-data';
/** Used when the system has no www-data (FPM would refuse root; nobody owns nothing). */
export const FALLBACK_PHP_USER = 'nobody';

/** Permission bits asked of a path, as in access(2). */
export const Access = { R: 4, W: 2, X: 1 } as const;

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const DIGITS = /^\d+$/;

function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name && uid !== undefined && gid !== undefined && DIGITS.test(uid) && DIGITS.test(gid))
      out.push({ name, uid: Number(uid), gid: Number(gid) });
  }
  return out;
}

function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const [name, , gid, members = ''] = line.split(':');
    if (name && gid !== undefined && DIGITS.test(gid))
      out.push({ name, gid: Number(gid), members: members.split(',').filter((m) => m !== '') });
  }
  return out;
}

/** Reads /etc/passwd and /etc/group. Throws ConfigError naming the file when one is unreadable. */
export async function loadUserDatabase(): Promise<UserDatabase> {
  const read = (file: string): Promise<string> =>
    readFile(file, 'utf8').catch((err: unknown) => {
      throw new ConfigError(`cannot read ${file} to resolve the PHP user and group`, {
        cause: err,
      });
    });
  const [passwd, group] = await Promise.all([read('/etc/passwd'), read('/etc/group')]);
  return { passwd, group };
}

/** A group name (or digits) to its gid; throws ConfigError naming `key` when it is not in /etc/group. */
export function lookupGid(group: string, db: Pick<UserDatabase, 'group'>, key: string): number {
  if (DIGITS.test(group)) return Number(group);
  const entry = parseGroup(db.group).find((g) => g.name === group);
  if (entry === undefined)
    throw new ConfigError(`${key} = ${JSON.stringify(group)}: no such group in /etc/group`);
  return entry.gid;
}

/** A resolved identity, and the user asked for when it was not found and nobody stands in. */
export interface ResolvedPhpIdentity {
  identity: PhpIdentity;
  /** 'www-data' when the default user was missing and FALLBACK_PHP_USER was used instead. */
  fellBackFrom?: string;
}

/**
 * Resolves fpm.user / fpm.group as FPM does (names or numeric ids): user '' is www-data, or
 * nobody where there is no www-data; group '' is the user's primary group. Throws ConfigError
 * naming the key for an unknown user or group, a numeric user without a passwd entry and no group,
 * or an identity with uid 0 or gid 0 (FPM refuses those itself unless -R, which is never passed).
 */
export function resolvePhpIdentity(
  want: { user: string; group: string },
  db: UserDatabase,
): ResolvedPhpIdentity {
  const users = parsePasswd(db.passwd);
  const groups = parseGroup(db.group);
  let fellBackFrom: string | undefined;
  let name = want.user;
  if (name === '') {
    name = DEFAULT_PHP_USER;
    if (!users.some((u) => u.name === DEFAULT_PHP_USER)) {
      name = FALLBACK_PHP_USER;
      fellBackFrom = DEFAULT_PHP_USER;
    }
  }
  const entry = DIGITS.test(name)
    ? users.find((u) => u.uid === Number(name))
    : users.find((u) => u.name === name);
  if (entry === undefined && !DIGITS.test(name)) {
    throw new ConfigError(
      want.user === ''
        ? `neither ${DEFAULT_PHP_USER} nor ${FALLBACK_PHP_USER} is in /etc/passwd: set fpm.user to the user PHP should run as`
        : `fpm.user = ${JSON.stringify(want.user)}: no such user in /etc/passwd (for a user that exists only where FPM runs, give its numeric uid and fpm.group)`,
    );
  }
  const uid = entry?.uid ?? Number(name);
  let gid: number;
  if (want.group !== '') gid = lookupGid(want.group, db, 'fpm.group');
  else if (entry !== undefined) gid = entry.gid;
  else
    throw new ConfigError(
      `fpm.user = ${JSON.stringify(want.user)} has no entry in /etc/passwd: set fpm.group too`,
    );
  if (uid === 0 || gid === 0) {
    const key =
      uid === 0
        ? `fpm.user = ${JSON.stringify(want.user)}`
        : `fpm.group = ${JSON.stringify(want.group || String(gid))}`;
    throw new ConfigError(
      `${key}: PHP must never run as root (uid 0 or gid 0): name an unprivileged user and group`,
    );
  }
  const userName = entry?.name ?? String(uid);
  // initgroups(): the primary gid plus every group listing the user as a member.
  const gids = new Set<number>([gid]);
  for (const g of groups) if (g.members.includes(userName)) gids.add(g.gid);
  const identity: PhpIdentity = {
    user: userName,
    uid,
    group: groups.find((g) => g.gid === gid)?.name ?? String(gid),
    gid,
    gids: [...gids],
  };
  return fellBackFrom === undefined ? { identity } : { identity, fellBackFrom };
}

/** "user:group" for log lines. */
export function describeIdentity(who: PhpIdentity): string {
  return `${who.user}:${who.group}`;
}

/**
 * The kernel's rule for one inode: the owner's bits if `who` owns it, else the group's bits if
 * the file's group is one of `who`'s, else the others' bits (the first class that matches
 * decides: an owner without a bit is refused even when the group has it).
 */
export function permits(
  stat: { uid: number; gid: number; mode: number },
  who: Pick<PhpIdentity, 'uid' | 'gids'>,
  want: number,
): boolean {
  const shift = stat.uid === who.uid ? 6 : who.gids.includes(stat.gid) ? 3 : 0;
  return ((stat.mode >> shift) & want) === want;
}

function describeStat(p: string, st: fs.Stats): string {
  return `${p} (uid ${st.uid}, gid ${st.gid}, mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
}

/**
 * What keeps `who` from `target` with `want` (Access bits): the first directory on the way it
 * cannot search (x), or the target lacking `want`, described with its owner and mode; null when
 * nothing does. Symbolic links are followed as the kernel does (the resolved path is checked);
 * a path that cannot be examined is reported too.
 */
export function accessObstacle(target: string, who: PhpIdentity, want: number): string | null {
  try {
    const resolved = fs.realpathSync(target);
    const dirs: string[] = [];
    for (let dir = path.dirname(resolved); ; dir = path.dirname(dir)) {
      dirs.unshift(dir);
      if (dir === path.dirname(dir)) break;
    }
    for (const dir of dirs) {
      const st = fs.statSync(dir);
      if (!permits(st, who, Access.X))
        return `${describeStat(dir, st)} is a directory ${who.user} cannot search (x)`;
    }
    const st = fs.statSync(resolved);
    if (permits(st, who, want)) return null;
    const needs: string[] = [];
    if (want & Access.R) needs.push('read');
    if (want & Access.W) needs.push('write');
    if (want & Access.X) needs.push(st.isDirectory() ? 'search' : 'execute');
    return `${describeStat(resolved, st)} does not let ${who.user} ${needs.join(' and ')} it`;
  } catch (err) {
    // ENOENT, or a directory on the way the sidecar itself cannot search: report, never throw.
    return `${target} cannot be examined (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
  }
}
