import { defineConfig } from 'vitest/config';

const conditions = ['@dorajs/source', 'module', 'import', 'node', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 180_000,
    // WebGPU runs through Dawn (one instance per process) on a software rasterizer here: one worker.
    fileParallelism: false,
    maxWorkers: 1,
    pool: 'forks',
    env: { EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' },
  },
});
