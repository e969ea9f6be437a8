import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/redis.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // one Redis server for the run; files share it through random key prefixes
    fileParallelism: true,
    reporters: ['default', ['json', { outputFile: '.vitest-report.json' }]],
  },
})
