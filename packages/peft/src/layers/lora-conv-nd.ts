/** LoRA/DoRA on PyTorch's nn.Conv1d and nn.Conv3d (PEFT's DoraConv1dVariant / DoraConv3dVariant). */
import { Conv1d, Conv3d, type Tensor } from '@dorajs/core';
import { LoraConvLayer, withDenseWeight } from './lora-conv.js';

export class LoraConv1d extends LoraConvLayer<Conv1d> {
  static override readonly typeName: string = 'LoraConv1d';
  constructor(base: Conv1d, path: string) {
    super(base, path, 'conv1d');
  }

  protected denseLike(grouped: Conv1d, weight: Tensor): Conv1d {
    const p = grouped.params;
    const dense = new Conv1d(grouped.inChannels, grouped.outChannels, [weight.shape[2]!], {
      backend: weight.backend,
      stride: p.stride,
      padding: p.padding,
      dilation: p.dilation,
      bias: false,
    });
    return withDenseWeight(dense, grouped, weight);
  }
}

export class LoraConv3d extends LoraConvLayer<Conv3d> {
  static override readonly typeName: string = 'LoraConv3d';
  constructor(base: Conv3d, path: string) {
    super(base, path, 'conv3d');
  }

  protected denseLike(grouped: Conv3d, weight: Tensor): Conv3d {
    const p = grouped.params;
    const [, , kd, kh, kw] = weight.shape as [number, number, number, number, number];
    const dense = new Conv3d(grouped.inChannels, grouped.outChannels, [kd, kh, kw], {
      backend: weight.backend,
      stride: p.stride,
      padding: p.padding,
      dilation: p.dilation,
      bias: false,
    });
    return withDenseWeight(dense, grouped, weight);
  }
}
