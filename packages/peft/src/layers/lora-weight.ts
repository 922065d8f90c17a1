import { Module, type Parameter } from '@dorajs/core';

/**
 * A container with one `weight` — what PEFT's lora_A / lora_B sub-modules (bias-free nn.Linear / nn.Conv2d)
 * contribute to the state dict. The operator itself is core's `loraBranch`.
 */
export class LoraWeight extends Module {
  static override readonly typeName: string = 'LoraWeight';
  constructor(public weight: Parameter) {
    super();
  }
}
