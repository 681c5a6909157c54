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

/** Cleanup steps a test file registers; run them with runCleanups() in afterEach. */
export type Cleanups = Array<() => Promise<void> | void>;

/**
 * Runs and empties `cleanups`, last registered first, every one even when some fail; then
 * throws the first failure (a test's own failure is reported before it by vitest).
 */
export async function runCleanups(cleanups: Cleanups): Promise<void> {
  const errors: unknown[] = [];
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw errors[0];
}
