// Unit tests of who PHP runs as (fpm.user/fpm.group resolution) and of the permission-bit check
// behind the start-up warnings. A recurrence of the bug they guard: an identity with uid or gid 0
// resolved for the workers, or a path reported reachable that the kernel would refuse.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import {
  Access,
  accessObstacle,
  lookupGid,
  permits,
  resolvePhpIdentity,
  type PhpIdentity,
  type UserDatabase,
} from './php-identity.ts';

const DEBIAN: UserDatabase = {
  passwd: [
    'root:x:0:0:root:/root:/bin/bash',
    'sync:x:4:0:sync:/bin:/bin/sync',
    'www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin',
    'app:x:1000:1000::/home/app:/bin/sh',
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
  ].join('\n'),
  group: [
    'root:x:0:',
    'www-data:x:33:',
    'web:x:500:app,www-data',
    'app:x:1000:',
    'nogroup:x:65534:',
  ].join('\n'),
};
// Alpine's base image: no www-data user, nobody's primary group is "nobody".
const NO_WWW_DATA: UserDatabase = {
  passwd: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n',
  group: 'root:x:0:root\nnobody:x:65534:\n',
};

describe('resolvePhpIdentity', () => {
  it.each([
    [
      'defaults to www-data and its primary group, with its supplementary groups',
      { user: '', group: '' },
      { user: 'www-data', uid: 33, group: 'www-data', gid: 33, gids: [33, 500] },
    ],
    [
      'takes fpm.group over the primary group',
      { user: 'app', group: 'web' },
      { user: 'app', uid: 1000, group: 'web', gid: 500, gids: [500] },
    ],
    [
      'accepts numeric ids as php-fpm does',
      { user: '33', group: '65534' },
      { user: 'www-data', uid: 33, group: 'nogroup', gid: 65534, gids: [65534, 500] },
    ],
    [
      'accepts a numeric user without a passwd entry when the group is given',
      { user: '4242', group: '4242' },
      { user: '4242', uid: 4242, group: '4242', gid: 4242, gids: [4242] },
    ],
  ])('%s', (_name, want, identity: PhpIdentity) => {
    expect(resolvePhpIdentity(want, DEBIAN)).toEqual({ identity });
  });

  it('falls back to nobody where there is no www-data, and says so', () => {
    expect(resolvePhpIdentity({ user: '', group: '' }, NO_WWW_DATA)).toEqual({
      identity: { user: 'nobody', uid: 65534, group: 'nobody', gid: 65534, gids: [65534] },
      fellBackFrom: 'www-data',
    });
  });

  it.each([
    ['user root', { user: 'root', group: '' }, /fpm\.user = "root": PHP must never run as root/],
    ['uid 0', { user: '0', group: 'www-data' }, /PHP must never run as root/],
    ['group root', { user: 'www-data', group: 'root' }, /fpm\.group = "root": PHP must never/],
    ['a user whose primary group is root', { user: 'sync', group: '' }, /never run as root/],
    ['an unknown user', { user: 'nosuch', group: '' }, /fpm\.user = "nosuch": no such user/],
    ['an unknown group', { user: 'app', group: 'nosuch' }, /fpm\.group = "nosuch": no such group/],
    ['a numeric user with no entry and no group', { user: '4242', group: '' }, /set fpm\.group/],
  ])('refuses %s with a config error', (_name, want, message) => {
    expect(() => resolvePhpIdentity(want, DEBIAN)).toThrow(
      expect.objectContaining({
        code: ErrorCodes.CONFIG,
        message: expect.stringMatching(message) as unknown,
      }),
    );
  });

  it('lookupGid names the key of an unknown group', () => {
    expect(lookupGid('web', DEBIAN, 'k')).toBe(500);
    expect(lookupGid('77', DEBIAN, 'k')).toBe(77);
    expect(() => lookupGid('nosuch', DEBIAN, 'broadcast.socket_group')).toThrow(
      'broadcast.socket_group = "nosuch": no such group in /etc/group',
    );
  });
});

describe('permits', () => {
  const www = { uid: 33, gids: [33, 500] };
  it.each([
    ['owner bits for the owner', { uid: 33, gid: 0, mode: 0o600 }, Access.W, true],
    [
      'the owner class decides, even when the group has the bit',
      { uid: 33, gid: 33, mode: 0o060 },
      Access.W,
      false,
    ],
    ['group bits for a supplementary group', { uid: 0, gid: 500, mode: 0o660 }, Access.W, true],
    ['others bits otherwise', { uid: 0, gid: 0, mode: 0o660 }, Access.W, false],
    ['search on a 0711 directory', { uid: 0, gid: 0, mode: 0o40711 }, Access.X, true],
    ['read and search both needed', { uid: 0, gid: 0, mode: 0o40711 }, Access.R | Access.X, false],
  ])('%s', (_name, stat, want, expected) => {
    expect(permits(stat, www, want)).toBe(expected);
  });
});

describe('accessObstacle', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'askr-identity-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  // A user that owns nothing here and is in no group of the test's files.
  const stranger: PhpIdentity = {
    user: 'stranger',
    uid: 4_000_000,
    group: 'strangers',
    gid: 4_000_000,
    gids: [4_000_000],
  };

  it('names the first directory the user cannot search', () => {
    const closed = path.join(dir, 'closed');
    fs.mkdirSync(path.join(closed, 'inner'), { recursive: true });
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(closed, 0o700);
    expect(accessObstacle(path.join(closed, 'inner'), stranger, Access.R | Access.X)).toMatch(
      new RegExp(
        `^${closed} \\(uid \\d+, gid \\d+, mode 0700\\) is a directory stranger cannot search`,
      ),
    );
  });

  it('names the file and what it lacks, and is null when the bits allow it', () => {
    const file = path.join(dir, 'sock');
    fs.writeFileSync(file, '');
    fs.chmodSync(file, 0o664);
    expect(accessObstacle(file, stranger, Access.W)).toMatch(
      /mode 0664\) does not let stranger write it$/,
    );
    expect(accessObstacle(file, stranger, Access.R)).toBeNull();
  });

  it('reports a path that does not exist instead of throwing', () => {
    expect(accessObstacle(path.join(dir, 'missing'), stranger, Access.R)).toMatch(/ENOENT/);
  });
});
