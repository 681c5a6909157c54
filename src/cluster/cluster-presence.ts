/**
 * Presence across the cluster: who is on a presence channel is kept in Redis, counted per user
 * per node, so a user with tabs on two sidecars is one member and joins/leaves are announced once
 * for the whole cluster (the case Reverb gets wrong). Each node refreshes a liveness key; a node
 * that stops (killed, partitioned) has its members removed by the others within `ttlMs`, with the
 * leaves announced (the liveness key and its heartbeat: node-liveness.ts). Each node keeps a mirror of the members of the channels it serves, updated
 * by the join/leave events it receives, for the member list a new stream gets first.
 * While Redis is away, presence falls back to this node's own streams (a PresenceRegistry).
 *
 *   join  ─Lua─▶ presn:<ch>[user\nnode]++ ─(node's first)─▶ presu:<ch>[user]++ ─(cluster's first)─▶ join event
 *   leave ─Lua─▶ the reverse ─(cluster's last)─▶ leave event
 */
import type { Logger } from 'pino';
import type { PublishFn } from '../sse/hub.ts';
import { encodeFrame } from '../sse/sse-encoder.ts';
import { PresenceRegistry, type Presence, type PresenceMember } from '../sse/presence.ts';
import type { Hub } from '../sse/hub.ts';
import { NodeLiveness } from './node-liveness.ts';
import type { BusEvent, RedisBus } from './redis-bus.ts';

const JOIN_LUA = `
local p, ch, user, node, member, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
redis.call('SET', p .. 'node:' .. node, '1', 'PX', ttl)
local c = redis.call('HINCRBY', p .. 'presn:' .. ch, user .. '\\n' .. node, 1)
redis.call('HSET', p .. 'pres:' .. ch, user, member)
if c == 1 then
  redis.call('SADD', p .. 'nodepres:' .. node, ch .. '\\n' .. user)
  redis.call('SADD', p .. 'nodes', node)
  if redis.call('HINCRBY', p .. 'presu:' .. ch, user, 1) == 1 then return 1 end
end
return 0
`;

const LEAVE_LUA = `
local p, ch, user, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local c = redis.call('HINCRBY', p .. 'presn:' .. ch, user .. '\\n' .. node, -1)
if c > 0 then return false end
redis.call('HDEL', p .. 'presn:' .. ch, user .. '\\n' .. node)
redis.call('SREM', p .. 'nodepres:' .. node, ch .. '\\n' .. user)
if c < 0 then return false end
local n = redis.call('HINCRBY', p .. 'presu:' .. ch, user, -1)
if n > 0 then return false end
redis.call('HDEL', p .. 'presu:' .. ch, user)
local m = redis.call('HGET', p .. 'pres:' .. ch, user)
redis.call('HDEL', p .. 'pres:' .. ch, user)
return m
`;

/** Removes a dead node's members; returns [channel, member, ...] of users no node holds now. */
const SWEEP_LUA = `
local p, node = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. 'node:' .. node) == 1 then return {} end
if redis.call('SREM', p .. 'nodes', node) == 0 then return {} end
local out = {}
for _, e in ipairs(redis.call('SMEMBERS', p .. 'nodepres:' .. node)) do
  local nl = string.find(e, '\\n', 1, true)
  if nl then
    local ch, user = string.sub(e, 1, nl - 1), string.sub(e, nl + 1)
    redis.call('HDEL', p .. 'presn:' .. ch, user .. '\\n' .. node)
    if redis.call('HINCRBY', p .. 'presu:' .. ch, user, -1) <= 0 then
      redis.call('HDEL', p .. 'presu:' .. ch, user)
      local m = redis.call('HGET', p .. 'pres:' .. ch, user)
      redis.call('HDEL', p .. 'pres:' .. ch, user)
      if m then out[#out + 1] = ch; out[#out + 1] = m end
    end
  end
end
redis.call('DEL', p .. 'nodepres:' .. node)
return out
`;

