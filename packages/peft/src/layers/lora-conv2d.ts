/**
 * LoRA/DoRA on a Conv2d: A is a conv with the base kernel, stride, padding — and, unlike PEFT, the base
 * dilation, so that the branch equals the merged delta — and groups 1; B is a 1×1 conv with the base groups.
 * With groups > 1 the norm uses the true grouped delta (core's geometry) and merging is refused, as PEFT.
 */
import { type Conv2d, type LayerGeometry, loraBranch, ModuleDict, ops, Parameter, type Tensor } from '@dorajs/core';
import { MergeError } from '../errors.js';
import { DoraMagnitude } from './dora-magnitude.js';
import { type AdapterShapes, LoraLayer } from './lora-layer.js';
import { LoraWeight } from './lora-weight.js';

export class LoraConv2d extends LoraLayer<Conv2d> {
  lora_A = new ModuleDict<LoraWeight>();
  lora_B = new ModuleDict<LoraWeight>();
  override lora_magnitude_vector = new ModuleDict<DoraMagnitude>();
  readonly geometry: LayerGeometry;

  constructor(base: Conv2d, path: string) {
    super(base, path);
    this.geometry = { kind: 'conv2d', groups: base.params.groups };
  }

  adapterShapes(r: number): AdapterShapes {
    const [out, , kh, kw] = this.weight.shape as [number, number, number, number];
    const g = this.base_layer.params.groups;
    return { a: [r, this.base_layer.inChannels, kh, kw], b: [out, r / g, 1, 1], m: [1, out, 1, 1] };
  }

  protected baseOut(x: Tensor): Tensor {
    return ops.conv2d(x, this.weight, null, this.base_layer.params);
  }

  protected branch(name: string, x: Tensor): Tensor {
    const p = this.base_layer.params;
    return loraBranch(this.geometry, x, this.lora_A.get(name)!.weight, this.lora_B.get(name)!.weight, {
      stride: p.stride,
      padding: p.padding,
      dilation: p.dilation,
    });
  }

  protected addBias(y: Tensor, bias: Tensor): Tensor {
    return ops.add(y, ops.reshape(bias, [1, bias.size, 1, 1]));
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

  override assertMergeable(name: string): void {
    const g = this.base_layer.params.groups;
    if (g > 1) {
      throw new MergeError(`Merging is not supported for Conv2d layers with groups > 1 (module '${this._path}', groups ${g}, adapter '${name}'): the LoRA delta is not a grouped kernel`, this._path, name);
    }
  }
}
