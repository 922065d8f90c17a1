/**
 * The LoRA layers whose A and B are sub-modules with a `weight` (PEFT's `lora_A.<name>.weight`): Linear/Conv1D and
 * Conv2d. Embedding keeps bare parameters instead (PEFT's `lora_embedding_A.<name>`).
 */
import { type Layer, ModuleDict, Parameter, type Tensor } from '@dorajs/core';
import { LoraLayer } from './lora-layer.js';
import { LoraWeight } from './lora-weight.js';

export abstract class LoraABLayer<B extends Layer> extends LoraLayer<B> {
  static override readonly typeName: string = 'LoraABLayer';
  lora_A = new ModuleDict<LoraWeight>();
  lora_B = new ModuleDict<LoraWeight>();

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
