/**
 * A module tree with the paths, layer types and shapes of a checkpoint, built from its keys — enough to
 * target, load, save and merge PEFT adapters of the Hugging Face fixtures (Llama, GPT-2) without a forward.
 */
import { type Backend, Conv1D, Embedding, type HostTensor, LayerNorm, Linear, Module, RMSNorm } from '@dorajs/core';

class Node extends Module {}

export function skeleton(weights: ReadonlyMap<string, HostTensor>, backend: Backend, conv1d: readonly string[] = []): Module {
  const root = new Node();
  const paths = [...new Set([...weights.keys()].map((k) => k.slice(0, k.lastIndexOf('.'))))];
  for (const path of paths) {
    const w = weights.get(`${path}.weight`)!;
    const hasBias = weights.has(`${path}.bias`);
    const last = path.split('.').pop()!;
    let layer: Module;
    if (w.shape.length === 1) layer = hasBias ? new LayerNorm(w.shape[0]!, 1e-5, { backend }) : new RMSNorm(w.shape[0]!, 1e-6, { backend });
    else if (conv1d.includes(last)) layer = new Conv1D(w.shape[1]!, w.shape[0]!, { backend });
    else if (/embed|wte|wpe/.test(last)) layer = new Embedding(w.shape[0]!, w.shape[1]!, { backend });
    else layer = new Linear(w.shape[1]!, w.shape[0]!, { backend, bias: hasBias });
    let parent: Module = root;
    const parts = path.split('.');
    for (const part of parts.slice(0, -1)) {
      const rec = parent as unknown as Record<string, Module>;
      rec[part] ??= new Node();
      parent = rec[part]!;
    }
    (parent as unknown as Record<string, Module>)[parts[parts.length - 1]!] = layer;
  }
  return root;
}
