/**
 * loadModel on the WebGPU backend in a page (bundled by webgpu-load.test.ts): every tensor streamed in odd
 * pieces into GPU buffers (beginUpload), with 4 KiB buffers so the larger weights split over several, and a
 * 4 KiB upload window so writes wait for the queue. Reports, per parameter, whether the bytes on the GPU equal
 * the checkpoint's (widened exactly where the weight is float32 on the backend), the logits for fixed ids, and
 * how many buffers outlived the model.
 */
import { createWebGpuBackend, type WebGpuBackend } from '@dorajs/backend-webgpu';
import { bf16ToF32, noGrad, parseSafetensors, tensor, tidy } from '@dorajs/core';
import { loadModel } from '@dorajs/models';

const IDS = [1, 5, 9, 3];
let backend: WebGpuBackend | null = null;

async function gpu(): Promise<WebGpuBackend> {
  backend ??= await createWebGpuBackend({ maxBufferBytes: 4096, uploadWindowBytes: 4096 });
  return backend;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);
}

const api = {
  async load(url: string, keepWidth: boolean) {
    const be = await gpu();
    const live = be.liveBuffers();
    const waits = be.stats().uploadWaits;
    be.resetLargestRequest();
    const { model } = await loadModel(url, { backend: be, keepWidth, chunkBytes: 998, probeBytes: 4096 });
    const source = parseSafetensors(new Uint8Array(await (await fetch(`${url}/model.safetensors`)).arrayBuffer()));
    const params: Record<string, { dtype: string; same: boolean }> = {};
    for (const [name, p] of model.namedParameters()) {
      const src = source.tensors.get(name);
      if (!src) throw new Error(`${name}: not in the checkpoint`);
      const onGpu = bytesOf(await p.data());
      const expected = p.dtype === 'float32' && src.dtype === 'BF16' ? bytesOf(Float32Array.from(src.data, bf16ToF32)) : bytesOf(src.data);
      params[name] = { dtype: p.dtype, same: sameBytes(onGpu, expected) };
    }
    const out = tidy(() => noGrad(() => model.forward(tensor(new Int32Array(IDS), [1, IDS.length], { dtype: 'int32', backend: be }))));
    const logits = Array.from((await out.data()) as Float32Array);
    out.dispose();
    const largestRequest = be.stats().largestRequest;
    model.dispose();
    await be.sync();
    return { params, logits, leaked: be.liveBuffers() - live, waits: be.stats().uploadWaits - waits, largestRequest };
  },
  async failing(url: string) {
    const be = await gpu();
    const live = be.liveBuffers();
    const error = await loadModel(url, { backend: be, keepWidth: true, chunkBytes: 998, probeBytes: 4096 }).then(
      () => 'no error',
      (e: Error) => `${e.name}: ${e.message}`,
    );
    await be.sync();
    return { error, leaked: be.liveBuffers() - live };
  },
};

Object.assign(globalThis, { dora: api, __ready: true });
