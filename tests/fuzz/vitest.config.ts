import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['@dorajs/source', 'module', 'import', 'node', 'default'] },
  ssr: { resolve: { conditions: ['@dorajs/source', 'module', 'import', 'node', 'default'] } },
  test: { include: ['test/**/*.test.ts'], testTimeout: 180_000, hookTimeout: 60_000 },
});
