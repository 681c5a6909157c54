/**
 * Where a request presents a Mercure access token (spec "Presenting the Access Token", RFC 6750
 * section 2: the Authorization header, a cookie, 0.x fallbacks in compatibility mode) and how the
 * hub answers an authorization failure (AuthError, the RFC 6750 section 3 Bearer challenge).
 * Invariants: the header wins over any cookie; a malformed presentation is 400 invalid_request,
 * never ignored; a presented token is a b64token of at most max_token_size bytes.
 */
import type { IncomingHttpHeaders } from 'node:http';

export type AuthErrorCode = 'invalid_request' | 'invalid_token' | 'insufficient_scope';

/**
 * An authorization failure, in RFC 6750 terms: the endpoint answers `status` with a
 * `WWW-Authenticate: Bearer` challenge carrying `error` (none when null: no token presented).
 * The message is precise, for the log; the client is not told why a token failed.
 */
export class AuthError extends Error {
  readonly status: 400 | 401 | 403;
  readonly error: AuthErrorCode | null;

  constructor(
    status: 400 | 401 | 403,
    error: AuthErrorCode | null,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AuthError';
    this.status = status;
    this.error = error;
  }
}

/** The 401 invalid_token AuthError; `message` (for the log) says why the token was refused. */
export function invalidToken(message: string, cause?: unknown): AuthError {
  return new AuthError(401, 'invalid_token', message, { cause });
}

// ---------------------------------------------------------------------------------------------
// Presentation (spec "Presenting the Access Token", RFC 6750 section 2)

/** RFC 6750 section 2.1 b64token; a compact JWS uses a subset of it. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

const LEGACY_COOKIE = 'mercureAuthorization';
const LEGACY_QUERY = 'authorization';

function invalidRequest(message: string): AuthError {
  return new AuthError(400, 'invalid_request', message);
}

function checked(token: string, via: string, maxTokenSize: number): string {
  const bytes = Buffer.byteLength(token);
  if (bytes > maxTokenSize) {
    throw invalidRequest(`token in ${via} is ${bytes} bytes, over max_token_size ${maxTokenSize}`);
  }
  if (!B64TOKEN.test(token))
    throw invalidRequest(`token in ${via} has characters outside b64token`);
  return token;
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue;
    const value = pair.slice(eq + 1).trim();
    return value.length >= 2 && value.startsWith('"') && value.endsWith('"')
      ? value.slice(1, -1)
      : value;
  }
  return undefined;
}

/**
 * Where the token came from: the Authorization header (scheme Bearer, case-insensitive; it wins
 * over any cookie), else the cookie `cookieName`, else — compatibility only — the
 * `mercureAuthorization` cookie, then the `authorization` query parameter. An empty cookie (a
 * cleared one) counts as absent. Returns null when none is presented. Throws AuthError(400,
 * 'invalid_request') for a malformed presentation: a non-Bearer or empty Authorization, several
 * Authorization headers, several `authorization` parameters, a token that is not a b64token or is
 * over maxTokenSize.
 */
export function tokenOf(
  req: { headers: IncomingHttpHeaders; rawHeaders: string[] },
  url: URL,
  opts: { cookieName: string; compatibility: boolean; maxTokenSize: number },
): { token: string; via: 'header' | 'cookie' | 'query' } | null {
  // Node keeps only the first of repeated Authorization headers: count them in rawHeaders.
  let authorizations = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]?.toLowerCase() === 'authorization') authorizations++;
  }
  if (authorizations > 1) throw invalidRequest('several Authorization headers');
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const value = authorization.trim();
    if (value === '') throw invalidRequest('empty Authorization header');
    const space = value.search(/[ \t]/);
    const scheme = space === -1 ? value : value.slice(0, space);
    if (scheme.toLowerCase() !== 'bearer') {
      throw invalidRequest(`Authorization scheme ${JSON.stringify(scheme)} is not Bearer`);
    }
    const token = space === -1 ? '' : value.slice(space + 1).trim();
    if (token === '') throw invalidRequest('Authorization: Bearer without a token');
    return { token: checked(token, 'the Authorization header', opts.maxTokenSize), via: 'header' };
  }
  const cookieNames = opts.compatibility ? [opts.cookieName, LEGACY_COOKIE] : [opts.cookieName];
  for (const name of cookieNames) {
    const token = cookieValue(req.headers.cookie, name);
    if (token !== undefined && token !== '') {
      return { token: checked(token, `the ${name} cookie`, opts.maxTokenSize), via: 'cookie' };
    }
  }
  if (opts.compatibility) {
    // 0.x only: RFC 9700 forbids tokens in URLs, and 1.0 dropped this parameter.
    const values = url.searchParams.getAll(LEGACY_QUERY).filter((v) => v !== '');
    if (values.length > 1) throw invalidRequest(`several ${LEGACY_QUERY} query parameters`);
    const token = values[0];
    if (token !== undefined) {
      return {
        token: checked(token, `the ${LEGACY_QUERY} query parameter`, opts.maxTokenSize),
        via: 'query',
      };
    }
  }
  return null;
}

/** RFC 9110 quoted-string: CTLs and non-ASCII become spaces, `"` and `\` are escaped. */
function quoted(value: string): string {
  const visible = value.replace(/[^\x20-\x7e]/g, ' ');
  return `"${visible.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/**
 * The WWW-Authenticate value (RFC 6750 section 3): `Bearer`, then `error`, `error_description`
 * and `resource_metadata` (RFC 9728) when given, each a quoted-string.
 */
export function bearerChallenge(opts: {
  error?: string | null;
  description?: string;
  resourceMetadata?: string;
}): string {
  const params: string[] = [];
  if (opts.error !== undefined && opts.error !== null) params.push(`error=${quoted(opts.error)}`);
  if (opts.description !== undefined) params.push(`error_description=${quoted(opts.description)}`);
  if (opts.resourceMetadata !== undefined) {
    params.push(`resource_metadata=${quoted(opts.resourceMetadata)}`);
  }
  return params.length === 0 ? 'Bearer' : `Bearer ${params.join(', ')}`;
}
