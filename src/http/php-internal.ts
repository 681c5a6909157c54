/**
 * Internal requests to PHP (channel authorization, FPM status): one whole FastCGI exchange whose
 * response is collected in memory, bounded by `maxBodyBytes`. Never reaches a client directly.
 */
import type { FcgiPool } from '../fastcgi/pool.ts';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { CgiHeadParser, type CgiHead } from './cgi-response.ts';

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
  const parser = new CgiHeadParser(64 * 1024);
  let head: CgiHead | null = null;
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of call.stdout as AsyncIterable<Buffer>) {
      if (head === null) {
        const r = parser.push(chunk);
        if ('error' in r)
          throw new SidecarError(ErrorCodes.UPSTREAM_RESPONSE, r.error, { status: 502 });
        if (!r.done) continue;
        head = r.head;
        parts.push(r.rest);
        size += r.rest.length;
      } else {
        parts.push(chunk);
        size += chunk.length;
      }
      if (size > request.maxBodyBytes) {
        throw new SidecarError(
          ErrorCodes.UPSTREAM_RESPONSE,
          `internal PHP response exceeds ${request.maxBodyBytes} bytes`,
          { status: 502 },
        );
      }
    }
    await call.done;
  } catch (err) {
    call.abort();
    throw err;
  }
  if (head === null) {
    const r = parser.finish();
    if (!r.done)
      throw new SidecarError(
        ErrorCodes.UPSTREAM_RESPONSE,
        'error' in r ? r.error : 'empty response',
        { status: 502 },
      );
    head = r.head;
  }
  return { status: head.status, headers: head.headers, body: Buffer.concat(parts, size), stderr };
}
