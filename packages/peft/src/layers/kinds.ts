import type { Module } from '@dorajs/core';
import { LoraLayer } from './lora-layer.js';

export function isLoraLayer(m: Module): m is LoraLayer {
  return m instanceof LoraLayer;
}
