/**
 * The layers PEFT targets and the pieces models are built from, with PyTorch's parameter names, shapes
 * and default initialisation.
 */
import type { Backend } from '../backend/backend.js';
import { ConfigError, ShapeError } from '../errors.js';
import {
  conv2d,
  conv2dParams,
  type Conv2dOptions,
  dropoutMask,
  embedding,
  layerNorm,
  linear,
  matmulLastAxis,
  mul,
  rmsNorm,
} from '../ops/index.js';
import { add, gelu, geluTanh, relu, silu, tanh } from '../ops/elementwise.js';
import type { Conv2dParams } from '../backend/backend.js';
import { type ConvDims, convNd, type ConvNdOptions, type ConvNdParams, convNdParams } from '../ops/conv-nd.js';
import { defaultRandom, type Random } from '../random.js';
import { shapeStr } from '../tensor/shape.js';
import { getDefaultBackend, Parameter, type Tensor, tensor } from '../tensor/tensor.js';
import { Module } from './module.js';
import { tidy } from '../tensor/scope.js';

export interface LayerOptions {
  readonly backend?: Backend;
  readonly random?: Random;
}

/** A module with a single-tensor forward — everything PEFT can wrap. */
export abstract class Layer extends Module {
  static override readonly typeName: string = 'Layer';
  abstract forward(x: Tensor): Tensor;
}

/** The Parameter takes its own reference to the storage; the temporary must let go of its one. */
function paramFrom(values: Float32Array, shape: number[], o: LayerOptions): Parameter {
  const t = tensor(values, shape, { backend: o.backend ?? getDefaultBackend() });
  try {
    return new Parameter(t);
  } finally {
    t.dispose();
  }
}

function uniformParam(shape: number[], bound: number, o: LayerOptions): Parameter {
  const r = o.random ?? defaultRandom;
  const n = shape.reduce((a, b) => a * b, 1);
  return paramFrom(r.fillUniform(n, -bound, bound), shape, o);
}

function normalParam(shape: number[], std: number, o: LayerOptions): Parameter {
  const r = o.random ?? defaultRandom;
  const n = shape.reduce((a, b) => a * b, 1);
  return paramFrom(r.fillNormal(n, 0, std), shape, o);
}

function constParam(shape: number[], value: number, o: LayerOptions): Parameter {
  const n = shape.reduce((a, b) => a * b, 1);
  return paramFrom(new Float32Array(n).fill(value), shape, o);
}

/** y = x·Wᵀ + b; weight [out, in]; PyTorch's kaiming_uniform(a=√5) ⇒ U(±1/√in) for weight and bias. */
export class Linear extends Layer {
  static override readonly typeName: string = 'Linear';
  weight: Parameter;
  bias: Parameter | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: LayerOptions & { bias?: boolean } = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = uniformParam([outFeatures, inFeatures], bound, options);
    this.bias = options.bias === false ? null : uniformParam([outFeatures], bound, options);
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** transformers' Conv1D (GPT-2): weight stored [in, out] (nx, nf); y = x·W + b. Init N(0, 0.02), bias 0. */
export class Conv1D extends Layer {
  static override readonly typeName: string = 'Conv1D';
  weight: Parameter;
  bias: Parameter;

  constructor(
    readonly nf: number,
    readonly nx: number,
    options: LayerOptions = {},
  ) {
    super();
    this.weight = normalParam([nx, nf], 0.02, options);
    this.bias = constParam([nf], 0, options);
  }

  get inFeatures(): number {
    return this.nx;
  }

  get outFeatures(): number {
    return this.nf;
  }

  forward(x: Tensor): Tensor {
    if (x.shape[x.rank - 1] !== this.nx)
      throw new ShapeError(`Conv1D: input ${shapeStr(x.shape)} does not fit weight ${shapeStr(this.weight.shape)}`);
    return tidy(() => add(matmulLastAxis(x, this.weight, false), this.bias));
  }
}

/** Lookup table; weight [num, dim] ~ N(0, 1) as PyTorch. Input: int32 ids. */
export class Embedding extends Layer {
  static override readonly typeName: string = 'Embedding';
  weight: Parameter;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    options: LayerOptions = {},
  ) {
    super();
    this.weight = normalParam([numEmbeddings, embeddingDim], 1, options);
  }

  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }
}

/** NCHW convolution; weight [out, in/groups, kh, kw]; PyTorch's default init U(±1/√fan_in). */
export class Conv2d extends Layer {
  static override readonly typeName: string = 'Conv2d';
  weight: Parameter;
  bias: Parameter | null;
  readonly params: Conv2dParams;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | readonly [number, number],
    options: LayerOptions & Conv2dOptions & { bias?: boolean } = {},
  ) {
    super();
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    this.params = conv2dParams(options);
    const g = this.params.groups;
    if (inChannels % g || outChannels % g)
      throw new ConfigError(`Conv2d: channels ${inChannels}→${outChannels} not divisible by groups ${g}`);
    const fanIn = (inChannels / g) * kh * kw;
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = uniformParam([outChannels, inChannels / g, kh, kw], bound, options);
    this.bias = options.bias === false ? null : uniformParam([outChannels], bound, options);
  }

  get kernelSize(): [number, number] {
    return [this.weight.shape[2]!, this.weight.shape[3]!];
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this.params);
  }
}

