// @ts-check
/**
 * Regenerates assets/mnist-cnn-base.safetensors: the MNIST CNN trained on digits 0–4 only (seed 0,
 * 1000 steps of 32, AdamW lr 3e-3 with 20 warm-up steps), on the cpu backend. Deterministic: the same
 * backend version writes the same bytes. Run after `pnpm build`:
 *
 *   node packages/train/scripts/pretrain-mnist.mjs [--out FILE]
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { MNIST_BASE_FILE, pretrainMnistBase, readMnistDigits, saveMnistBase } from '../dist/index.js';

const outIndex = process.argv.indexOf('--out');
const out = outIndex > 0 ? (process.argv[outIndex + 1] ?? MNIST_BASE_FILE) : MNIST_BASE_FILE;
const seed = 0;
const maxSteps = 1000;
const backend = await createCpuBackend();
const data = await readMnistDigits(join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits'));
const result = await pretrainMnistBase({
  backend,
  data,
  seed,
  maxSteps,
  onStepEnd: (p) => {
    if (p.step % 100 === 0)
      console.log(`step ${p.step}/${p.maxSteps} loss ${p.loss.toFixed(4)} (${p.samplesPerSecond.toFixed(0)} samples/s)`);
  },
});
console.log(`held-out accuracy on digits 0-4: ${(result.accuracy * 100).toFixed(2)}%`);
if (result.accuracy < 0.95) {
  console.error('below the 95% bar: not writing the asset');
  process.exit(1);
}
await saveMnistBase(out, result, { seed: String(seed), max_steps: String(maxSteps), backend: backend.name });
console.log(`wrote ${out}`);
