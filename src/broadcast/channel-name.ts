/**
 * Channel-name rules shared by every ingress (datagram, HTTP publish, holds) and the events
 * endpoint. Names are ASCII from Pusher's channel charset less ',' and ';' (they separate
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