interface LuaClient {
  askrPresJoin(...args: string[]): Promise<number>;
  askrPresLeave(...args: string[]): Promise<string | null>;
  askrPresSweep(...args: string[]): Promise<string[]>;
}

export interface ClusterPresenceOptions {
  bus: RedisBus;
  hub: Hub;
  publish: PublishFn;
  keyPrefix: string;
  nodeId: string;
  /** A node silent this long has its members removed (the liveness' own when `liveness` is given). */
  ttlMs: number;
  logger: Logger;
  /** This node's liveness, shared with the other cluster parts; else presence keeps its own. */
  liveness?: NodeLiveness;
}

export class ClusterPresence implements Presence {
  readonly #o: ClusterPresenceOptions;
  readonly #lua: LuaClient;
  /** Members of the channels this node has streams on: channel -> user key -> member. */
  readonly #mirror = new Map<string, Map<string, PresenceMember>>();
  /** Local streams per channel (the mirror is dropped when it reaches 0). */
  readonly #localStreams = new Map<string, number>();
  /** Used while Redis is away; streams that joined there leave there. */
  readonly #fallback: PresenceRegistry;
  readonly #fallbackJoins = new Map<string, number>();
  readonly #liveness: NodeLiveness;
  readonly #ownsLiveness: boolean;
  #closed = false;

  constructor(options: ClusterPresenceOptions) {
    this.#o = options;
    const client = options.bus.client;
    client.defineCommand('askrPresJoin', { numberOfKeys: 0, lua: JOIN_LUA });
    client.defineCommand('askrPresLeave', { numberOfKeys: 0, lua: LEAVE_LUA });
    client.defineCommand('askrPresSweep', { numberOfKeys: 0, lua: SWEEP_LUA });
    this.#lua = client as unknown as LuaClient;
    this.#fallback = new PresenceRegistry(options.hub);
    this.#ownsLiveness = options.liveness === undefined;
    this.#liveness =
      options.liveness ??
      new NodeLiveness({
        bus: options.bus,
        nodeId: options.nodeId,
        ttlMs: options.ttlMs,
        logger: options.logger,
      });
    this.#liveness.onBeat('presence', () => this.#sweep());
  }

  /** Feed every event the node receives from the bus: joins and leaves update the mirror. */
  observe(event: BusEvent): void {
    if (event.event !== 'askr:presence.join' && event.event !== 'askr:presence.leave') return;
    for (const channel of event.channels) {
      const members = this.#mirror.get(channel);
      if (members === undefined) continue;
      let payload: { member?: PresenceMember };
      try {
        payload = JSON.parse(event.data.toString('utf8')) as { member?: PresenceMember };
      } catch {
        continue;
      }
      const member = payload.member;
      if (member === undefined) continue;
      if (event.event === 'askr:presence.join') members.set(String(member.user_id), member);
      else members.delete(String(member.user_id));
    }
  }

