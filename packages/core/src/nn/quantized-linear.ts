/**
 * A Linear whose weight is packed in one of bitsandbytes' formats (nf4 / fp4 with block-wise absmax, int8
 * with one scale per row): transformers' `Linear4bit` / `Linear8bitLt` in inference. The forward is
 * x·dequant(W)ᵀ + b through core's narrow kernels (W widened in registers where the backend fuses it);
 * the weight is frozen and is not a Parameter (not in `stateDict()`, never trained), the bias stays a
 * float32 Parameter. int8 computes with the dequantized weight W_int8·SCB/127 (no activation
 * quantization, docs/qdora.md).
 */
import type { Backend } from '../backend/backend.js';
import { QuantizationError } from '../errors.js';
import { cast } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { noGrad } from '../tensor/scope.js';
import { type QuantizeOptions, checkQuantizeOptions, quantizeHost } from '../quant/host.js';
import type { QuantFormat, QuantizedHost } from '../quant/format.js';
import { QuantizedWeight } from '../quant/quantized-weight.js';
import { Parameter, type Tensor } from '../tensor/tensor.js';
import { dequantize } from '../ops/narrow.js';
import { Conv1D, Embedding, Layer, Linear } from './layers.js';
import type { Module } from './module.js';

export class QuantizedLinear extends Layer {
  static override readonly typeName: string = 'QuantizedLinear';
  /** The packed weight [out, in]; replaced as a whole (`setWeight`), never written in place. */
  weight: QuantizedWeight;
  bias: Parameter | null;

  constructor(weight: QuantizedWeight, bias: Parameter | null) {
    super();
    this.weight = weight;
    this.bias = bias;
  }

  get inFeatures(): number {
    return this.weight.shape[1];
  }

  get outFeatures(): number {
    return this.weight.shape[0];
  }

  get format(): QuantFormat {
    return this.weight.format;
  }

  /** The options this weight was quantized with (to requantize a merged weight the same way). */
  get quantizeOptions(): QuantizeOptions {
    const w = this.weight;
    if (w.format === 'int8') return { format: 'int8', name: w.name };
    return { format: w.format, blocksize: w.blocksize, doubleQuant: w.nested !== null, name: w.name };
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }

  /** `Module.to`: the packed weight moves too (its bytes re-uploaded as the target backend stores them). */
  protected override async moveState(backend: Backend, moved: Map<object, object>): Promise<void> {
    const w = this.weight;
    if (w.backend === backend) return;
    let next = moved.get(w) as QuantizedWeight | undefined;
    if (!next) {
      next = await w.to(backend);
      moved.set(w, next);
    }
    this.weight = next;
    // Released once every sharer has switched: after this call no module of the moved tree holds it.
    if (!w.isDisposed) w.dispose();
  }

  /** Installs a new packed weight of the same shape and releases the old one. */
  setWeight(next: QuantizedWeight): void {
    if (next.shape[0] !== this.weight.shape[0] || next.shape[1] !== this.weight.shape[1]) {
      throw new QuantizationError(`new weight [${next.shape.join(', ')}] does not replace [${this.weight.shape.join(', ')}]`, next.name);
    }
    if (next === this.weight) return;
    const old = this.weight;
    this.weight = next;
    old.dispose();
  }

  override dispose(): void {
    super.dispose();
    this.weight.dispose();
  }

  override get typeName(): string {
    return `QuantizedLinear(${this.weight.format})`;
  }
}

export interface QuantizeLinearsOptions extends Omit<QuantizeOptions, 'name'> {
  /**
   * Paths (last segment or full dotted path) left in float: transformers' `llm_int8_skip_modules`. The
   * output layer (`lm_head`, or any Linear sharing the input embedding's weight) is always skipped.
   */
  readonly skipModules?: readonly string[];
}

/**
 * The Linear (and transformers Conv1D) layers transformers' bitsandbytes integration would replace: every
 * one except the output layer (`lm_head` or a layer tied to an Embedding) and `skipModules`. Embeddings,
 * norms and convolutions are never quantized.
 */
