import { defineConfig } from 'vitest/config';

// Tests that spawn queue workers load them from dist/: `npm test` builds first.
// Timeouts fail a test instead of hanging the suite.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup/fast-check-seed.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
