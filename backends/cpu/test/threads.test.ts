/**
 * Worker threads: the split kernels give the same numbers as one thread, errors and disposal behave, and
 * workers never keep a Node process alive.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { createCpuBackend, type CpuBackend, type CpuInfo } from '../src/index.js';
import { CLAIM_AT, Ctl } from '../src/wasm/pool.js';
import { WORKER_SOURCE } from '../src/wasm/worker-source.js';
import { expectSame, seeded } from './helpers.js';

type Up = (values: Float32Array, shape: number[]) => CpuInfo;
const CONV = { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 } as const;
type Kernel = (be: CpuBackend, up: Up) => CpuInfo['data'];

/** Runs `kernel` on `be` with fresh uploads, returns its result and releases everything. */
async function run(be: CpuBackend, kernel: Kernel, shape: number[]): Promise<Float32Array> {
  const owned: CpuInfo['data'][] = [];
  const up: Up = (v, s) => {
    const data = be.upload(v, s, 'float32');
    owned.push(data);
    return { data, shape: s, dtype: 'float32' };
  };
  const h = kernel(be, up);
  const out = (await be.download({ data: h, shape, dtype: 'float32' })) as Float32Array;
  be.release(h);
  for (const o of owned) be.release(o);
  expect(be.liveBuffers()).toBe(0);
  return out;
}

describe('wasm kernels on worker threads', () => {
  const one = createCpuBackend({ kernels: 'wasm', threads: 1 });
  const two = createCpuBackend({ kernels: 'wasm', threads: 2 });
  afterAll(() => two.dispose());

  it('report the threads they use and start', async () => {
    expect(two.threads).toBe(2);
    await two.ready();
  });

  it('describe the kernels and threads in one line', () => {
    const fma = two.fma ? ' + FMA' : '';
    expect(two.description).toBe(`wasm SIMD${fma}, 2 threads`);
    expect(one.description).toBe(`wasm SIMD${fma}, 1 thread`);
    const js = createCpuBackend({ kernels: 'js', threads: 2 });
    expect(js.description).toBe('typed-array kernels, 1 thread');
    js.dispose();
  });

  // Sizes above the default split threshold, so the split of a real run is what gets tested.
  const cases: [string, number[], Kernel][] = [
    [
      'matmul 200×300·300×190',
      [200, 190],
      (be, up) => be.matmul(up(seeded(200 * 300, 1), [200, 300]), up(seeded(300 * 190, 2), [300, 190]), {}, [200, 190]),
    ],
    [
      'batched matmul 3×(70×80·(90×80)ᵀ)',
      [3, 70, 90],
      (be, up) =>
        be.matmul(up(seeded(3 * 70 * 80, 3), [3, 70, 80]), up(seeded(3 * 90 * 80, 4), [3, 90, 80]), { transposeB: true }, [3, 70, 90]),
    ],
    // B packed once into a shared buffer: K long enough for two column blocks, A short enough to split columns.
    [
      'matmul 70×5000·(1000×5000)ᵀ',
      [70, 1000],
      (be, up) =>
        be.matmul(up(seeded(70 * 5000, 10), [70, 5000]), up(seeded(1000 * 5000, 11), [1000, 5000]), { transposeB: true }, [70, 1000]),
    ],
    [
      'matmul (130×260)ᵀ·130×90',
      [260, 90],
      (be, up) => be.matmul(up(seeded(130 * 260, 12), [130, 260]), up(seeded(130 * 90, 13), [130, 90]), { transposeA: true }, [260, 90]),
    ],
    // conv2d on the shared-B path (64+ rows): the filter gradient accumulates over the two images (C += A·B).
    [
      'conv2d 2×8×20×20 ⊛ 3×3×8→72',
      [2, 72, 20, 20],
      (be, up) => be.conv2d(up(seeded(2 * 8 * 400, 14), [2, 8, 20, 20]), up(seeded(72 * 8 * 9, 15), [72, 8, 3, 3]), CONV, [2, 72, 20, 20]),
    ],
    [
      'conv2d input gradient',
      [2, 8, 20, 20],
      (be, up) =>
        be.conv2dBackpropInput(
          up(seeded(2 * 72 * 400, 16), [2, 72, 20, 20]),
          up(seeded(72 * 8 * 9, 15), [72, 8, 3, 3]),
          CONV,
          [2, 8, 20, 20],
        ),
    ],
    [
      'conv2d filter gradient',
      [72, 8, 3, 3],
      (be, up) =>
        be.conv2dBackpropFilter(
          up(seeded(2 * 8 * 400, 14), [2, 8, 20, 20]),
          up(seeded(2 * 72 * 400, 16), [2, 72, 20, 20]),
          CONV,
          [72, 8, 3, 3],
        ),
    ],
    [
      'GEMV 1×2000·2000×600',
      [1, 600],
      (be, up) => be.matmul(up(seeded(2000, 5), [1, 2000]), up(seeded(2000 * 600, 6), [2000, 600]), {}, [1, 600]),
    ],
    [
      'weightNorm 300×1000 r 8',
      [300],
      (be, up) =>
        be.weightNorm(up(seeded(300 * 1000, 7), [300, 1000]), up(seeded(8 * 1000, 8), [8, 1000]), up(seeded(300 * 8, 9), [300, 8]), 2, {}),
    ],
    [
      'weightNorm, W stored [1000, 300], r 8',
      [300],
      (be, up) =>
        be.weightNorm(up(seeded(300 * 1000, 7), [1000, 300]), up(seeded(8 * 1000, 8), [8, 1000]), up(seeded(300 * 8, 9), [300, 8]), 2, {
          transposeW: true,
        }),
    ],
  ];
  for (const [title, shape, kernel] of cases) {
    it(`${title}: the same numbers as one thread`, async () => {
      await two.ready();
      const got = await run(two, kernel, shape);
      const want = await run(one, kernel, shape);
      // Tasks compute disjoint parts of the output with the same instruction sequence: bit-identical.
      expectSame(got, want);
    });
  }

  it("the worker program uses the pool's control layout", () => {
    const names = {
      SEQ: Ctl.seq,
      FN: Ctl.fn,
      ARGS: Ctl.args,
      TOTAL: Ctl.total,
      DONE: Ctl.done,
      QUIT: Ctl.quit,
      ERRORS: Ctl.errors,
      READY: Ctl.ready,
    };
    for (const [name, index] of Object.entries(names)) expect(WORKER_SOURCE).toContain(`${name} = ${index}`);
    expect(WORKER_SOURCE).toContain(`new BigInt64Array(data.control, ${CLAIM_AT}, 1)`);
  });

  it('refuses work after dispose', () => {
    const be = createCpuBackend({ kernels: 'wasm', threads: 2 });
    const x = { data: be.upload(seeded(4, 1), [2, 2], 'float32'), shape: [2, 2], dtype: 'float32' as const };
    be.dispose();
    expect(() => be.matmul(x, x, {}, [2, 2])).toThrow(/disposed/);
    be.release(x.data);
  });
});

