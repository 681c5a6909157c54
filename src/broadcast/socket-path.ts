/**
 * Where the datagram socket goes: the configured path, or a private fallback when the default
 * directory cannot be made (a non-root `npm start`). Used by `serve` and `relay`.
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { schema } from '../config/schema.ts';

/**
 * The default socket directory (/run/askr) needs root or a prepared directory. When the default is
 * configured and cannot be created (a developer running `npm start` as themselves), use a private
 * directory under the OS temp dir instead and say so; PHP under this sidecar learns the path from
 * ASKR_SOCKET either way. A socket path set explicitly is never changed.
 */
export async function usableSocketPath(path: string, logger: Logger): Promise<string> {
  if (path === '' || path !== schema.broadcast.socket.default) return path;
  try {
    await mkdir(dirname(path), { recursive: true });
    await access(dirname(path), fsConstants.W_OK);
    return path;
  } catch (err) {
    const dir = join(tmpdir(), `askr-${process.getuid?.() ?? 'user'}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const fallback = join(dir, 'askr.sock');
    logger.warn(
      { configured: path, socket: fallback, err: (err as Error).message },
      'cannot use the default datagram socket directory; using a private one (set broadcast.socket to choose)',
    );
    return fallback;
  }
}
