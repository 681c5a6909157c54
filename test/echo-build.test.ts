/**
 * php/js/askr-connector.iife.js is generated from the ES modules by scripts/build-js.mjs: the
 * committed file must be exactly what the script writes (a stale script build would ship old code
 * to every page that loads it with <script>).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../scripts/build-js.mjs', import.meta.url));

describe('the script build of the connector', () => {
  it('php/js/askr-connector.iife.js is what scripts/build-js.mjs generates', async () => {
    const result = await run(process.execPath, [SCRIPT, '--check']).then(
      () => 'in sync',
      (err: unknown) => (err as { stderr?: string }).stderr ?? String(err),
    );
    expect(result).toBe('in sync');
  });
});