/**
 * Node must exit on its own whether or not the backend was disposed, while workers wait for jobs. The child
 * runs this package's sources transpiled to plain JavaScript (one file at a time, as the build would) and
 * imports @dorajs/core from its build, as any consumer does.
 */
describe('worker threads and process exit', () => {
  const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
  const coreBuilt = existsSync(join(pkg, 'node_modules', '@dorajs', 'core', 'dist', 'index.js'));
  if (!coreBuilt && process.env.CI === 'true') throw new Error('CI builds @dorajs/core before testing; its dist is missing');
  let dir: string | undefined;
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function transpiled(): string {
    if (dir) return dir;
    dir = mkdtempSync(join(pkg, 'node_modules', '.threads-test-'));
    const copy = (from: string, to: string) => {
      mkdirSync(to, { recursive: true });
      for (const entry of readdirSync(from, { withFileTypes: true })) {
        if (entry.isDirectory()) copy(join(from, entry.name), join(to, entry.name));
        else if (entry.name.endsWith('.ts')) {
          const { outputText } = ts.transpileModule(readFileSync(join(from, entry.name), 'utf8'), {
            compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
          });
          writeFileSync(join(to, entry.name.replace(/\.ts$/, '.js')), outputText);
        }
      }
    };
    copy(join(pkg, 'src'), join(dir, 'src'));
    // The package's `#` imports, Node's side, pointing at the transpiled sources.
    const { imports } = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as {
      imports: Record<string, { '@dorajs/source': { node: string } }>;
    };
    const nodeImports = Object.fromEntries(Object.entries(imports).map(([k, v]) => [k, v['@dorajs/source'].node.replace(/\.ts$/, '.js')]));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', imports: nodeImports }));
    return dir;
  }

  for (const dispose of [false, true]) {
    it.skipIf(!coreBuilt)(
      `a process that ran a threaded matmul exits by itself${dispose ? ' after dispose()' : ' without dispose()'}`,
      () => {
        const entry = join(transpiled(), 'src', 'index.js');
        const script = `
        import { createCpuBackend } from './${relative(pkg, entry).split('\\\\').join('/')}';
        const be = createCpuBackend({ kernels: 'wasm', threads: 2, splitThreshold: 0 });
        await be.ready();
        const x = { data: be.upload(new Float32Array(64 * 64).fill(1), [64, 64], 'float32'), shape: [64, 64], dtype: 'float32' };
        const y = await be.download({ data: be.matmul(x, x, {}, [64, 64]), shape: [64, 64], dtype: 'float32' });
        console.log(be.threads, y[0]);
        ${dispose ? 'be.dispose();' : ''}`;
        // A hung process fails the test through the timeout instead of hanging the suite.
        const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: pkg, encoding: 'utf8', timeout: 20_000 });
        expect(out.trim()).toBe('2 64');
      },
    );
  }
});