  async join(channel: string, member: PresenceMember): Promise<void> {
    const user = String(member.user_id);
    this.#localStreams.set(channel, (this.#localStreams.get(channel) ?? 0) + 1);
    if (this.#o.bus.state !== 'up') {
      this.#joinFallback(channel, member);
      return;
    }
    try {
      const first = await this.#lua.askrPresJoin(
        this.#o.keyPrefix,
        channel,
        user,
        this.#o.nodeId,
        JSON.stringify(member),
        String(this.#liveness.ttlMs),
      );
      await this.#loadMirror(channel);
      this.#mirror.get(channel)?.set(user, member);
      if (first === 1) await this.#announce(channel, 'askr:presence.join', member);
    } catch (err) {
      this.#o.logger.warn(
        { err: (err as Error).message, channel },
        'cluster presence: join failed; local only',
      );
      this.#joinFallback(channel, member);
    }
  }

  leave(channel: string, userId: string | number): void {
    const user = String(userId);
    const streams = (this.#localStreams.get(channel) ?? 1) - 1;
    if (streams <= 0) {
      this.#localStreams.delete(channel);
      this.#mirror.delete(channel);
    } else this.#localStreams.set(channel, streams);
    const key = `${channel}\n${user}`;
    const local = this.#fallbackJoins.get(key) ?? 0;
    if (local > 0) {
      if (local === 1) this.#fallbackJoins.delete(key);
      else this.#fallbackJoins.set(key, local - 1);
      this.#fallback.leave(channel, userId);
      return;
    }
    if (this.#closed) return;
    this.#lua.askrPresLeave(this.#o.keyPrefix, channel, user, this.#o.nodeId).then(
      (member) => {
        if (member === null) return;
        return this.#announce(channel, 'askr:presence.leave', JSON.parse(member) as PresenceMember);
      },
      (err: unknown) => {
        // Redis away: the liveness key lapses and another node removes the member later.
        this.#o.logger.debug(
          { err: (err as Error).message, channel },
          'cluster presence: leave failed',
        );
      },
    );
  }

  membersFrame(channel: string): Buffer {
    const members = this.#mirror.get(channel);
    const list = members === undefined ? this.#fallback.members(channel) : [...members.values()];
    return encodeFrame({
      event: 'askr:presence.members',
      data: JSON.stringify({ channel, members: list }),
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#ownsLiveness) this.#liveness.close();
    this.#fallback.close();
  }

  /**
   * Graceful stop: this node's members leave now (announced once for users no other node holds)
   * instead of when its liveness expires. Never rejects; Redis away means the others sweep later.
   */
  async leaveAll(): Promise<void> {
    this.close();
    // The node stops: its liveness goes now, shared or not (the sweep below needs the key gone).
    await this.#liveness.retire();
    if (this.#o.bus.state !== 'up') return;
    try {
      const gone = await this.#lua.askrPresSweep(this.#o.keyPrefix, this.#o.nodeId);
      for (let i = 0; i + 1 < gone.length; i += 2) {
        const member = JSON.parse(gone[i + 1] as string) as PresenceMember;
        await this.#announce(gone[i] as string, 'askr:presence.leave', member);
      }
    } catch (err) {
      this.#o.logger.debug(
        { err: (err as Error).message },
        'cluster presence: leave at stop failed',
      );
    }
  }

  #joinFallback(channel: string, member: PresenceMember): void {
    const key = `${channel}\n${String(member.user_id)}`;
    this.#fallbackJoins.set(key, (this.#fallbackJoins.get(key) ?? 0) + 1);
    void this.#fallback.join(channel, member);
  }

  async #loadMirror(channel: string): Promise<void> {
    if (this.#mirror.has(channel)) return;
    const all = await this.#o.bus.client.hgetall(this.#o.bus.key(`pres:${channel}`));
    const members = new Map<string, PresenceMember>();
    for (const [user, json] of Object.entries(all)) {
      try {
        members.set(user, JSON.parse(json) as PresenceMember);
      } catch {
        // a foreign value under our prefix: skip it
      }
    }
    this.#mirror.set(channel, members);
  }

  #announce(channel: string, event: string, member: PresenceMember): Promise<void> {
    return this.#o
      .publish({
        channels: [channel],
        event,
        data: Buffer.from(JSON.stringify({ channel, member })),
        ingress: 'internal',
      })
      .then(
        () => undefined,
        () => undefined,
      );
  }

  /** Removes the members of nodes that stopped refreshing their liveness (a NodeLiveness beat). */
  async #sweep(): Promise<void> {
    if (this.#closed) return;
    const nodes = await this.#o.bus.client.smembers(this.#o.bus.key('nodes'));
    for (const node of nodes) {
      if (node === this.#o.nodeId) continue;
      const gone = await this.#lua.askrPresSweep(this.#o.keyPrefix, node);
      for (let i = 0; i + 1 < gone.length; i += 2) {
        const channel = gone[i] as string;
        const member = JSON.parse(gone[i + 1] as string) as PresenceMember;
        this.#o.logger.info(
          { node, channel, user: member.user_id },
          'cluster presence: member of a dead node removed',
        );
        await this.#announce(channel, 'askr:presence.leave', member);
      }
    }
  }
}
