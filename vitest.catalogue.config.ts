import { defineConfig } from 'vitest/config';

// npm run test:catalogue: the long catalogue budgets (test/*.hunt.ts), not part of npm test
export default defineConfig({
  test: {
    include: ['test/**/*.hunt.ts'],
    pool: 'forks',
    testTimeout: 3_600_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
  },
});
