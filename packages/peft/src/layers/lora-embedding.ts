/**
 * LoRA/DoRA on an Embedding. As in PEFT, A [r, num] and B [dim, r] are bare parameters in ParameterDicts
 * (`lora_embedding_A.<name>`), the norm is per embedding feature (one per column of W), and dropout is
 * never applied.
 */
import { type Embedding, type LayerGeometry, loraBranch, ModuleDict, ops, Parameter, ParameterDict, type Tensor } from '@dorajs/core';
import type { DoraMagnitude } from './dora-magnitude.js';
import { type AdapterShapes, LoraLayer } from './lora-layer.js';

export class LoraEmbedding extends LoraLayer<Embedding> {
  static override readonly typeName: string = 'LoraEmbedding';
  lora_embedding_A = new ParameterDict();
  lora_embedding_B = new ParameterDict();
  override lora_magnitude_vector = new ModuleDict<DoraMagnitude>();
  readonly geometry: LayerGeometry = { kind: 'embedding' };

  adapterShapes(r: number): AdapterShapes {
    const [num, dim] = this.weight.shape as [number, number];
    return { a: [r, num], b: [dim, r], m: [dim] };
  }

  baseOut(ids: Tensor): Tensor {
    return ops.embedding(this.weight, ids);
  }

  branch(name: string, ids: Tensor): Tensor {
    return loraBranch(this.geometry, ids, this.lora_embedding_A.get(name)!, this.lora_embedding_B.get(name)!);
  }

  addBias(y: Tensor): Tensor {
    return y;
  }

  protected setAdapterWeights(name: string, a: Tensor, b: Tensor): void {
    this.lora_embedding_A.set(name, new Parameter(a));
    this.lora_embedding_B.set(name, new Parameter(b));
  }

  protected deleteAdapterWeights(name: string): void {
    for (const dict of [this.lora_embedding_A, this.lora_embedding_B]) {
      dict.get(name)?.dispose();
      dict.delete(name);
    }
  }

  adapterWeights(name: string): { a: Parameter; b: Parameter } | undefined {
    const a = this.lora_embedding_A.get(name);
    const b = this.lora_embedding_B.get(name);
    return a && b ? { a, b } : undefined;
  }
}
