/**
 * Channel rules, their one home: every ingress (datagram, HTTP publish, holds, the cluster bus)
 * and the events endpoint check names and lists here; `broadcast/` depends on this, never the
 * reverse. Names are ASCII from Pusher's channel charset less ',' and ';' (they separate
 * channels in X-Askr-Subscribe and Grip-Channel), so Laravel names such as
 * "private-App.Models.User.42" fit, and ':' / '@' / spaces never appear in one (the SSE id
 * format relies on that).
 */

/** Letters, digits and _ - = . (no ',' ';' ':' '@' or spaces). */
const CHANNEL_RE = /^[A-Za-z0-9_\-=.]+$/;

/** Returns null when valid, else a precise reason suitable for a 4xx body or a log line. */
export function channelNameProblem(name: string, maxLengthBytes: number): string | null {
  if (name.length === 0) return 'channel name is empty';
  if (Buffer.byteLength(name) > maxLengthBytes) {
    return `channel name is ${Buffer.byteLength(name)} bytes; the limit is ${maxLengthBytes}`;
  }
  if (!CHANNEL_RE.test(name)) {
    return `channel name ${JSON.stringify(name)} has a character outside A-Z a-z 0-9 _ - = .`;
  }
  return null;
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
