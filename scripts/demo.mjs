// @ts-check
/**
 * The main job for now (`pnpm main`): load the `linear` fixture's base weights with the safetensors reader,
 * run the base MLP 16→32 (bias) →ReLU→ 32→8 (no bias) on PEFT's input, and print the relative error
 * max|a−b| / max|b| against PEFT's `out.base`. Plain typed-array math, so it depends only on @dorajs/core.
 * Exits non-zero when the error exceeds the CPU tolerance (1e-5).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSafetensors } from '@dorajs/core/node';

const CASE = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/peft/linear');
const TOLERANCE = 1e-5;

/**
 * y [rows, out] = x [rows, in] · wᵀ (+ bias), with w stored [out, in] as in PyTorch.
 * @param {Float32Array} x @param {Float32Array} w @param {Float32Array | null} bias
 * @param {number} rows @param {number} inF @param {number} outF
 */
function linear(x, w, bias, rows, inF, outF) {
  const y = new Float32Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let sum = bias ? bias[o] : 0;
      for (let i = 0; i < inF; i++) sum += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = sum;
    }
  }
  return y;
}

/** @param {string} path @param {(file: import('@dorajs/core/node').SafetensorsFile) => Promise<T>} use @template T */
async function withFile(path, use) {
  const file = await openSafetensors(path);
  try {
    return await use(file);
  } finally {
    await file.close();
  }
}

const base = await withFile(join(CASE, 'base/model.safetensors'), async (f) => ({
  w1: await f.readFloat32('lin1.weight'),
  b1: await f.readFloat32('lin1.bias'),
  w2: await f.readFloat32('lin2.weight'),
  shape1: f.entry('lin1.weight').shape,
  shape2: f.entry('lin2.weight').shape,
}));
const io = await withFile(join(CASE, 'tensors.safetensors'), async (f) => ({
  x: await f.readFloat32('input.x'),
  rows: f.entry('input.x').shape[0] ?? 0,
  expected: await f.readFloat32('out.base'),
}));

const [hidden = 0, inF = 0] = base.shape1;
const [outF = 0] = base.shape2;
const h = linear(io.x, base.w1, base.b1, io.rows, inF, hidden).map((v) => Math.max(v, 0));
const y = linear(h, base.w2, null, io.rows, hidden, outF);

let maxDiff = 0;
let maxRef = 0;
for (let i = 0; i < y.length; i++) {
  maxDiff = Math.max(maxDiff, Math.abs(y[i] - io.expected[i]));
  maxRef = Math.max(maxRef, Math.abs(io.expected[i]));
}
const relError = maxDiff / maxRef;
console.log(`linear fixture: base MLP ${inF}→${hidden}→${outF} on input [${io.rows}, ${inF}] (weights from safetensors)`);
console.log(`relative error vs PEFT out.base: ${relError.toExponential(3)} (tolerance ${TOLERANCE})`);
if (!(relError <= TOLERANCE)) {
  console.error('FAILED: relative error above tolerance');
  process.exitCode = 1;
}
