import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['@dorajs/source', 'module', 'import', 'node', 'default'] },
  ssr: { resolve: { conditions: ['@dorajs/source', 'module', 'import', 'node', 'default'] } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    // ephemeralGpuOffload: true reaches Dawn, which needs Mesa's surfaceless EGL on machines without a GPU.
    env: { EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' },
  },
});
