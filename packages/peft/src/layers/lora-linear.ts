/** LoRA/DoRA on a Linear or a transformers Conv1D (weight stored [in, out], PEFT's fan_in_fan_out). */
import { Conv1D, type LayerGeometry, type Linear, loraBranch, ModuleDict, ops, type Tensor } from '@dorajs/core';
import type { DoraMagnitude } from './dora-magnitude.js';
import { LoraABLayer } from './lora-ab-layer.js';
import type { AdapterShapes } from './lora-layer.js';

export class LoraLinear extends LoraABLayer<Linear | Conv1D> {
  override lora_magnitude_vector = new ModuleDict<DoraMagnitude>();
  readonly geometry: LayerGeometry;

  constructor(base: Linear | Conv1D, path: string) {
    super(base, path);
    this.geometry = { kind: 'linear', fanInFanOut: base instanceof Conv1D };
  }

  get inFeatures(): number {
    return this.base_layer.inFeatures;
  }

  get outFeatures(): number {
    return this.base_layer.outFeatures;
  }

  adapterShapes(r: number): AdapterShapes {
    return { a: [r, this.inFeatures], b: [this.outFeatures, r], m: [this.outFeatures] };
  }

  baseOut(x: Tensor): Tensor {
    return ops.matmulLastAxis(x, this.weight, !this.geometry.fanInFanOut);
  }

  branch(name: string, x: Tensor): Tensor {
    return loraBranch(this.geometry, x, this.lora_A.get(name)!.weight, this.lora_B.get(name)!.weight);
  }

  addBias(y: Tensor, bias: Tensor): Tensor {
    return ops.add(y, bias);
  }
}
