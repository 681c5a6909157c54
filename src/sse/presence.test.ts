/** channel_data parsing of presence auth responses (Pusher's string form and a plain object). */
import { describe, expect, it } from 'vitest';
import { memberFromAuthBody } from './presence.ts';

describe('memberFromAuthBody', () => {
  it.each([
    [
      '{"channel_data":"{\\"user_id\\":7,\\"user_info\\":{\\"name\\":\\"a\\"}}"}',
      { user_id: 7, user_info: { name: 'a' } },
    ],
    ['{"channel_data":{"user_id":"u-1"}}', { user_id: 'u-1', user_info: null }],
  ])('accepts %s', (body, member) => {
    expect(memberFromAuthBody(Buffer.from(body))).toEqual(member);
  });
  it.each([
    ['not json', /must be JSON/],
    ['{"auth":true}', /user_id is missing/],
    ['{"channel_data":"{oops"}', /not valid JSON/],
    ['{"channel_data":{"user_id":{"x":1}}}', /user_id is missing/],
    ['null', /user_id is missing/],
  ])('rejects %s', (body, problem) => {
    expect(memberFromAuthBody(Buffer.from(body))).toMatch(problem);
  });
});
