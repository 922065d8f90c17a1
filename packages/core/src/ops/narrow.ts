/**
 * Narrow weights: dense bfloat16/float16 tensors and packed nf4/fp4/int8 `QuantizedWeight`s. Every op here
 * asks the backend for its fused kernel (W widened in registers) and otherwise runs a composite that
 * widens W into a float32 temporary with primitive kernels. Activations, adapters, outputs and gradients
 * are float32; narrow weights are frozen (no gradient flows into them).
 */
import type { QuantizedInfo, WeightInfo } from '../backend/backend.js';
import { DTypeError, ShapeError } from '../errors.js';
import { code4bit } from '../quant/codes.js';
import { QuantizedWeight } from '../quant/quantized-weight.js';
import { record } from '../tensor/autograd.js';
import { noGrad, tidy } from '../tensor/scope.js';
import { shapeStr } from '../tensor/shape.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { add, cast, mul, mulScalar } from './elementwise.js';
import { concat, reshape, slice } from './layout.js';
import { matmul } from './matmul.js';
import { gather } from './nn.js';
import { backendOf, wrap } from './util.js';

/** A weight as layers hold it: a dense tensor (float32, bfloat16, float16) or a packed quantized one. */
export type Weight = Tensor | QuantizedWeight;

/** True for a weight stored narrower than float32 (the narrow kernels apply). */
export function isNarrow(w: Weight): boolean {
  return w instanceof QuantizedWeight || w.dtype === 'bfloat16' || w.dtype === 'float16';
}

function checkDense(op: string, w: Tensor): void {
  if (w.dtype !== 'float32' && w.dtype !== 'bfloat16' && w.dtype !== 'float16') {
    throw new DTypeError(`${op}: a weight must be float32, bfloat16, float16 or a QuantizedWeight, got ${w.dtype} ${shapeStr(w.shape)}`);
  }
}

export function assertLive(op: string, w: Weight): void {
  if (w instanceof QuantizedWeight) {
    if (w.isDisposed) throw new DTypeError(`${op}: ${w.toString()} used after dispose()`);
  } else {
    w.assertAlive();
    checkDense(op, w);
  }
}

/** x [n] · scales[floor(i / bs)] for every i (a partial last block included), float32 [n]. */
function mulBlocks(v: Tensor, scales: Tensor, bs: number): Tensor {
  const n = v.size;
  const full = Math.floor(n / bs);
  const parts: Tensor[] = [];
  if (full > 0) {
    const head = full * bs === n ? v : slice(v, [0], [full * bs]);
    const s = full === scales.size ? scales : slice(scales, [0], [full]);
    parts.push(reshape(mul(reshape(head, [full, bs]), reshape(s, [full, 1])), [full * bs]));
  }
  if (full * bs < n) parts.push(mul(slice(v, [full * bs], [n - full * bs]), slice(scales, [full], [1])));
  return parts.length === 1 ? parts[0]! : concat(parts, 0);
}

const asIndices = (t: Tensor) => (t.dtype === 'int32' ? t : cast(t, 'int32'));

/** The float32 absmax per block: resolves double quantization (dequantize_blockwise(codes, state2) + offset). */
function scalesOf(w: QuantizedWeight): Tensor {
  if (!w.nested) return w.scales;
  const n = w.nested;
  // Own scopes: only the float32 absmax outlives this (not the int32 codes, the looked-up values and the
  // product), so the kernel that reads it runs with one [blocks] temporary beside it, not four.
  return tidy(() => {
    const values = tidy(() => reshape(gather(reshape(n.code, [256, 1]), asIndices(w.scales)), [w.scales.size]));
    return mulScalarAdd(mulBlocks(values, n.absmax, n.blocksize), n.offset);
  });
}

const mulScalarAdd = (t: Tensor, offset: number) => (offset === 0 ? t : add(t, tensor([offset], [], { backend: t.backend })));

/** What kernels receive for a quantized weight; the caller runs inside tidy (the resolved absmax is a temporary). */
export function quantizedInfo(w: QuantizedWeight): QuantizedInfo {
  return { format: w.format, shape: w.shape, data: w.data.info, scales: scalesOf(w).info, blocksize: w.blocksize };
}

/** @internal what kernels receive for any weight (call inside tidy). */
export function weightInfo(w: Weight): WeightInfo {
  return w instanceof QuantizedWeight ? quantizedInfo(w) : w.info;
}

const pairTables = new Map<string, Float32Array>();

/** [256, 2]: the two codes a byte holds, high nibble first (bitsandbytes' element order). */
function pairTable(format: 'nf4' | 'fp4'): Float32Array {
  let t = pairTables.get(format);
  if (!t) {
    const code = code4bit(format);
    t = new Float32Array(512);
    for (let b = 0; b < 256; b++) {
      t[2 * b] = code[b >> 4]!;
      t[2 * b + 1] = code[b & 15]!;
    }
    pairTables.set(format, t);
  }
  return t;
}

