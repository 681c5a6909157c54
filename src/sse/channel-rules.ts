/**
 * Channel rules, their one home: every ingress (datagram, HTTP publish, holds, the cluster bus)
 * and the events endpoint check names, lists and socket ids here; `broadcast/` depends on this,
 * never the reverse. Names are ASCII from Pusher's channel charset (`A-Z a-z 0-9 _ - = @ , . ;`),
 * so every name a Laravel/Pusher app uses fits. Invariants the SSE side relies on: no ':', space
 * or control character ever appears in a name; an event id `<epoch>-<seq>@<channel>` still
 * parses because the epoch has no '@' and the seq is digits (the FIRST '@' separates). ',' and
 * ';' separate channels in header lists (X-Askr-Subscribe, Grip-Channel): names holding them can
 * be published to and subscribed to with repeated `channel=` parameters, not through a header.
 */

/** Pusher's channel charset: letters, digits and _ - = @ , . ; (no ':' or spaces). */
const CHANNEL_RE = /^[A-Za-z0-9_\-=@,.;]+$/;
/** The charset as messages name it. */
export const CHANNEL_CHARSET = 'A-Z a-z 0-9 _ - = @ , . ;';

/** Returns null when valid, else a precise reason suitable for a 4xx body or a log line. */
export function channelNameProblem(name: string, maxLengthBytes: number): string | null {
  if (name.length === 0) return 'channel name is empty';
  if (Buffer.byteLength(name) > maxLengthBytes) {
    return `channel name is ${Buffer.byteLength(name)} bytes; the limit is ${maxLengthBytes}`;
  }
  if (!CHANNEL_RE.test(name)) {
    return `channel name ${JSON.stringify(name)} has a character outside ${CHANNEL_CHARSET}`;
  }
  return null;
}

/**
 * A stream's socket id (Pusher's format, what Echo sends as X-Socket-ID and Laravel's toOthers()
 * passes back): digits '.' digits, each part at most 20 digits (a bound on what a client may
 * choose; the sidecar mints `<u32>.<u32>`).
 */
const SOCKET_ID_RE = /^\d{1,20}\.\d{1,20}$/;
export const SOCKET_ID_FORMAT = '<digits>.<digits> (e.g. "1234.5678"), at most 20 digits each';

export function isSocketId(value: string): boolean {
  return SOCKET_ID_RE.test(value);
}

/** Channels that need the app's authorization (Laravel conventions). */
export function isPrivateChannel(name: string): boolean {
  return name.startsWith('private-') || name.startsWith('presence-');
}

/** The [sse] limits a channel list is checked against. */
export interface ChannelLimits {
  /** sse.max_channels_per_connection */
  maxChannels: number;
  /** sse.max_channel_name_length, bytes */
  maxNameLength: number;
}

/** Validates a channel list against the limits; returns the problem (naming the key) or null. */
export function channelListProblem(
  channels: readonly string[],
  limits: ChannelLimits,
): string | null {
  if (channels.length === 0) return 'no channel given: use ?channel=NAME (repeatable)';
  if (channels.length > limits.maxChannels) {
    return `${channels.length} channels requested; the limit is ${limits.maxChannels} (sse.max_channels_per_connection)`;
  }
  for (const name of channels) {
    const problem = channelNameProblem(name, limits.maxNameLength);
    if (problem !== null) return `${problem} (sse.max_channel_name_length)`;
  }
  return null;
}

/** A channel of a requested list and why it is refused. */
export interface RefusedChannel {
  name: string;
  reason: string;
}

/**
 * Sorts a requested list (duplicates removed) channel by channel, for answers that refuse one
 * channel and keep the others (POST /askr/auth): a bad name is refused, and so is every valid
 * name past the first `maxChannels` valid ones (the list keeps its order). The events endpoint
 * refuses a whole list instead ({@link channelListProblem}).
 */
export function sortChannelList(
  channels: readonly string[],
  limits: ChannelLimits,
): { kept: string[]; refused: RefusedChannel[] } {
  const kept: string[] = [];
  const refused: RefusedChannel[] = [];
  for (const name of channels) {
    const problem = channelNameProblem(name, limits.maxNameLength);
    if (problem !== null) {
      const tooLong = Buffer.byteLength(name) > limits.maxNameLength;
      refused.push({
        name,
        reason: tooLong ? `${problem} (sse.max_channel_name_length)` : problem,
      });
    } else if (kept.length >= limits.maxChannels) {
      refused.push({
        name,
        reason: `over the limit of ${limits.maxChannels} channels per stream (sse.max_channels_per_connection)`,
      });
    } else {
      kept.push(name);
    }
  }
  return { kept, refused };
}

/** The channel limits of a config's [sse] section. */
export function channelLimitsOf(sse: {
  max_channels_per_connection: number;
  max_channel_name_length: number;
}): ChannelLimits {
  return {
    maxChannels: sse.max_channels_per_connection,
    maxNameLength: sse.max_channel_name_length,
  };
}
