/**
 * The kernels the browser test runs, shared by the page (test/browser/page.ts, bundled for Chromium) and the
 * Node side (test/browser.test.ts, which computes its own reference). No vitest here: it is bundled.
 */
import type { CpuBackend, CpuInfo, CpuStorage } from '../../src/index.js';
import { seeded } from '../seeded.js';

type Up = (values: Float32Array, shape: number[]) => CpuInfo;

export interface BrowserCase {
  readonly name: string;
  readonly outShape: number[];
  readonly run: (be: CpuBackend, up: Up) => CpuStorage;
}

/** Large enough that a backend with splitThreshold 0 (or the default 2¹⁸) splits each across threads. */
export const CASES: readonly BrowserCase[] = [
  {
    name: 'matmul 256×300·300×190',
    outShape: [256, 190],
    run: (be, up) => be.matmul(up(seeded(256 * 300, 1), [256, 300]), up(seeded(300 * 190, 2), [300, 190]), {}, [256, 190]),
  },
  {
    name: 'matmul 256×300·(190×300)ᵀ',
    outShape: [256, 190],
    run: (be, up) =>
      be.matmul(up(seeded(256 * 300, 3), [256, 300]), up(seeded(190 * 300, 4), [190, 300]), { transposeB: true }, [256, 190]),
  },
  {
    name: 'GEMV 1×2000·2000×600',
    outShape: [1, 600],
    run: (be, up) => be.matmul(up(seeded(2000, 5), [1, 2000]), up(seeded(2000 * 600, 6), [2000, 600]), {}, [1, 600]),
  },
  {
    name: 'weightNorm 300×1000 r 8',
    outShape: [300],
    run: (be, up) =>
      be.weightNorm(up(seeded(300 * 1000, 7), [300, 1000]), up(seeded(8 * 1000, 8), [8, 1000]), up(seeded(300 * 8, 9), [300, 8]), 2, {}),
  },
];

/** Runs one case on `be` with fresh uploads; releases everything it made, the result included. */
export async function runCase(be: CpuBackend, c: BrowserCase): Promise<Float32Array> {
  const owned: CpuStorage[] = [];
  const up: Up = (values, shape) => {
    const data = be.upload(values, shape, 'float32');
    owned.push(data);
    return { data, shape, dtype: 'float32' };
  };
  const h = c.run(be, up);
  owned.push(h);
  try {
    return (await be.download({ data: h, shape: c.outShape, dtype: 'float32' })) as Float32Array;
  } finally {
    for (const o of owned) be.release(o);
  }
}
