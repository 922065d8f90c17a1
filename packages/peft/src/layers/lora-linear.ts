/** LoRA/DoRA on a Linear or a transformers Conv1D (weight stored [in, out], PEFT's fan_in_fan_out). */
import { Conv1D, type LayerGeometry, type Linear, loraBranch, ModuleDict, ops, Parameter, type Tensor } from '@dorajs/core';
import { DoraMagnitude } from './dora-magnitude.js';
import { type AdapterShapes, LoraLayer } from './lora-layer.js';
import { LoraWeight } from './lora-weight.js';

export class LoraLinear extends LoraLayer<Linear | Conv1D> {
  lora_A = new ModuleDict<LoraWeight>();
  lora_B = new ModuleDict<LoraWeight>();
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

  protected baseOut(x: Tensor): Tensor {
    return ops.matmulLastAxis(x, this.weight, !this.geometry.fanInFanOut);
  }

  protected branch(name: string, x: Tensor): Tensor {
    return loraBranch(this.geometry, x, this.lora_A.get(name)!.weight, this.lora_B.get(name)!.weight);
  }

  protected addBias(y: Tensor, bias: Tensor): Tensor {
    return ops.add(y, bias);
  }

  protected setAdapterWeights(name: string, a: Tensor, b: Tensor): void {
    this.lora_A.set(name, new LoraWeight(new Parameter(a)));
    this.lora_B.set(name, new LoraWeight(new Parameter(b)));
  }

  protected deleteAdapterWeights(name: string): void {
    for (const dict of [this.lora_A, this.lora_B]) {
      dict.get(name)?.weight.dispose();
      dict.delete(name);
    }
  }

  adapterWeights(name: string): { a: Parameter; b: Parameter } | undefined {
    const a = this.lora_A.get(name);
    const b = this.lora_B.get(name);
    return a && b ? { a: a.weight, b: b.weight } : undefined;
  }
}
