/**
 * FastCGI 1.0 protocol constants, under their spec names (fastcgi.h of the FastCGI 1.0 spec).
 * Pure data: no behaviour lives here. PHP-FPM never multiplexes (FCGI_MPXS_CONNS=0), so every
 * request this client sends uses FCGI_REQUEST_ID.
 */

/** The only protocol version that exists. */
export const FCGI_VERSION_1 = 1;

/** Every record starts with an 8-byte header. */
export const FCGI_HEADER_LEN = 8;

/** contentLength is a 16-bit field. */
export const FCGI_MAX_CONTENT_LENGTH = 65535;

/** Records are padded so that the whole record is a multiple of this many bytes (spec §3.3). */
export const FCGI_ALIGNMENT = 8;

/** Management records (GET_VALUES and the like) use request id 0. */
export const FCGI_NULL_REQUEST_ID = 0;

/** One request per connection at a time (FPM: FCGI_MPXS_CONNS=0), always id 1 like nginx. */
export const FCGI_REQUEST_ID = 1;

/** Record types (spec §8). */
export const RecordType = {
  FCGI_BEGIN_REQUEST: 1,
  FCGI_ABORT_REQUEST: 2,
  FCGI_END_REQUEST: 3,
  FCGI_PARAMS: 4,
  FCGI_STDIN: 5,
  FCGI_STDOUT: 6,
  FCGI_STDERR: 7,
  FCGI_DATA: 8,
  FCGI_GET_VALUES: 9,
  FCGI_GET_VALUES_RESULT: 10,
  FCGI_UNKNOWN_TYPE: 11,
} as const;

export type RecordTypeValue = (typeof RecordType)[keyof typeof RecordType];

/** Roles of FCGI_BEGIN_REQUEST (spec §5.1). */
export const Role = {
  FCGI_RESPONDER: 1,
  FCGI_AUTHORIZER: 2,
  FCGI_FILTER: 3,
} as const;

/** Flags of FCGI_BEGIN_REQUEST: keep the connection open after END_REQUEST (spec §5.1). */
export const BeginRequestFlags = {
  FCGI_KEEP_CONN: 1,
} as const;

/** protocolStatus of FCGI_END_REQUEST (spec §5.5). */
export const ProtocolStatus = {
  FCGI_REQUEST_COMPLETE: 0,
  FCGI_CANT_MPX_CONN: 1,
  FCGI_OVERLOADED: 2,
  FCGI_UNKNOWN_ROLE: 3,
} as const;
