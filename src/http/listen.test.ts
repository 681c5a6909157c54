/**
 * Listen failures name their config key and address and say what is wrong in words: a port in
 * use, a port below 1024, an address of another machine, a socket directory that is missing, a
 * stale socket file left by a dead process. Real sockets in this process; the errno cases that
 * need another uid or a privileged port are fed to the pure explanation.
 */
import { mkdtempSync, renameSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { listenOn, namingListenKey, parseListenAddress, tcpProblem } from './listen.ts';

const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
  );
});

function server(): net.Server {
  const s = net.createServer();
  servers.push(s);
  return s;
}

async function failure(key: string, address: string): Promise<Error> {
  try {
    await listenOn(server(), key, address);
  } catch (err) {
    return err as Error;
  }
  throw new Error(`${address}: listened`);
}

describe('parseListenAddress', () => {
  it.each([
    ['127.0.0.1:8080', { host: '127.0.0.1', port: 8080 }],
    [':8080', { host: '0.0.0.0', port: 8080 }],
    ['[::1]:0', { host: '::1', port: 0 }],
    ['unix:/run/askr/http.sock', { path: '/run/askr/http.sock' }],
  ])('%s', (address, target) =>
    expect(parseListenAddress('server.listen', address)).toEqual(target),
  );

  it.each(['nowhere', '127.0.0.1:99999', 'unix:relative'])('%s names the key', (address) => {
    expect(() => parseListenAddress('metrics.listen', address)).toThrow(
      `metrics.listen = ${JSON.stringify(address)}: expected`,
    );
  });
});

describe('listenOn', () => {
  it('a port in use names the key, the address and EADDRINUSE', async () => {
    const first = server();
    await listenOn(first, 'server.listen', '127.0.0.1:0');
    const port = (first.address() as net.AddressInfo).port;
    const err = await failure('server.listen', `127.0.0.1:${port}`);
    expect(err).toBeInstanceOf(SidecarError);
    expect((err as Partial<SidecarError>).code).toBe(ErrorCodes.CONFIG);
    expect(err.message).toBe(
      `server.listen = "127.0.0.1:${port}": cannot listen: 127.0.0.1:${port} is already in use by another process (EADDRINUSE): stop that process (\`ss -ltnp\` shows which) or set server.listen to a free port`,
    );
    expect((err.cause as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
  });

  it('an address of another machine is EADDRNOTAVAIL with this host’s addresses', async () => {
    // Documentation ranges (RFC 5737); a sandbox may use one of them, so take one not local.
    const local = new Set(
      Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address)),
    );
    const foreign = ['192.0.2.1', '198.51.100.1', '203.0.113.1'].find((a) => !local.has(a));
    const err = await failure('metrics.listen', `${foreign ?? ''}:9100`);
    expect(err.message).toContain(
      `metrics.listen = "${foreign ?? ''}:9100": cannot listen: ${foreign ?? ''} is not an address of this machine (EADDRNOTAVAIL): use 0.0.0.0 (every interface), 127.0.0.1 (this machine only) or one of its addresses: 127.0.0.1`,
    );
  });

  it('a unix socket in a missing directory names the directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'askr-listen-'));
    const err = await failure('server.listen', `unix:${dir}/missing/http.sock`);
    expect(err.message).toContain(
      `server.listen = "unix:${dir}/missing/http.sock": cannot listen: the directory ${dir}/missing does not exist`,
    );
  });

  it('a stale socket file says to remove it; a live one says another process listens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'askr-listen-'));
    // A socket file nobody listens on: bind, move the file away (the close unlinks only the
    // original path), close.
    const gone = net.createServer();
    await listenOn(gone, 'server.listen', `unix:${dir}/bound.sock`);
    renameSync(`${dir}/bound.sock`, `${dir}/stale.sock`);
    await new Promise<void>((resolve) => gone.close(() => resolve()));
    const stale = await failure('server.listen', `unix:${dir}/stale.sock`);
    expect(stale.message).toContain(
      `${dir}/stale.sock is a stale socket file: the process that made it is gone (EADDRINUSE); remove it (rm ${dir}/stale.sock)`,
    );
    const live = server();
    await listenOn(live, 'server.listen', `unix:${dir}/live.sock`);
    const taken = await failure('server.listen', `unix:${dir}/live.sock`);
    expect(taken.message).toContain(
      `another process is listening on ${dir}/live.sock (EADDRINUSE)`,
    );
  });

  it('a unix socket path too long for sun_path says so', async () => {
    const err = await failure('server.listen', `unix:/tmp/${'a'.repeat(120)}.sock`);
    expect(err.message).toContain(
      'the path is 130 bytes long; a unix socket path may have at most 107',
    );
  });

  it('hands later server errors to onError instead of crashing', async () => {
    const s = server();
    const seen: Error[] = [];
    await listenOn(s, 'server.listen', '127.0.0.1:0', (err) => seen.push(err));
    s.emit('error', new Error('accept EMFILE'));
    expect(seen.map((e) => e.message)).toEqual(['accept EMFILE']);
  });
});

describe('tcpProblem', () => {
  it.each([
    ['EACCES', 80, 'ports below 1024 need root or the CAP_NET_BIND_SERVICE capability (EACCES)'],
    ['EACCES', 8080, 'permission denied binding 0.0.0.0:8080 (EACCES'],
    ['ENOTFOUND', 8080, 'the host name 0.0.0.0 does not resolve (ENOTFOUND)'],
    ['EAFNOSUPPORT', 8080, 'IPv6 is not available on this machine'],
    ['ERR_SOCKET_BAD_PORT', 8080, 'out of range'],
    ['EWHATEVER', 8080, 'boom (EWHATEVER)'],
  ])('%s on port %i', (code, port, words) => {
    expect(tcpProblem('server.listen', { host: '0.0.0.0', port }, code, 'boom')).toContain(words);
  });
});

describe('namingListenKey', () => {
  it('prefixes the key and address and keeps the error code', async () => {
    const cause = new SidecarError(ErrorCodes.DATAGRAM, 'another sidecar is bound to /run/a.sock');
    const err = await namingListenKey(
      'broadcast.socket',
      '/run/a.sock',
      Promise.reject(cause),
    ).then(
      () => null,
      (e: unknown) => e as SidecarError,
    );
    expect(err?.message).toBe(
      'broadcast.socket = "/run/a.sock": another sidecar is bound to /run/a.sock',
    );
    expect(err?.code).toBe(ErrorCodes.DATAGRAM);
    expect(err?.cause).toBe(cause);
  });
});
