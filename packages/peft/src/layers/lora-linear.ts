/**
 * LoRA/DoRA on a Linear, a transformers Conv1D (weight stored [in, out], PEFT's fan_in_fan_out) or a
 * quantized Linear (core's QuantizedLinear: bitsandbytes' nf4/fp4/int8, PEFT's `bnb.Linear4bit` /
 * `Linear8bitLt` LoRA layers).
 */
import {
  Conv1D,
  type LayerGeometry,
  type Linear,
  loraBranch,
  ModuleDict,
  ops,
  QuantizedLinear,
  QuantizedWeight,
  quantizeHost,
  type Tensor,
} from '@dorajs/core';
import { MergeError } from '../errors.js';
import type { DoraMagnitude } from './dora-magnitude.js';
import { LoraABLayer } from './lora-ab-layer.js';
import type { AdapterShapes } from './lora-layer.js';

export class LoraLinear extends LoraABLayer<Linear | Conv1D | QuantizedLinear> {
  static override readonly typeName: string = 'LoraLinear';
  override lora_magnitude_vector = new ModuleDict<DoraMagnitude>();
  readonly geometry: LayerGeometry;

  constructor(base: Linear | Conv1D | QuantizedLinear, path: string) {
    super(base, path);
    this.geometry = { kind: 'linear', fanInFanOut: base instanceof Conv1D };
  }

  get inFeatures(): number {
    return this.base_layer.inFeatures;
  }

  get outFeatures(): number {
    return this.base_layer.outFeatures;
  }

  override get quantizedBase(): QuantizedLinear | null {
    return this.base_layer instanceof QuantizedLinear ? this.base_layer : null;
  }

  adapterShapes(r: number): AdapterShapes {
    return { a: [r, this.inFeatures], b: [this.outFeatures, r], m: [this.outFeatures] };
  }

  baseOut(x: Tensor): Tensor {
    return ops.matmulLastAxis(x, this.baseWeight, !this.geometry.fanInFanOut);
  }

  branch(name: string, x: Tensor): Tensor {
    return loraBranch(this.geometry, x, this.lora_A.get(name)!.weight, this.lora_B.get(name)!.weight);
  }

  addBias(y: Tensor, bias: Tensor): Tensor {
    return ops.add(y, bias);
  }

  override mergeWeight(): Tensor {
    const q = this.quantizedBase;
    return q ? ops.dequantize(q.weight) : super.mergeWeight();
  }

  /**
   * A quantized base: the merged float32 weight read back and requantized exactly as bitsandbytes would
   * (same format, block size and double quantization); a NaN/Inf in it is PEFT's safe-merge error.
   */
  override async packMerged(dense: Tensor, names: readonly string[]): Promise<Tensor | QuantizedWeight> {
    const q = this.quantizedBase;
    if (!q) return super.packMerged(dense, names);
    let values: Float32Array;
    try {
      values = (await dense.data()) as Float32Array;
    } finally {
      dense.dispose();
    }
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i]!)) {
        throw new MergeError(
          `NaNs detected in the merged weights of module '${this._path}'. The adapter ${names.map((n) => `'${n}'`).join(', ')} seems to be broken`,
          this._path,
          names.join(','),
        );
      }
    }
    const host = quantizeHost(values, q.weight.shape, q.quantizeOptions);
    return QuantizedWeight.fromHost(host, q.weight.backend, q.weight.name);
  }
}
