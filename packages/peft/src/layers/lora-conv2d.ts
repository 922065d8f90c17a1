/** LoRA/DoRA on core's Conv2d (see lora-conv.ts for the shared convolution logic). */
import { Conv2d, type Tensor } from '@dorajs/core';
import { LoraConvLayer, withDenseWeight } from './lora-conv.js';

export class LoraConv2d extends LoraConvLayer<Conv2d> {
  static override readonly typeName: string = 'LoraConv2d';
  constructor(base: Conv2d, path: string) {
    super(base, path, 'conv2d');
  }

  protected denseLike(grouped: Conv2d, weight: Tensor): Conv2d {
    const [, , kh, kw] = weight.shape as [number, number, number, number];
    const p = grouped.params;
    const dense = new Conv2d(grouped.inChannels, grouped.outChannels, [kh, kw], {
      backend: weight.backend,
      stride: p.stride,
      padding: p.padding,
      dilation: p.dilation,
      groups: 1,
      bias: false,
    });
    return withDenseWeight(dense, grouped, weight);
  }
}
