/**
 * Reads the small JSON bodies of the browser-facing POST routes (/askr/auth, /askr/whisper):
 * Content-Type must be application/json (a cross-site HTML form cannot send it, so these routes
 * are not reachable by a form post: the CSRF guard), the size is bounded before anything is kept,
 * and the document must be a JSON object. Failures come back as the status and message to send.
 */
import type { IncomingMessage } from 'node:http';

export type JsonRequest =
  | { ok: true; doc: Record<string, unknown> }
  | { ok: false; status: 400 | 413 | 415; reason: 'bad_request' | 'too_large'; message: string };

/** Reads and parses the body; answers what is wrong (never throws for client input). */
export async function readJsonObject(
  req: IncomingMessage,
  maxBytes: number,
  limitKey: string,
): Promise<JsonRequest> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    return {
      ok: false,
      status: 415,
      reason: 'bad_request',
      message: 'send a JSON body with Content-Type: application/json',
    };
  }
  const tooLarge = {
    ok: false,
    status: 413,
    reason: 'too_large',
    message: `the body exceeds ${maxBytes} bytes (${limitKey})`,
  } as const;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) return tooLarge;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) return tooLarge;
    chunks.push(chunk);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.concat(chunks, size).toString('utf8'));
  } catch {
    return { ok: false, status: 400, reason: 'bad_request', message: 'the body is not valid JSON' };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return {
      ok: false,
      status: 400,
      reason: 'bad_request',
      message: 'the body must be a JSON object',
    };
  }
  return { ok: true, doc: doc as Record<string, unknown> };
}
