/**
 * check-config's look at the machine: a missing root is an error; FPM that is absent, refuses,
 * stays silent or is not FastCGI is a warning with the reason; a FastCGI peer that answers
 * FCGI_GET_VALUES passes. Peers are real sockets in this process (a real php-fpm is in
 * test/check-config.test.ts).
 */
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordType } from '../fastcgi/constants.ts';
import { encodeNameValuePairs } from '../fastcgi/name-value.ts';
import { encodeRecord } from '../fastcgi/record-codec.ts';
import { checkMachine, checkUnusedEnv, probeFpm } from './checks.ts';
import { loadConfigWithProvenance } from './load.ts';

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(
    servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
  );
});

async function peer(onConnection: (socket: net.Socket) => void): Promise<number> {
  const s = net.createServer((socket) => {
    sockets.push(socket);
    onConnection(socket);
  });
  servers.push(s);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return (s.address() as net.AddressInfo).port;
}

const tcp = (port: number): { kind: 'tcp'; host: string; port: number } => ({
  kind: 'tcp',
  host: '127.0.0.1',
  port,
});

describe('probeFpm', () => {
  it('passes a FastCGI peer that answers FCGI_GET_VALUES', async () => {
    const port = await peer((socket) =>
      socket.once('data', () =>
        socket.write(
          encodeRecord(
            RecordType.FCGI_GET_VALUES_RESULT,
            0,
            encodeNameValuePairs([['FCGI_MPXS_CONNS', '0']]),
          ),
        ),
      ),
    );
    expect(await probeFpm(tcp(port), 2000)).toBeNull();
  });

  it('an HTTP server is not FastCGI', async () => {
    const port = await peer((socket) =>
      socket.once('data', () => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')),
    );
    expect(await probeFpm(tcp(port), 2000)).toBe(
      "answers, but not in FastCGI: is this an HTTP port rather than php-fpm's?",
    );
  });

  it('a peer that accepts and stays silent times out', async () => {
    const port = await peer(() => undefined);
    expect(await probeFpm(tcp(port), 200)).toMatch(
      /^accepts connections but sent no FastCGI answer within 200 ms/,
    );
  });

  it('a closed TCP port refuses', async () => {
    const port = await peer(() => undefined);
    await new Promise<void>((resolve) => servers.pop()?.close(() => resolve()));
    expect(await probeFpm(tcp(port), 2000)).toBe(
      `127.0.0.1:${port} refuses connections (ECONNREFUSED): php-fpm is not running there, or listens on another port`,
    );
  });

  it('a unix socket path that does not exist, is no socket, or is stale', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'askr-probe-'));
    expect(await probeFpm({ kind: 'unix', path: `${dir}/none.sock` }, 2000)).toBe(
      `nothing at ${dir}/none.sock (ENOENT): is php-fpm running, with listen = ${dir}/none.sock in its pool?`,
    );
    writeFileSync(`${dir}/file`, '');
    expect(await probeFpm({ kind: 'unix', path: `${dir}/file` }, 2000)).toMatch(/is not a socket/);
    const gone = net.createServer();
    await new Promise<void>((resolve) => gone.listen(`${dir}/bound.sock`, resolve));
    renameSync(`${dir}/bound.sock`, `${dir}/stale.sock`);
    await new Promise<void>((resolve) => gone.close(() => resolve()));
    expect(await probeFpm({ kind: 'unix', path: `${dir}/stale.sock` }, 2000)).toBe(
      `${dir}/stale.sock refuses connections (ECONNREFUSED): the socket file is left from a php-fpm that is not running`,
    );
  });
});

describe('checkMachine', () => {
  it('a missing root is an error naming its source; FPM problems are warnings', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'askr-check-'));
    const loaded = loadConfigWithProvenance({
      env: { ASKR_FASTCGI_ADDRESS: `unix:${dir}/fpm.sock` },
      overrides: { 'server.root': `${dir}/nope` },
      flags: { 'server.root': '--root' },
    });
    expect(await checkMachine(loaded)).toEqual([
      {
        level: 'error',
        key: 'server.root',
        message: `flag --root: server.root = "${dir}/nope": the directory does not exist`,
      },
      {
        level: 'warning',
        key: 'fastcgi.address',
        message: `environment ASKR_FASTCGI_ADDRESS: fastcgi.address = "unix:${dir}/fpm.sock": nothing at ${dir}/fpm.sock (ENOENT): is php-fpm running, with listen = ${dir}/fpm.sock in its pool?`,
      },
    ]);
  });

  it('a root that is a file is an error; a missing front controller a warning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'askr-check-'));
    writeFileSync(join(dir, 'file'), '');
    mkdirSync(join(dir, 'public'));
    const port = await peer((socket) =>
      socket.once('data', () =>
        socket.write(encodeRecord(RecordType.FCGI_GET_VALUES_RESULT, 0, Buffer.alloc(0))),
      ),
    );
    const check = (root: string): ReturnType<typeof checkMachine> =>
      checkMachine(
        loadConfigWithProvenance({
          env: {},
          overrides: { 'server.root': root, 'fastcgi.address': `127.0.0.1:${port}` },
        }),
      );
    expect((await check(join(dir, 'file')))[0]?.message).toMatch(
      /server\.root = .*: not a directory/,
    );
    expect(await check(join(dir, 'public'))).toEqual([
      {
        level: 'warning',
        key: 'server.index',
        message: `server.index = "index.php" (the default): ${dir}/public/index.php does not exist: requests that are not static files will fail`,
      },
    ]);
  });
});

describe('checkUnusedEnv', () => {
  it('warns about a near-miss ASKR_* name, not about the PHP side’s own', () => {
    const loaded = loadConfigWithProvenance({
      env: { ASKR_SERVR_LISTEN: 'x', ASKR_SOCKET: '/run/askr/askr.sock' },
    });
    expect(checkUnusedEnv(loaded)).toEqual([
      {
        level: 'warning',
        key: 'ASKR_SERVR_LISTEN',
        message:
          'environment ASKR_SERVR_LISTEN: not a config key, so it is ignored; did you mean ASKR_SERVER_LISTEN?',
      },
    ]);
  });
});