/** PyTorch's nn.Conv1d / nn.Conv3d: weight [out, in/groups, k…] (NCL / NCDHW), default init U(±1/√fan_in). */
export abstract class ConvNd extends Layer {
  static override readonly typeName: string = 'ConvNd';
  weight: Parameter;
  bias: Parameter | null;
  readonly params: ConvNdParams;
  abstract readonly dims: ConvDims;

  constructor(
    dims: ConvDims,
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | readonly number[],
    options: LayerOptions & ConvNdOptions & { bias?: boolean } = {},
  ) {
    super();
    const kernel = typeof kernelSize === 'number' ? Array<number>(dims).fill(kernelSize) : [...kernelSize];
    if (kernel.length !== dims) throw new ConfigError(`Conv${dims}d: kernel size [${kernel.join(', ')}] needs ${dims} entries`);
    this.params = convNdParams(dims, options);
    const g = this.params.groups;
    if (inChannels % g || outChannels % g)
      throw new ConfigError(`Conv${dims}d: channels ${inChannels}→${outChannels} not divisible by groups ${g}`);
    const bound = 1 / Math.sqrt((inChannels / g) * kernel.reduce((a, b) => a * b, 1));
    this.weight = uniformParam([outChannels, inChannels / g, ...kernel], bound, options);
    this.bias = options.bias === false ? null : uniformParam([outChannels], bound, options);
  }

  get kernelSize(): number[] {
    return this.weight.shape.slice(2);
  }

  forward(x: Tensor): Tensor {
    return convNd(this.dims, x, this.weight, this.bias, this.params);
  }
}

export class Conv1d extends ConvNd {
  static override readonly typeName: string = 'Conv1d';
  readonly dims = 1 as const;
  constructor(
    inChannels: number,
    outChannels: number,
    kernelSize: number | readonly [number],
    options: LayerOptions & ConvNdOptions & { bias?: boolean } = {},
  ) {
    super(1, inChannels, outChannels, kernelSize, options);
  }
}

export class Conv3d extends ConvNd {
  static override readonly typeName: string = 'Conv3d';
  readonly dims = 3 as const;
  constructor(
    inChannels: number,
    outChannels: number,
    kernelSize: number | readonly [number, number, number],
    options: LayerOptions & ConvNdOptions & { bias?: boolean } = {},
  ) {
    super(3, inChannels, outChannels, kernelSize, options);
  }
}

export class LayerNorm extends Layer {
  static override readonly typeName: string = 'LayerNorm';
  weight: Parameter;
  bias: Parameter;

  constructor(
    readonly normalizedShape: number,
    readonly eps = 1e-5,
    options: LayerOptions = {},
  ) {
    super();
    this.weight = constParam([normalizedShape], 1, options);
    this.bias = constParam([normalizedShape], 0, options);
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

export class RMSNorm extends Layer {
  static override readonly typeName: string = 'RMSNorm';
  weight: Parameter;

  constructor(
    readonly hiddenSize: number,
    readonly eps = 1e-6,
    options: LayerOptions = {},
  ) {
    super();
    this.weight = constParam([hiddenSize], 1, options);
  }

  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

export class ReLU extends Layer {
  static override readonly typeName: string = 'ReLU';
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

export class SiLU extends Layer {
  static override readonly typeName: string = 'SiLU';
  forward(x: Tensor): Tensor {
    return silu(x);
  }
}

export class Tanh extends Layer {
  static override readonly typeName: string = 'Tanh';
  forward(x: Tensor): Tensor {
    return tanh(x);
  }
}

/** GELU; approximate 'tanh' is transformers' gelu_new / PyTorch's approximate='tanh'. */
export class GELU extends Layer {
  static override readonly typeName: string = 'GELU';
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }

  forward(x: Tensor): Tensor {
    return this.approximate === 'tanh' ? geluTanh(x) : gelu(x);
  }
}

/** Inverted dropout in train mode; identity in eval mode or with p = 0. */
export class Dropout extends Layer {
  static override readonly typeName: string = 'Dropout';
  /** Tests can inject the mask (already scaled by 1/(1−p)) that the next forward uses. */
  _nextMask: Tensor | null = null;

  constructor(
    readonly p = 0.5,
    readonly _random: Random = defaultRandom,
  ) {
    super();
    if (p < 0 || p >= 1) throw new ConfigError(`Dropout: p must be in [0, 1), got ${p}`);
  }

  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    const injected = this._nextMask;
    this._nextMask = null;
    // The mask lives on in mul's backward; the scope frees our handle to it.
    return tidy(() => mul(x, injected ?? dropoutMask(x.shape, this.p, () => this._random.next(), x)));
  }
}

/** Runs children in order ('0', '1', … keys). */
export class Sequential extends Layer {
  static override readonly typeName: string = 'Sequential';
  private _n = 0;

  constructor(...layers: Layer[]) {
    super();
    for (const l of layers) (this as unknown as Record<string, Layer>)[String(this._n++)] = l;
  }

  get length(): number {
    return this._n;
  }

  at(i: number): Layer {
    return (this as unknown as Record<string, Layer>)[String(i)]!;
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      let y = x;
      for (let i = 0; i < this._n; i++) y = this.at(i).forward(y);
      return y;
    });
  }
}
