/**
 * LoRA/DoRA on a convolution — nn.Conv1d, Conv2d, Conv3d alike: A is a conv with the base kernel, stride,
 * padding — and, unlike PEFT, the base dilation, so that the branch equals the merged delta — and groups 1;
 * B is a 1×…×1 conv with the base groups. The DoRA norm runs per output channel over the flattened kernel,
 * and the magnitude has PEFT's shape [1, out, 1…].
 *
 * With groups > 1 the true delta B·A reaches every input channel (A is not grouped), so it is no grouped
 * kernel: the norm uses it through core's block-diagonal geometry, and merging turns the base into the
 * dense (groups 1) conv it equals — merged = unmerged exactly — and unmerging restores the grouped one.
 * PEFT refuses to merge these layers.
 */
import {
  blockDiagonal,
  type Conv2d,
  type ConvNd,
  convDims,
  type LayerGeometry,
  loraBranch,
  ModuleDict,
  ops,
  Parameter,
  type Tensor,
  tidy,
} from '@dorajs/core';
import type { MergeInput } from '../variants/variant.js';
import type { DoraMagnitude } from './dora-magnitude.js';
import { LoraABLayer } from './lora-ab-layer.js';
import type { AdapterShapes, MergedAdapter, MergeSpace } from './lora-layer.js';

/** A base convolution: core's Conv2d or an nn.Conv1d / Conv3d. */
export type ConvLayer = Conv2d | ConvNd;

const ones = (n: number): number[] => Array<number>(n).fill(1);

export abstract class LoraConvLayer<B extends ConvLayer> extends LoraABLayer<B> {
  static override readonly typeName: string = 'LoraConvLayer';
  override lora_magnitude_vector = new ModuleDict<DoraMagnitude>();
  readonly geometry: LayerGeometry;
  /** The grouped base while a merge has made base_layer dense; null otherwise. */
  private _groupedBase: B | null = null;

  constructor(base: B, path: string, kind: 'conv1d' | 'conv2d' | 'conv3d') {
    super(base, path);
    this.geometry = { kind, groups: base.params.groups };
  }

  /** The same convolution with groups 1 and the given [out, in, k…] weight (what a grouped merge turns into). */
  protected abstract denseLike(grouped: B, weight: Tensor): B;

  protected get dims(): ops.ConvDims {
    return convDims(this.geometry) as ops.ConvDims;
  }

  private convOptions(): ops.ConvNdOptions {
    const p = this.base_layer.params;
    return { stride: [...p.stride], padding: [...p.padding], dilation: [...p.dilation], groups: p.groups };
  }

  adapterShapes(r: number): AdapterShapes {
    const [out, , ...kernel] = this.weight.shape as number[];
    const g = this.base_layer.params.groups;
    return { a: [r, this.base_layer.inChannels, ...kernel], b: [out!, r / g, ...ones(this.dims)], m: [1, out!, ...ones(this.dims)] };
  }

  baseOut(x: Tensor): Tensor {
    return ops.convNd(this.dims, x, this.weight, null, this.convOptions());
  }

  branch(name: string, x: Tensor): Tensor {
    const { stride, padding, dilation } = this.convOptions();
    return loraBranch(this.geometry, x, this.lora_A.get(name)!.weight, this.lora_B.get(name)!.weight, { stride, padding, dilation });
  }

  addBias(y: Tensor, bias: Tensor): Tensor {
    return ops.add(y, ops.reshape(bias, [1, bias.size, ...ones(this.dims)]));
  }

  private get groups(): number {
    return (this._groupedBase ?? this.base_layer).params.groups;
  }

  /** The dense [out, in, k…] kernel a grouped one stands for (zeros outside each group's block). */
  private densify(w: Tensor): Tensor {
    const g = this.groups;
    const [out, inPerGroup, ...kernel] = w.shape as number[];
    if (g === 1 || inPerGroup! * g !== (this._groupedBase ?? this.base_layer).inChannels) return w; // already dense
    return ops.reshape(blockDiagonal(ops.reshape(w, [out!, -1]), g), [out!, inPerGroup! * g, ...kernel]);
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

  /** An adapter whose B is the dense [out, r, 1…] matrix of the grouped one. */
  private denseInput(input: MergeInput): MergeInput {
    const b = input.tensors.b;
    const [out, rPerGroup] = b.shape as [number, number];
    const dense = ops.reshape(blockDiagonal(ops.reshape(b, [out, rPerGroup]), this.groups), [
      out,
      rPerGroup * this.groups,
      ...ones(this.dims),
    ]);
    return { ...input, tensors: { ...input.tensors, b: dense } };
  }

  /** Grouped convs merge as the dense conv they equal once the (ungrouped) delta is added. */
  override mergeSpace(): MergeSpace {
    if (this.groups === 1) return super.mergeSpace();
    const geometry: LayerGeometry = { kind: this.geometry.kind, groups: 1 };
    return { geometry, weight: (w) => this.densify(w), input: (i) => this.denseInput(i) };
  }

  override commitMerge(newWeight: Tensor, merged: readonly MergedAdapter[]): void {
    if (this.groups > 1 && !this._groupedBase) {
      const grouped = this.base_layer;
      this._groupedBase = grouped;
      this.base_layer = this.denseLike(grouped, newWeight);
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

/** Installs `weight` (a dense [out, in, k…] kernel) as the weight of a freshly built dense conv. */
export function withDenseWeight<B extends ConvLayer>(dense: B, grouped: B, weight: Tensor): B {
  dense.weight.dispose();
  dense.weight = new Parameter(weight, grouped.weight.requiresGrad);
  dense.bias = grouped.bias;
  return dense;
}
