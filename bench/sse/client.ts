/**
 * Parent-side handle of the subscriber process (client-proc.ts): fork it, send commands, await
 * replies (one per command, in order). The child exits when this process disconnects, so a crash
 * or Ctrl-C here never leaves thousands of sockets behind.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { ClientCommand, ClientReply, ClientStats, OpenResult } from './client-protocol.ts';

const CHILD = fileURLToPath(new URL('./client-proc.ts', import.meta.url));

export class SubscriberClient {
  readonly #child: ChildProcess;
  readonly #waiting: ((reply: ClientReply) => void)[] = [];
  #exited = false;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (raw: unknown) => this.#waiting.shift()?.(raw as ClientReply));
    child.once('exit', () => {
      this.#exited = true;
    });
  }

  /** Forks the client process and waits until it is ready. */
  static async start(): Promise<SubscriberClient> {
    const child = fork(CHILD, [], {
      execPath: process.execPath,
      execArgv: ['--max-old-space-size=4096'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const [ready] = (await once(child, 'message')) as [ClientReply];
    if (ready.type !== 'ready') throw new Error('the subscriber process did not start');
    return new SubscriberClient(child);
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  #call(cmd: ClientCommand): Promise<ClientReply> {
    if (this.#exited) return Promise.reject(new Error('the subscriber process has exited'));
    return new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error('the subscriber process exited'));
      this.#child.once('exit', onExit);
      this.#waiting.push((reply) => {
        this.#child.off('exit', onExit);
        resolve(reply);
      });
      this.#child.send(cmd);
    });
  }

  /** Opens `count` streams to `path`; see OpenResult for how each one ended up. */
  async open(
    host: string,
    port: number,
    path: string,
    count: number,
    opts: { concurrency?: number; headTimeoutMs?: number } = {},
  ): Promise<OpenResult> {
    const reply = await this.#call({
      type: 'open',
      host,
      port,
      path,
      count,
      concurrency: opts.concurrency ?? 200,
      headTimeoutMs: opts.headTimeoutMs ?? 10_000,
    });
    if (reply.type !== 'opened') throw new Error(`unexpected reply ${reply.type}`);
    return reply.result;
  }

  async reset(messages: number): Promise<void> {
    await this.#call({ type: 'reset', messages });
  }

  async stats(activeWindowMs = 2500): Promise<ClientStats> {
    const reply = await this.#call({ type: 'stats', activeWindowMs });
    if (reply.type !== 'stats') throw new Error(`unexpected reply ${reply.type}`);
    return reply.stats;
  }

  /** Destroys every stream (the process stays for the next round). */
  async closeAll(): Promise<void> {
    await this.#call({ type: 'close' });
  }

  async exit(): Promise<void> {
    if (this.#exited) return;
    const exited = once(this.#child, 'exit');
    this.#child.send({ type: 'exit' } satisfies ClientCommand);
    await exited;
  }
}