export function quantizableLinears(model: Module, skipModules: readonly string[] = []): [string, Linear | Conv1D][] {
  const embeddings = new Set<Parameter>();
  for (const [, m] of model.namedModules()) if (m instanceof Embedding) embeddings.add(m.weight);
  const skip = (path: string) => {
    const last = path.split('.').pop()!;
    return last === 'lm_head' || skipModules.some((s) => s === path || s === last || path.endsWith(`.${s}`));
  };
  const out: [string, Linear | Conv1D][] = [];
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv1D) || path === '') continue;
    if (skip(path) || embeddings.has(m.weight)) continue;
    out.push([path, m]);
  }
  return out;
}

/** A Linear's weight [out, in] on the host (a Conv1D's [in, out] transposed, as transformers does). */
async function hostWeight(m: Linear | Conv1D, path: string): Promise<Float32Array> {
  const w = m.weight;
  if (w.dtype !== 'float32' && w.dtype !== 'bfloat16' && w.dtype !== 'float16') {
    throw new QuantizationError(`weight is ${w.dtype}; only float weights can be quantized`, `${path}.weight`);
  }
  let data: Float32Array;
  if (w.dtype === 'float32') data = (await w.data()) as Float32Array;
  else {
    const wide = noGrad(() => cast(w, 'float32'));
    data = (await wide.data()) as Float32Array;
    wide.dispose();
  }
  if (!(m instanceof Conv1D)) return Float32Array.from(data);
  const [inF, outF] = w.shape as [number, number];
  const t = new Float32Array(inF * outF);
  for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) t[o * inF + i] = data[i * outF + o]!;
  return t;
}

/**
 * Replaces every quantizable Linear of `model` (see quantizableLinears) with a QuantizedLinear in
 * bitsandbytes' format, on the layer's backend. All or nothing: every weight is read and quantized on the
 * host first (a NaN/Inf weight or unsupported options throw a QuantizationError naming `<path>.weight`),
 * then uploaded, then swapped in; on any failure the model is unchanged. Returns the replaced paths.
 */
export async function quantizeLinears(model: Module, options: QuantizeLinearsOptions): Promise<string[]> {
  checkQuantizeOptions(options, 'quantizeLinears');
  const targets = quantizableLinears(model, options.skipModules);
  const hosts: QuantizedHost[] = [];
  for (const [path, m] of targets) {
    const shape: [number, number] = [m.outFeatures, m.inFeatures];
    const { skipModules: _skip, ...q } = options;
    hosts.push(quantizeHost(await hostWeight(m, path), shape, { ...q, name: `${path}.weight` }));
  }
  const made: QuantizedWeight[] = [];
  try {
    targets.forEach(([path, m], i) => made.push(QuantizedWeight.fromHost(hosts[i]!, m.weight.backend, `${path}.weight`)));
  } catch (e) {
    for (const w of made) w.dispose();
    throw e;
  }
  targets.forEach(([path, m], i) => {
    const q = new QuantizedLinear(made[i]!, m.bias);
    q.training = m.training;
    m.weight.dispose();
    model.setSubmodule(path, q);
  });
  return targets.map(([p]) => p);
}

/**
 * A dense Linear holding `q`'s dequantized weight (bitsandbytes' dequantize, float32, or rounded to
 * bfloat16 and frozen), sharing `q`'s bias; `q`'s packed weight is left alone (the caller disposes it).
 */
export function dequantizeLinear(q: QuantizedLinear, dtype: 'float32' | 'bfloat16' = 'float32'): Linear {
  const dense = dequantize(q.weight);
  const value = dtype === 'float32' ? dense : noGrad(() => cast(dense, 'bfloat16'));
  const weight = new Parameter(value, dtype === 'float32');
  value.dispose();
  if (value !== dense) dense.dispose();
  // Built around existing tensors: Linear's constructor would draw a random weight first.
  const lin = Object.create(Linear.prototype) as Linear;
  Object.assign(lin, { training: q.training, inFeatures: q.inFeatures, outFeatures: q.outFeatures, weight, bias: q.bias });
  return lin;
}
