import { defineConfig } from 'vitest/config';

const conditions = ['@dorajs/source', 'module', 'import', 'node', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // One Dawn instance per process and a slow software rasterizer: one worker, files in sequence.
    fileParallelism: false,
    maxWorkers: 1,
    pool: 'forks',
    env: { EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' },
  },
});
