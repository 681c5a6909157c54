/**
 * The response head every held stream gets (DESIGN.md §4), CORS for the events endpoint, and the
 * channel-list checks shared by the events endpoint and PHP holds.
 */
import type { IncomingMessage } from 'node:http';
import type { SidecarConfig } from '../config/schema.ts';
import { channelNameProblem } from '../broadcast/channel-name.ts';

export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

/** CORS headers for the events endpoint: "*" allows any origin without credentials; listed origins get credentials. */
export function corsHeaders(
  req: IncomingMessage,
  allowedOrigins: readonly string[],
): Record<string, string> {
  const origin = req.headers.origin;
  if (origin === undefined || allowedOrigins.length === 0) return {};
  if (allowedOrigins.includes(origin)) {
    return {
      'access-control-allow-origin': origin,
      'access-control-allow-credentials': 'true',
      vary: 'Origin',
    };
  }
  if (allowedOrigins.includes('*')) return { 'access-control-allow-origin': '*' };
  return {};
}

/** Validates a channel list against the [sse] limits; returns the problem or null. */
export function channelListProblem(
  channels: readonly string[],
  config: SidecarConfig,
): string | null {
  if (channels.length === 0) return 'no channel given: use ?channel=NAME (repeatable)';
  if (channels.length > config.sse.max_channels_per_connection) {
    return `${channels.length} channels requested; the limit is ${config.sse.max_channels_per_connection} (sse.max_channels_per_connection)`;
  }
  for (const name of channels) {
    const problem = channelNameProblem(name, config.sse.max_channel_name_length);
    if (problem !== null) return `${problem} (sse.max_channel_name_length)`;
  }
  return null;
}

/** `Last-Event-ID` header, else the `lastEventId` query parameter (EventSource cannot set headers on first connect). */
export function lastEventIdOf(req: IncomingMessage, url: URL): string | null {
  const header = req.headers['last-event-id'];
  if (typeof header === 'string' && header !== '') return header;
  return url.searchParams.get('lastEventId');
}

/** Splits "a, b" lists (X-Askr-Subscribe, Grip-Channel with ;params) into unique channel names. */
export function splitChannelHeader(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const name = (part.split(';')[0] ?? '').trim();
    if (name !== '' && !out.includes(name)) out.push(name);
  }
  return out;
}
