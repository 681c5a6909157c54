/**
 * Headless Chromium for the browser tests: Debian's chromium package driven by playwright-core
 * (ASKR_TEST_CHROMIUM names another binary, like ASKR_TEST_FPM_BINARY). Chromium missing is a
 * failure naming the fix, never a skip.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** The Chromium binary the browser tests launch. */
export const CHROMIUM = process.env['ASKR_TEST_CHROMIUM'] ?? '/usr/bin/chromium';

// Headless, and nothing that talks to the network on its own (updates, sync, QUIC probes).
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Launches CHROMIUM headless; the caller closes it. Throws an Error telling to run
 * `node scripts/ensure-system.mjs test` when the binary is missing, and rejects as playwright's
 * launch does when it cannot start.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `The browser tests need Debian's Chromium at ${CHROMIUM}. ` +
        `Run "node scripts/ensure-system.mjs test" (as root it installs the chromium package), ` +
        `or set ASKR_TEST_CHROMIUM to a Chromium binary.`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}
