import { defineConfig } from 'vitest/config';

// One runner for the whole monorepo: every workspace is a vitest project.
export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*', 'tests'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
