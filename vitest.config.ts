// Two projects: `unit` (pure code beside src files, no external processes) and `integration`
// (test/: a real php-fpm started once in globalSetup, real sockets, real clients).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          globalSetup: ['test/helpers/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Integration files each start their own sidecar; the machine has 2 cores.
          maxWorkers: 2,
        },
      },
    ],
  },
});
