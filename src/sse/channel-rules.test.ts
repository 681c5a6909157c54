/**
 * sortChannelList: the per-channel verdicts of POST /askr/auth (issue 12). A bad name or one too
 * many refuses that channel only; the first `maxChannels` VALID names are kept, in order.
 */
import { describe, expect, it } from 'vitest';
import { sortChannelList } from './channel-rules.ts';

const LIMITS = { maxChannels: 3, maxNameLength: 10 };
const OVER = 'over the limit of 3 channels per stream (sse.max_channels_per_connection)';

describe('sortChannelList', () => {
  it.each<[string, string[], string[], Array<[string, string]>]>([
    ['all kept', ['a', 'b', 'c'], ['a', 'b', 'c'], []],
    [
      'past the limit',
      ['a', 'b', 'c', 'd', 'e'],
      ['a', 'b', 'c'],
      [
        ['d', OVER],
        ['e', OVER],
      ],
    ],
    [
      'a bad name takes no place',
      ['a', 'bad name', 'b', 'c', 'd'],
      ['a', 'b', 'c'],
      [
        ['bad name', 'channel name "bad name" has a character outside A-Z a-z 0-9 _ - = @ , . ;'],
        ['d', OVER],
      ],
    ],
    [
      'a name too long, even past the limit, says so',
      ['a', 'b', 'c', 'x'.repeat(11)],
      ['a', 'b', 'c'],
      [['x'.repeat(11), 'channel name is 11 bytes; the limit is 10 (sse.max_channel_name_length)']],
    ],
    ['an empty name', ['', 'a'], ['a'], [['', 'channel name is empty']]],
  ])('%s', (_name, channels, kept, refused) => {
    const sorted = sortChannelList(channels, LIMITS);
    expect(sorted.kept).toEqual(kept);
    expect(sorted.refused.map((r) => [r.name, r.reason])).toEqual(refused);
  });
});
