/**
 * Polling for integration tests whose condition has no event to wait on (pool and hub counters,
 * process liveness). Polls every 10 ms and fails with an error after the deadline: never hangs.
 */

/**
 * Resolves once `check()` returns true; rejects after `timeoutMs` with an error naming `what`.
 * `check` runs at once, then every 10 ms.
 */
export async function until(
  check: () => boolean,
  timeoutMs = 5000,
  what = 'the condition',
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
