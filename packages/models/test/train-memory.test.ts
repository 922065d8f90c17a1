/**
 * What a training forward keeps alive (the qdora bench's peak is mostly this): each decoder layer runs in
 * its own scope, so once `model.forward(ids)` returns inside the step's tidy, only what backward saved is left — of the
 * attention scores, the softmax output alone — and a double-quantized absmax is resolved into one float32
 * temporary, not four, while the narrow kernel reads it.
 */
import { watchHandles } from '@dorajs/backend-conformance';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { type Backend, ops, QuantizedWeight, quantizeHost, Random, tensor, tidy } from '@dorajs/core';
import { createModel } from '@dorajs/models';
import { describe, expect, it } from 'vitest';

/** A CPU backend that knows the byte size of every live handle. */
function tracked(): { backend: Backend; live: Map<object, number>; onCall: (fn: (op: string, args: unknown[]) => void) => void } {
  const inner = createCpuBackend();
  const live = new Map<object, number>();
  let hook: ((op: string, args: unknown[]) => void) | null = null;
  const backend = watchHandles(inner, {
    call: (op, args) => hook?.(op, [...args]),
    created: (handle, bytes) => live.set(handle, bytes),
    released: (handle) => live.delete(handle),
  });
  return { backend, live, onCall: (fn) => (hook = fn) };
}

const count = (live: Map<object, number>, bytes: number) => [...live.values()].filter((b) => b === bytes).length;

describe('training forward memory', () => {
  it('keeps one [heads, seq, keys] tensor per layer (the softmax output) after a Llama forward', () => {
    const { backend, live } = tracked();
    const [layers, heads, seq] = [3, 4, 24];
    const config = {
      model_type: 'llama',
      vocab_size: 100,
      hidden_size: 40,
      intermediate_size: 72,
      num_hidden_layers: layers,
      num_attention_heads: heads,
      num_key_value_heads: 2,
      max_position_embeddings: seq,
      tie_word_embeddings: false,
    };
    const model = createModel(config, { backend, random: new Random(1) });
    model.train();
    const ids = tensor(
      Int32Array.from({ length: seq }, (_, i) => (i * 7) % 100),
      [1, seq],
      { backend },
    );
    const scores = heads * seq * seq * 4;
    const before = count(live, scores);
    let during = -1;
    // Counted inside the step's scope, where backward runs: there the layers' temporaries would still live.
    const logits = tidy(() => {
      const y = model.forward(ids);
      during = count(live, scores) - before;
      return y;
    });
    // Without a scope per layer: scores, scaled, masked and softmax per layer (4 each).
    expect(during).toBe(layers);
    logits.dispose();
    expect(count(live, scores)).toBe(before);
    ids.dispose();
    model.dispose();
  });

  it('resolves a double-quantized absmax into one float32 temporary for the narrow kernel', () => {
    const { backend, live, onCall } = tracked();
    const [out, inF] = [96, 128];
    const blocks = (out * inF) / 64;
    const host = quantizeHost(new Random(2).fillUniform(out * inF, -1, 1), [out, inF], { format: 'nf4', doubleQuant: true, name: 'w' });
    const w = QuantizedWeight.fromHost(host, backend, 'w');
    const x = tensor(new Random(3).fillUniform(3 * inF, -1, 1), [3, inF], { backend, requiresGrad: true });
    const seen: number[] = [];
    onCall((op) => {
      if (op === 'matmulNarrow') seen.push(count(live, blocks * 4));
    });
    const y = tidy(() => ops.narrowMatmul(x, w, true));
    // Before: the int32 codes, the looked-up values, their product with the nested absmax and + offset.
    expect(seen).toEqual([1]);
    y.dispose();
    x.dispose();
    w.dispose();
  });
});
