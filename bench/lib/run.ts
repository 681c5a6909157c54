/**
 * How a benchmark's entry point runs: `main`, then `cleanup` (stop every process started, remove
 * temp files) and exit, with 0 when main returned, 1 when it threw (printed) and 130 / 143 on
 * SIGINT / SIGTERM, which clean up at once. Cleanup runs once, whichever comes first.
 */
export function runBench(main: () => Promise<void>, cleanup: () => Promise<void>): void {
  let stopping = false;
  const shutdown = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await cleanup();
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(130));
  process.on('SIGTERM', () => void shutdown(143));
  main().then(
    () => shutdown(0),
    (err: unknown) => {
      console.error(err);
      return shutdown(1);
    },
  );
}
