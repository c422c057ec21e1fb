import { defineProject } from 'vitest/config';

// Repository-level checks (deployment files, layout) that belong to no package.
export default defineProject({
  test: { name: 'repo', include: ['**/*.test.ts'], testTimeout: 120_000 },
});
