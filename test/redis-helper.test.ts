/**
 * The real-Redis helper of the cluster tests (test/helpers/redis.ts) is itself proven: it starts
 * redis-server on a free loopback port, answers through redis-cli and raw TCP, a kill is a real
 * outage (connections refused), a restart brings it back on the same port and empty (no
 * persistence, as in the deploy recipes), and stop removes everything.
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from './helpers/redis.ts';

/** Resolves 'connected' or the connect error's code (ECONNREFUSED while Redis is down). */
async function connectOutcome(port: number): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port });
  try {
    await once(socket, 'connect');
    return 'connected';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  } finally {
    socket.destroy();
  }
}

describe('test/helpers/redis.ts', () => {
  let redis: TestRedis | undefined;
  afterAll(async () => {
    await redis?.stop();
  });

  it('starts, answers, survives a kill and a restart on the same port, then stops', async () => {
    redis = await startRedis();
    const { port } = redis;
    expect(redis.url).toBe(`redis://127.0.0.1:${port}/0`);
    expect(await redis.cli('PING')).toBe('PONG\n');
    // No persistence: the recipes' Redis and this one lose everything on a restart.
    expect(await redis.cli('CONFIG', 'GET', 'save')).toBe('save\n\n');
    expect(await redis.cli('CONFIG', 'GET', 'appendonly')).toBe('appendonly\nno\n');
    expect(await redis.cli('SET', 'askr:test', 'kept?')).toBe('OK\n');

    await redis.kill();
    expect(await connectOutcome(port)).toBe('ECONNREFUSED');
    await expect(redis.cli('PING')).rejects.toThrow(/Connection refused/);

    await redis.restart();
    expect(redis.port).toBe(port);
    expect(await redis.cli('PING')).toBe('PONG\n');
    expect(await redis.cli('EXISTS', 'askr:test')).toBe('0\n');

    // restart() of a running server is a graceful stop and a start.
    await redis.restart();
    expect(await connectOutcome(port)).toBe('connected');

    await redis.stop();
    await redis.stop(); // idempotent
    expect(await connectOutcome(port)).toBe('ECONNREFUSED');
    await expect(redis.restart()).rejects.toThrow(/after stop/);
    expect(redis.log()).toContain('Ready to accept connections');
  });

  it('fails naming the install command when redis-server is missing, never skips', async () => {
    await expect(startRedis({ binary: '/nonexistent/redis-server' })).rejects.toThrow(
      /redis-server .*node scripts\/ensure-system\.mjs test/,
    );
  });
});
