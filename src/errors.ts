/**
 * The one error hierarchy of the sidecar. Every error carries a stable `code` that callers branch
 * on (never on message text), never an HTTP status: src/http/error-status.ts maps codes to the
 * statuses clients see. `cause` is always passed through so logs show the root.
 */

export const ErrorCodes = {
  CONFIG: 'ASKR_ERR_CONFIG',
  FCGI_PROTOCOL: 'ASKR_ERR_FCGI_PROTOCOL',
  FCGI_CONNECT: 'ASKR_ERR_FCGI_CONNECT',
  FCGI_CONNECTION_CLOSED: 'ASKR_ERR_FCGI_CONNECTION_CLOSED',
  FCGI_TIMEOUT: 'ASKR_ERR_FCGI_TIMEOUT',
  FCGI_POOL_EXHAUSTED: 'ASKR_ERR_FCGI_POOL_EXHAUSTED',
  FCGI_POOL_CLOSED: 'ASKR_ERR_FCGI_POOL_CLOSED',
  FCGI_ABORTED: 'ASKR_ERR_FCGI_ABORTED',
  FCGI_PARAMS_TOO_LARGE: 'ASKR_ERR_FCGI_PARAMS_TOO_LARGE',
  UPSTREAM_RESPONSE: 'ASKR_ERR_UPSTREAM_RESPONSE',
  UPSTREAM_TIMEOUT: 'ASKR_ERR_UPSTREAM_TIMEOUT',
  BODY_TOO_LARGE: 'ASKR_ERR_BODY_TOO_LARGE',
  BODY_TIMEOUT: 'ASKR_ERR_BODY_TIMEOUT',
  BODY_ABORTED: 'ASKR_ERR_BODY_ABORTED',
  SEND_TIMEOUT: 'ASKR_ERR_SEND_TIMEOUT',
  CLIENT_GONE: 'ASKR_ERR_CLIENT_GONE',
  BAD_REQUEST: 'ASKR_ERR_BAD_REQUEST',
  CHANNEL_FORBIDDEN: 'ASKR_ERR_CHANNEL_FORBIDDEN',
  FPM_START: 'ASKR_ERR_FPM_START',
  SSE_ENCODE: 'ASKR_ERR_SSE_ENCODE',
  LIMIT: 'ASKR_ERR_LIMIT',
  DATAGRAM: 'ASKR_ERR_DATAGRAM',
  STATIC_FILE: 'ASKR_ERR_STATIC_FILE',
  TEMP_FILE: 'ASKR_ERR_TEMP_FILE',
  CLUSTER_UNAVAILABLE: 'ASKR_ERR_CLUSTER_UNAVAILABLE',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface SidecarErrorOptions {
  cause?: unknown;
}

export class SidecarError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: SidecarErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SidecarError';
    this.code = code;
  }
}

/** A configuration problem: names the source (file, env var or flag), the key, the value and what is allowed. */
export class ConfigError extends SidecarError {
  constructor(message: string, options: SidecarErrorOptions = {}) {
    super(ErrorCodes.CONFIG, message, options);
    this.name = 'ConfigError';
  }
}

export function isSidecarError(err: unknown): err is SidecarError {
  return err instanceof SidecarError;
}

/** Narrow an unknown thrown value to an Error, for logging. */
export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
