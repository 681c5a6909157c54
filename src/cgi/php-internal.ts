/**
 * Internal requests to PHP (channel authorization, FPM status): one whole FastCGI exchange whose
 * response is collected in memory, bounded by `maxBodyBytes`. Never reaches a client directly.
 */
import type { FcgiPool } from '../fastcgi/pool.ts';
import { ErrorCodes, SidecarError } from '../errors.ts';
import type { CgiHead } from './cgi-head.ts';
import { collectBody, readPhpResponse } from './php-response.ts';

export interface InternalResponse {
  status: number;
  headers: CgiHead['headers'];
  body: Buffer;
  stderr: string;
}

export interface InternalRequest {
  params: ReadonlyArray<readonly [string, string]>;
  body?: Buffer;
  timeoutMs: number;
  maxBodyBytes: number;
}

export async function phpInternalRequest(
  pool: FcgiPool,
  request: InternalRequest,
): Promise<InternalResponse> {
  let stderr = '';
  const call = await pool.request({
    params: request.params,
    body: request.body ?? null,
    sendTimeoutMs: request.timeoutMs,
    readTimeoutMs: request.timeoutMs,
    onStderr: (chunk) => {
      if (stderr.length < 4096) stderr += chunk.toString('utf8');
    },
  });
  try {
    const response = await readPhpResponse(call);
    if ('error' in response) throw new SidecarError(ErrorCodes.UPSTREAM_RESPONSE, response.error);
    const body = await collectBody(response, call, request.maxBodyBytes);
    if (body === null) {
      throw new SidecarError(
        ErrorCodes.UPSTREAM_RESPONSE,
        `internal PHP response exceeds ${request.maxBodyBytes} bytes`,
      );
    }
    return { status: response.head.status, headers: response.head.headers, body, stderr };
  } catch (err) {
    call.abort();
    throw err;
  }
}
