/**
 * Presence channels (Laravel's `presence-*`): the members the app's auth route names, ref-counted
 * per user across a user's streams. The first stream of a user publishes `askr:presence.join`,
 * the last one to close publishes `askr:presence.leave`; a new stream first gets
 * `askr:presence.members` (everyone present, itself included). Events go through the hub, so
 * they have ids and are replayed like any other event.
 */
import type { Hub, PublishFn } from './hub.ts';
import { encodeFrame } from './sse-encoder.ts';

export interface PresenceMember {
  user_id: string | number;
  user_info?: unknown;
}

interface Present {
  member: PresenceMember;
  streams: number;
}

/** Reads `channel_data` (a JSON string, Pusher style, or an object) from an auth response body. */
export function memberFromAuthBody(body: Buffer): PresenceMember | string {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return 'the auth response of a presence channel must be JSON with channel_data';
  }
  let data: unknown = (doc as { channel_data?: unknown } | null)?.channel_data;
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data);
    } catch {
      return 'channel_data is not valid JSON';
    }
  }
  const userId = (data as { user_id?: unknown } | null)?.user_id;
  if (typeof userId !== 'string' && typeof userId !== 'number')
    return 'channel_data.user_id is missing';
  return { user_id: userId, user_info: (data as { user_info?: unknown }).user_info ?? null };
}

/** Presence as the events endpoint uses it: one node (PresenceRegistry) or a cluster. */
export interface Presence {
  /** Adds one stream of `member`; resolves once others have been told (if it is the first). */
  join(channel: string, member: PresenceMember): void | Promise<void>;
  /** Removes one stream of the user; tells the others when it was the last. Never throws. */
  leave(channel: string, userId: string | number): void;
  /** The askr:presence.members frame a new stream of `channel` gets first. */
  membersFrame(channel: string): Buffer;
  close(): void;
}

export class PresenceRegistry implements Presence {
  readonly #publishFn: PublishFn;
  readonly #channels = new Map<string, Map<string, Present>>();
  #closed = false;

  /** `publish`: how join/leave events enter the hub (the cluster bus on several nodes). */
  constructor(hub: Hub, publish?: PublishFn) {
    this.#publishFn = publish ?? ((input) => Promise.resolve(hub.publish(input)));
  }

  /** Adds one stream of `member`; publishes a join when it is the user's first on `channel`. */
  join(channel: string, member: PresenceMember): Promise<void> | void {
    let members = this.#channels.get(channel);
    if (members === undefined) {
      members = new Map();
      this.#channels.set(channel, members);
    }
    const key = String(member.user_id);
    const present = members.get(key);
    if (present !== undefined) {
      present.streams++;
      present.member = member;
      return;
    }
    members.set(key, { member, streams: 1 });
    return this.#publish(channel, 'askr:presence.join', { channel, member });
  }

  /** Removes one stream of the user; publishes a leave when it was the last. */
  leave(channel: string, userId: string | number): void {
    const members = this.#channels.get(channel);
    const key = String(userId);
    const present = members?.get(key);
    if (members === undefined || present === undefined) return;
    present.streams--;
    if (present.streams > 0) return;
    members.delete(key);
    if (members.size === 0) this.#channels.delete(channel);
    void this.#publish(channel, 'askr:presence.leave', { channel, member: present.member });
  }

  members(channel: string): PresenceMember[] {
    return [...(this.#channels.get(channel)?.values() ?? [])].map((p) => p.member);
  }

  /** The frame a new stream gets first (no id: it does not move the client's position). */
  membersFrame(channel: string): Buffer {
    return encodeFrame({
      event: 'askr:presence.members',
      data: JSON.stringify({ channel, members: this.members(channel) }),
    });
  }

  /** On shutdown: streams close without announcing leaves to a hub that is draining. */
  close(): void {
    this.#closed = true;
  }

  #publish(channel: string, event: string, payload: unknown): Promise<void> | void {
    if (this.#closed) return;
    // A presence event that cannot be published is not worth a crash; the stream goes on.
    return this.#publishFn({
      channels: [channel],
      event,
      data: Buffer.from(JSON.stringify(payload)),
      ingress: 'internal',
    }).then(
      () => undefined,
      () => undefined,
    );
  }
}