/** The composite dequantization: a gather of byte pairs from a 256-entry table, then × absmax per block. */
export function dequantizeComposite(w: QuantizedWeight): Tensor {
  return tidy(() => {
    const [rows, cols] = w.shape;
    if (w.format === 'int8') {
      // int8_vectorwise_dequant: A · SCB · 7.874015718698502e-3 (= fround(1/127)), rounded after each product.
      const scaled = mul(cast(w.data, 'float32'), reshape(w.scales, [rows, 1]));
      return mulScalar(scaled, Math.fround(1 / 127));
    }
    const table = tensor(pairTable(w.format), [256, 2], { backend: w.backend });
    const n = rows * cols;
    let v = reshape(gather(table, asIndices(w.data)), [2 * w.data.size]);
    if (v.size !== n) v = slice(v, [0], [n]);
    return reshape(mulBlocks(v, scalesOf(w), w.blocksize), [rows, cols]);
  });
}

/** A quantized weight widened to float32 [rows, cols], exactly as bitsandbytes dequantizes it. */
export function dequantize(w: QuantizedWeight): Tensor {
  assertLive('dequantize', w);
  const be = w.backend;
  if (!be.dequantize) return noGrad(() => dequantizeComposite(w));
  return tidy(() => wrap(be, be.dequantize!(quantizedInfo(w)), w.shape, 'float32'));
}

/** Any weight as float32 (a new tensor; float32 weights are copied through a no-op affine). */
export function widen(w: Weight): Tensor {
  if (w instanceof QuantizedWeight) return dequantize(w);
  assertLive('widen', w);
  return noGrad(() => (w.dtype === 'float32' ? mulScalar(w, 1) : cast(w, 'float32')));
}

/**
 * x [M, K] · Wᵀ (transposeW, W [N, K]) or x [M, N] · W (W [N, K]) with a narrow W; differentiable in x
 * (dx = dY · W or dY · Wᵀ through the same kernel), never in W.
 */
export function narrowMatmul(x: Tensor, w: Weight, transposeW: boolean): Tensor {
  assertLive('narrowMatmul', w);
  const be = backendOf('narrowMatmul', x, w instanceof QuantizedWeight ? w.data : w);
  if (x.dtype !== 'float32') throw new DTypeError(`narrowMatmul: x must be float32, got ${x.dtype} ${shapeStr(x.shape)}`);
  const [n, k] = w.shape as [number, number];
  const inner = transposeW ? k : n;
  if (x.rank !== 2 || w.shape.length !== 2 || x.shape[1] !== inner) {
    throw new ShapeError(`narrowMatmul: x ${shapeStr(x.shape)} does not fit W ${shapeStr(w.shape)}${transposeW ? 'ᵀ' : ''}`);
  }
  const shape = [x.shape[0]!, transposeW ? n : k];
  const y = be.matmulNarrow
    ? tidy(() => wrap(be, be.matmulNarrow!(x.info, weightInfo(w), transposeW, shape), shape, 'float32'))
    : noGrad(() => tidy(() => matmul(x, widen(w), { transposeB: transposeW })));
  return recordNarrowMatmul(y, x, w, transposeW);
}

/**
 * Attaches narrowMatmul's backward to `y` = x·Wᵀ (transposeW) or x·W computed by any kernel (a fused one
 * too): dx through the narrow kernel, no gradient into W.
 */
export function recordNarrowMatmul(y: Tensor, x: Tensor, w: Weight, transposeW: boolean): Tensor {
  return record('matmulNarrow', y, [x], [], (g) => [narrowMatmul(g, w, !transposeW)]);
}

/** F.linear with any weight: x [..., in] · Wᵀ (+ bias), W [out, in]. */
export function narrowLinear(x: Tensor, w: Weight, bias?: Tensor | null): Tensor {
  return tidy(() => {
    const inF = w.shape[1]!;
    if (x.shape[x.rank - 1] !== inF) {
      throw new ShapeError(`linear: input ${shapeStr(x.shape)} does not fit weight ${shapeStr(w.shape)} (in features ${inF})`);
    }
    const x2 = x.rank === 2 ? x : reshape(x, [-1, inF]);
    const y2 = narrowMatmul(x2, w, true);
    const y = x.rank === 2 ? y2 : reshape(y2, [...x.shape.slice(0, -1), w.shape[0]!]);
    return bias ? add(y, bias) : y;
  });
}

/** Embedding lookup in a narrow table [num, dim]: float32 [...ids.shape, dim]; no gradient into the table. */
export function narrowGather(table: Weight, indices: Tensor): Tensor {
  assertLive('narrowGather', table);
  const be = backendOf('narrowGather', indices, table instanceof QuantizedWeight ? table.data : table);
  if (indices.dtype !== 'int32') throw new DTypeError(`narrowGather: indices must be int32, got ${indices.dtype}`);
  if (table.shape.length !== 2) throw new ShapeError(`narrowGather: table must be 2-D, got ${shapeStr(table.shape)}`);
  const cols = table.shape[1]!;
  const shape = [...indices.shape, cols];
  if (be.gatherNarrow) return tidy(() => wrap(be, be.gatherNarrow!(weightInfo(table), indices.info), shape, 'float32'));
  return noGrad(() => tidy(() => gather(widen(table), indices)));
}
