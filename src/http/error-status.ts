/**
 * The one table that turns error codes into HTTP answers. Errors below `http/` (fastcgi, cgi,
 * sse) carry a code and never a status; this module decides what a client sees and what the
 * access log records (499: the client left, nothing was sent). Public messages never carry
 * internal addresses: FPM socket paths and upstream host:ports stay in the log.
 */
import { ErrorCodes, isSidecarError, type ErrorCode } from '../errors.ts';

/** Code -> status. Codes missing here (config, FPM start) never reach a client: 500. */
const STATUS: Readonly<Partial<Record<ErrorCode, number>>> = {
  [ErrorCodes.FCGI_CONNECT]: 502,
  [ErrorCodes.FCGI_CONNECTION_CLOSED]: 502,
  [ErrorCodes.FCGI_PROTOCOL]: 502,
  [ErrorCodes.UPSTREAM_RESPONSE]: 502,
  [ErrorCodes.FCGI_POOL_EXHAUSTED]: 503,
  [ErrorCodes.FCGI_POOL_CLOSED]: 503,
  [ErrorCodes.CLUSTER_UNAVAILABLE]: 503,
  [ErrorCodes.FCGI_TIMEOUT]: 504,
  [ErrorCodes.UPSTREAM_TIMEOUT]: 504,
  [ErrorCodes.FCGI_ABORTED]: 499,
  [ErrorCodes.BODY_ABORTED]: 499,
  [ErrorCodes.CLIENT_GONE]: 499,
  [ErrorCodes.SEND_TIMEOUT]: 499,
  [ErrorCodes.FCGI_PARAMS_TOO_LARGE]: 431,
  [ErrorCodes.BODY_TOO_LARGE]: 413,
  [ErrorCodes.BODY_TIMEOUT]: 408,
  [ErrorCodes.BAD_REQUEST]: 400,
  [ErrorCodes.SSE_ENCODE]: 400,
  [ErrorCodes.CHANNEL_FORBIDDEN]: 403,
  [ErrorCodes.LIMIT]: 429,
  [ErrorCodes.STATIC_FILE]: 500,
  [ErrorCodes.TEMP_FILE]: 500,
};

/** The status an error is answered with (500 for anything that is not a SidecarError). */
export function httpStatusOf(err: unknown): number {
  if (!isSidecarError(err)) return 500;
  return httpStatusOfCode(err.code);
}

/** The status for an error code (500 for codes that never reach a client). */
export function httpStatusOfCode(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

/** `unix:/path`, absolute paths and IPv4/IPv6 host:port pairs, as they appear in our messages. */
const INTERNAL_ADDRESS = /(unix:)?\/[^\s:()]+|\[[0-9a-fA-F:.]+\]:\d+|\b\d{1,3}(\.\d{1,3}){3}:\d+/g;

/** The message a client may see for an error: what went wrong, never where. */
export function publicMessageOf(err: unknown): string {
  if (!isSidecarError(err)) return 'internal error';
  const status = httpStatusOf(err);
  const message = err.message.replace(INTERNAL_ADDRESS, '<fpm>');
  if (status === 502) return `PHP-FPM is unavailable or failed: ${message}`;
  if (status === 504) return `PHP-FPM did not answer in time: ${message}`;
  if (status === 500) return 'internal error';
  return message;
}
