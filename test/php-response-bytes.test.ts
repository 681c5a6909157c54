/**
 * A PHP body reaches the client byte for byte, with its length, whichever way the sidecar writes
 * it: a small complete page goes out as a latin1 string joined to the head (one write), a larger
 * one as a Buffer, a streamed one through the spool. Every byte value 0-255 is in the body, so a
 * text conversion that is not byte for byte (UTF-8 instead of latin1) changes it. A recurrence
 * looks like a body longer than its Content-Length, or bytes above 0x7f replaced.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { phpTempDir } from './helpers/php-temp.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

/** The bytes bytes.php prints for ?n=N: byte i is (i * 7 + 3) mod 256. */
function expected(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += 1) out[i] = (i * 7 + 3) % 256;
  return out;
}

let root: string;
let sidecar: TestSidecar;
beforeAll(async () => {
  root = await phpTempDir('askr-bytes-');
  await writeFile(
    join(root, 'bytes.php'),
    [
      '<?php',
      "header('Content-Type: application/octet-stream');",
      "$n = (int) ($_GET['n'] ?? 0);",
      "$out = '';",
      'for ($i = 0; $i < $n; $i++) { $out .= chr(($i * 7 + 3) % 256); }',
      "if (isset($_GET['flush'])) { echo substr($out, 0, 100); flush(); usleep(20000); echo substr($out, 100); } else { echo $out; }",
      '',
    ].join('\n'),
  );
  sidecar = await startTestSidecar({ 'server.root': root, 'server.index': 'bytes.php' });
});
afterAll(async () => {
  await sidecar.close();
  await rm(root, { recursive: true, force: true });
});

describe('PHP body bytes', () => {
  it.each([0, 1, 255, 256, 1000, 16 * 1024, 16 * 1024 + 1, 200_000])(
    'a body of %i bytes arrives intact with its Content-Length',
    async (n) => {
      const res = await request(`${sidecar.url}/any?n=${n}`);
      const body = Buffer.from(await res.body.arrayBuffer());
      expect(res.statusCode).toBe(200);
      expect(body.equals(expected(n))).toBe(true);
      // A small page comes with END_REQUEST, so the sidecar states its length (one write).
      if (n <= 1000) expect(res.headers['content-length']).toBe(String(n));
      else if (res.headers['content-length'] !== undefined) {
        expect(Number(res.headers['content-length'])).toBe(n);
      }
    },
  );

  it('a body PHP flushes in two parts arrives intact', async () => {
    const res = await request(`${sidecar.url}/any?n=5000&flush=1`);
    const body = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(body.equals(expected(5000))).toBe(true);
  });
});
