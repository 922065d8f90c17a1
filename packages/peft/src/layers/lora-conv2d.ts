/**
 * LoRA/DoRA on a Conv2d: A is a conv with the base kernel, stride, padding — and, unlike PEFT, the base
 * dilation, so that the branch equals the merged delta — and groups 1; B is a 1×1 conv with the base groups.
 *
 * With groups > 1 the true delta B·A reaches every input channel (A is not grouped), so it is no grouped
 * kernel: the norm uses it through core's block-diagonal geometry, and merging turns the base into the
 * dense (groups 1) conv it equals — merged = unmerged exactly — and unmerging restores the grouped one.
 * PEFT refuses to merge these layers.
 */
import { blockDiagonal, Conv2d, type LayerGeometry, loraBranch, ModuleDict, ops, Parameter, type Tensor, tidy } from '@dorajs/core';
import type { DoraMagnitude } from './dora-magnitude.js';
import { LoraABLayer } from './lora-ab-layer.js';
import type { MergeInput } from '../variants/variant.js';
import type { AdapterShapes, MergedAdapter, MergeSpace } from './lora-layer.js';

export class LoraConv2d extends LoraABLayer<Conv2d> {
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

  baseOut(x: Tensor): Tensor {
    return ops.conv2d(x, this.weight, null, this.base_layer.params);
  }

  branch(name: string, x: Tensor): Tensor {
    const p = this.base_layer.params;
    return loraBranch(this.geometry, x, this.lora_A.get(name)!.weight, this.lora_B.get(name)!.weight, {
      stride: p.stride,
      padding: p.padding,
      dilation: p.dilation,
    });
  }

  addBias(y: Tensor, bias: Tensor): Tensor {
    return ops.add(y, ops.reshape(bias, [1, bias.size, 1, 1]));
  }

  /** The grouped base while a merge has made base_layer dense; null otherwise. */
  private _groupedBase: Conv2d | null = null;

  private get groups(): number {
    return (this._groupedBase ?? this.base_layer).params.groups;
  }

  /** The dense [out, in, kh, kw] kernel a grouped one stands for (zeros outside each group's block). */
  private densify(w: Tensor): Tensor {
    const g = this.groups;
    const [out, inPerGroup, kh, kw] = w.shape as [number, number, number, number];
    if (g === 1 || inPerGroup * g !== (this._groupedBase ?? this.base_layer).inChannels) return w; // already dense
    return ops.reshape(blockDiagonal(ops.reshape(w, [out, -1]), g), [out, inPerGroup * g, kh, kw]);
  }

  /** The grouped kernel back out of a dense one: each group's diagonal block. */
  private groupedBlocks(dense: Tensor): Tensor {
    const g = this.groups;
    const [out, inChannels] = dense.shape as [number, number];
    const o = out / g;
    const i = inChannels / g;
    return tidy(() =>
      ops.concat(
        Array.from({ length: g }, (_, k) => ops.narrow(ops.narrow(dense, 0, k * o, o), 1, k * i, i)),
        0,
      ),
    );
  }

  /** An adapter whose B is the dense [out, r, 1, 1] matrix of the grouped one. */
  private denseInput(input: MergeInput): MergeInput {
    const b = input.tensors.b;
    const [out, rPerGroup] = b.shape as [number, number];
    const dense = ops.reshape(blockDiagonal(ops.reshape(b, [out, rPerGroup]), this.groups), [out, rPerGroup * this.groups, 1, 1]);
    return { ...input, tensors: { ...input.tensors, b: dense } };
  }

  private static readonly DENSE: LayerGeometry = { kind: 'conv2d', groups: 1 };

  /** Grouped convs merge as the dense conv they equal once the (ungrouped) delta is added. */
  override mergeSpace(): MergeSpace {
    if (this.groups === 1) return super.mergeSpace();
    return { geometry: LoraConv2d.DENSE, weight: (w) => this.densify(w), input: (i) => this.denseInput(i) };
  }

  override commitMerge(newWeight: Tensor, merged: readonly MergedAdapter[]): void {
    if (this.groups > 1 && !this._groupedBase) {
      const grouped = this.base_layer;
      const [, , kh, kw] = newWeight.shape as [number, number, number, number];
      const p = grouped.params;
      const dense = new Conv2d(grouped.inChannels, grouped.outChannels, [kh, kw], {
        backend: newWeight.backend,
        stride: p.stride,
        padding: p.padding,
        dilation: p.dilation,
        groups: 1,
        bias: false,
      });
      dense.weight.dispose();
      dense.weight = new Parameter(newWeight, grouped.weight.requiresGrad);
      dense.bias = grouped.bias;
      this._groupedBase = grouped;
      this.base_layer = dense;
    }
    super.commitMerge(newWeight, merged);
  }

  override commitUnmerge(newWeight: Tensor): void {
    const grouped = this._groupedBase;
    if (!grouped) {
      super.commitUnmerge(newWeight);
      return;
    }
    const dense = this.base_layer;
    const blocks = this.groupedBlocks(newWeight);
    this.base_layer = grouped;
    this._groupedBase = null;
    super.commitUnmerge(blocks);
    blocks.dispose();
    dense.weight.dispose();
  }
}
