/**
 * Client side of grants for the integration tests (test/sse-grants.test.ts,
 * test/sse-whisper.test.ts): POST /askr/auth and /askr/whisper as a page's fetch would, and the
 * request counter of the fixture app's auth route (fixtures-php/app/public/sse-grants-app.php),
 * which proves when PHP was, or was not, asked.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'undici';

/** The fixture front controller with the counting auth route. */
export const GRANTS_APP = { 'server.index': 'sse-grants-app.php', 'log.access_log': 'false' };

export interface ChannelAnswer {
  allowed: boolean;
  status?: number;
  reason?: string;
  member?: { user_id: number | string; user_info?: unknown };
}

export interface AuthAnswer {
  status: number;
  setCookie: string | undefined;
  json: {
    grant: string;
    expires_at: number;
    socket_id: string;
    channels: Record<string, ChannelAnswer>;
  };
  text: string;
}

/** POST {base}/askr/auth with a JSON body (or `raw` as is) and the page's headers. */
export async function postAuth(
  base: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<AuthAnswer> {
  const res = await request(`${base}/askr/auth`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  const cookie = res.headers['set-cookie'];
  return {
    status: res.statusCode,
    setCookie: Array.isArray(cookie) ? cookie[0] : cookie,
    json: res.statusCode === 200 ? (JSON.parse(text) as AuthAnswer['json']) : ({} as never),
    text,
  };
}

/** POST {base}/askr/whisper. */
export async function postWhisper(
  base: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const res = await request(`${base}/askr/whisper`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

/** A counter of the auth route's requests: send `cookie` with every request, read `count()`. */
export interface AuthCounter {
  cookie: string;
  count(): Promise<number>;
}

export function authCounter(base: string): AuthCounter {
  const id = randomBytes(8).toString('hex');
  return {
    cookie: `counter=${id}`,
    async count() {
      const res = await request(`${base}/count?id=${id}`);
      return ((await res.body.json()) as { count: number }).count;
    },
  };
}

/** The payload of a grant token (not verified: what the sidecar signed). */
export function grantPayload(token: string): {
  c: string[];
  m: Record<string, unknown>;
  s: string | null;
  exp: number;
} {
  return JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as never;
}
