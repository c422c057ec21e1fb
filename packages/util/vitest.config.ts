import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    pool: 'forks',
    // Tests talk to real Postgres, Redis and child processes on a shared 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
