/**
 * A strict app built from the packed tarballs, as a user installs them: `pnpm pack` of every library package,
 * `npm install --offline` into an empty app (the one third-party type package, @webgpu/types, is packed from
 * the store), and `tsc --noEmit` with `strict` and `skipLibCheck: false` over code that uses each package —
 * under both `moduleResolution: bundler` and `nodenext`. Catches declarations that name globals they do not
 * reference (GPUDevice without @webgpu/types) or types that only resolve inside the monorepo.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const PACKAGES = ['packages/core', 'packages/peft', 'packages/models', 'packages/train', 'backends/cpu', 'backends/webgpu'];
const require = createRequire(import.meta.url);
const TSC = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');

const APP = `import { setDefaultBackend, tensor, tidy, type Tensor } from '@dorajs/core';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { createWebGpuBackend, type WebGpuBackend } from '@dorajs/backend-webgpu';
import { loadModel, type LoadedModel } from '@dorajs/models';
import { adapterBlobs, LoraConfig, PeftModel } from '@dorajs/peft';
import { Trainer } from '@dorajs/train';

export async function app(useGpu: boolean, device?: GPUDevice): Promise<Tensor> {
  const backend = useGpu ? await createWebGpuBackend(device ? { device } : {}) : createCpuBackend();
  setDefaultBackend(backend);
  const loaded: LoadedModel = await loadModel('https://example.com/llama', { backend, onProgress: (p) => void p.loadedBytes });
  const peft = await PeftModel.fromPretrained(loaded.model, 'org/adapter', { revision: 'main' });
  const files = await adapterBlobs(peft);
  void files['adapter_model.safetensors'].size;
  void new LoraConfig({ r: 8, useDora: true });
  void Trainer;
  const gpu: WebGpuBackend | null = useGpu ? (backend as WebGpuBackend) : null;
  void gpu;
  return tidy(() => peft.forward(tensor(new Int32Array([1, 2]), [1, 2], { dtype: 'int32' })));
}
`;

describe('a strict app from the packed tarballs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dorajs-consumer-types-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('installs offline and typechecks with skipLibCheck: false (bundler and nodenext)', () => {
    const packs = join(dir, 'packs');
    mkdirSync(packs);
    for (const p of PACKAGES) execFileSync('pnpm', ['pack', '--pack-destination', packs], { cwd: join(REPO, p), stdio: 'pipe' });
    // Third-party dependencies (@webgpu/types, @huggingface/tokenizers; neither has dependencies) come from the store.
    for (const p of PACKAGES) {
      const manifest = JSON.parse(readFileSync(join(REPO, p, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
      for (const dep of Object.keys(manifest.dependencies ?? {}).filter((d) => !d.startsWith('@dorajs/'))) {
        const depDir = realpathSync(join(REPO, p, 'node_modules', dep)); // pnpm links direct dependencies here
        execFileSync('npm', ['pack', depDir, '--pack-destination', packs], { cwd: dir, stdio: 'pipe' });
      }
    }
    // Node's types: the default entries' declarations still name node:fs types (options such as `fs?: FileSystem`,
    // train's #node-fs) — a known gap, so the app has @types/node (and its one dependency, undici-types).
    const typesNode = realpathSync(join(REPO, 'node_modules', '@types', 'node'));
    execFileSync('npm', ['pack', typesNode, '--pack-destination', packs], { cwd: dir, stdio: 'pipe' });
    execFileSync('npm', ['pack', realpathSync(join(typesNode, '..', '..', 'undici-types')), '--pack-destination', packs], {
      cwd: dir,
      stdio: 'pipe',
    });
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    const tarballs = readdirSync(packs).map((f) => join(packs, f));
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs], { cwd: app, stdio: 'pipe' });
    writeFileSync(join(app, 'app.ts'), APP);
    for (const resolution of ['bundler', 'nodenext']) {
      const tsconfig = {
        compilerOptions: {
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          target: 'ES2022',
          lib: ['ES2023', 'DOM'],
          module: resolution === 'bundler' ? 'ESNext' : 'NodeNext',
          moduleResolution: resolution,
          types: ['node'],
        },
        files: ['app.ts'],
      };
      writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(tsconfig));
      let output = '';
      try {
        execFileSync(process.execPath, [TSC, '-p', app], { cwd: app, encoding: 'utf8', stdio: 'pipe' });
      } catch (e) {
        output = `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`;
      }
      expect(output, resolution).toBe('');
    }
  }, 600_000);
});
