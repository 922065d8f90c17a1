/**
 * `beginUpload`: a tensor whose bytes arrive in pieces (a loader streaming a checkpoint) written straight
 * into its final storage with `queue.writeBuffer` at increasing offsets, so the tensor never exists whole on
 * the host and no staging buffer of ours is made. The storage is not pooled but packed tightly (a range of a
 * shared slab, or a buffer of its own size: `buffer-pool.ts`), as loaded weights live long. The bytes stay as they arrive (a bf16 weight stays 2 bytes
 * wide). `writeBuffer` needs 4-byte offsets and lengths: up to 3 bytes of a piece are carried into the next
 * one, and the last word is padded with zeros (storage is whole words, `storage.ts`). A split tensor
 * (`split.ts`) takes each piece in the part, or parts, its bytes fall in; part boundaries are multiples of
 * 256 elements, so always whole words.
 *
 * `writeBuffer` copies the bytes at once, but the implementation holds that copy (Dawn's staging; in a
 * browser also the GPU process's copy of the IPC message) until the queue has executed it, and nothing
 * executes a queue that nobody submits to or waits on: a loader that writes a whole model without waiting
 * holds a second copy of the model in flight. So every `windowBytes` written (all sinks of the backend
 * together), the write returns a promise that settles when the queue has drained (`GpuRuntime.drain`),
 * which the loader awaits before reading the next piece.
 */
import { BYTES_PER_ELEMENT, type DType, ShapeError, type UploadSink } from '@dorajs/core';
import type { GpuTensor, KernelContext } from './context.js';
import { releaseAny } from './kernels/split.js';
import { isSplit, needsSplit, planParts, SplitTensor } from './split.js';
import { storageBytes } from './storage.js';

/** Bytes written through upload sinks since the queue last drained: shared by every sink of a backend. */
export interface UploadWindow {
  /** Bytes allowed in flight before a write waits for the queue (Infinity: never wait). */
  readonly windowBytes: number;
  inFlight: number;
  /** Writes that returned a wait (tests, benchmarks). */
  waits: number;
}

/** Default bytes in flight: small beside any model worth streaming, large beside one IPC round trip. */
export const DEFAULT_UPLOAD_WINDOW_BYTES = 16 * 2 ** 20;

/**
 * Most bytes one `writeBuffer` carries. Chromium copies each write into shared memory for the GPU process
 * (mapped in both processes), which grows with the largest write: whole-tensor writes (49 MB) kept ~51 MiB of
 * it in each process, 8 MiB writes ~12 MiB, 1 MiB writes ~9 MiB (smaller ones no less: Chromium's own floor).
 */
const WRITE_BYTES = 1 << 20;

interface Span {
  readonly t: GpuTensor;
  /** First byte of the tensor this buffer holds. */
  readonly begin: number;
  /** One past the last byte. */
  readonly end: number;
}

/** The storage of `t` as byte spans of the tensor (one, or one per part of a split tensor). */
function spansOf(t: GpuTensor): Span[] {
  const parts = isSplit(t) ? t.parts : [t];
  const spans: Span[] = [];
  let at = 0;
  for (const p of parts) {
    const n = p.size * BYTES_PER_ELEMENT[p.dtype];
    spans.push({ t: p, begin: at, end: at + n });
    at += n;
  }
  return spans;
}

/**
 * A sink writing into `t` (storage already taken). `label` names the tensor in errors. The sink checks what
 * core checks too (overflow, a short finish, use after finish), so it is safe to call directly.
 */
export function uploadSink(ctx: KernelContext, t: GpuTensor, window: UploadWindow, label: string): UploadSink<GpuTensor> {
  const byteLength = t.size * BYTES_PER_ELEMENT[t.dtype];
  const spans = spansOf(t);
  const tail = new Uint8Array(4);
  let tailLength = 0;
  /** Bytes accepted so far (the next write's offset, before the carried tail). */
  let at = 0;
  let state: 'open' | 'finished' | 'aborted' = 'open';
  let span = 0;

  /**
   * Writes `n` bytes of `data` from `offset` at byte `dst` (a multiple of 4) of the tensor: a multiple of 4,
   * except the tensor's last bytes, written as a whole word (`data` then holds the padding).
   */
  const put = (dst: number, data: Uint8Array, offset: number, n: number): void => {
    while (n > 0) {
      while (spans[span]!.end <= dst) span++;
      const s = spans[span]!;
      const len = Math.min(n, s.end - dst);
      // Whole words: every span begins on a word, so only the tensor's last piece ends short (padded by `finish`).
      const words = Math.ceil(len / 4) * 4;
      for (let o = 0; o < words; o += WRITE_BYTES)
        ctx.rt.writeAt(s.t.buf, dst - s.begin + o, data, offset + o, Math.min(WRITE_BYTES, words - o));
      dst += len;
      offset += len;
      n -= len;
    }
  };

  const check = (op: string): void => {
    if (state !== 'open') throw new ShapeError(`webgpu beginUpload: ${op} on ${label} after it was ${state}`);
    ctx.rt.check();
  };

  return {
    write(bytes) {
      check('write');
      if (at + bytes.byteLength > byteLength) {
        throw new ShapeError(`webgpu beginUpload: ${bytes.byteLength} more bytes after ${at} overflow ${label} (${byteLength} bytes)`);
      }
      let offset = 0;
      let n = bytes.byteLength;
      if (tailLength > 0) {
        const take = Math.min(4 - tailLength, n);
        tail.set(bytes.subarray(0, take), tailLength);
        tailLength += take;
        offset += take;
        n -= take;
        if (tailLength === 4) {
          put(at - (at % 4), tail, 0, 4);
          tailLength = 0;
        }
      }
      const whole = n - (n % 4);
      if (whole > 0) put(at + offset, bytes, offset, whole);
      if (n > whole) {
        tail.set(bytes.subarray(offset + whole, offset + n), 0);
        tailLength = n - whole;
      }
      at += bytes.byteLength;
      window.inFlight += bytes.byteLength;
      if (window.inFlight < window.windowBytes) return;
      window.inFlight = 0;
      window.waits++;
      return ctx.rt.drain();
    },
    finish() {
      check('finish');
      if (at !== byteLength) {
        throw new ShapeError(`webgpu beginUpload: ${at} of the ${byteLength} bytes of ${label} were written`);
      }
      if (tailLength > 0) {
        tail.fill(0, tailLength);
        put(at - tailLength, tail, 0, tailLength);
        tailLength = 0;
      }
      state = 'finished';
      return t;
    },
    abort() {
      if (state !== 'open') return;
      state = 'aborted';
      t.released = true;
      releaseAny(ctx, t);
    },
  };
}

/** Storage for a tensor of `shape`: one buffer, or parts (`split.ts`) when larger than one buffer may be. */
export function allocStorage(ctx: KernelContext, shape: readonly number[], dtype: DType): GpuTensor {
  const size = shape.reduce((a, b) => a * b, 1);
  if (!needsSplit(dtype, size, ctx.partBytes)) return ctx.allocUpload(dtype, size);
  const sizes = planParts(shape, ctx.partBytes, `webgpu beginUpload [${shape.join(', ')}] ${dtype}`);
  const parts: GpuTensor[] = [];
  try {
    for (const n of sizes) parts.push(ctx.allocUpload(dtype, n));
  } catch (error) {
    for (const p of parts) ctx.release(p);
    throw error;
  }
  return new SplitTensor(dtype, size, parts);
}

/**
 * The buffer sizes `allocStorage` will ask for a tensor of `shape` (one, or one per part): what `planUploads`
 * announces. A shape `allocStorage` would refuse gives none (that upload throws, and drops the plan).
 */
export function plannedBuffers(ctx: KernelContext, shape: readonly number[], dtype: DType): number[] {
  if (!(dtype in BYTES_PER_ELEMENT) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return [];
  const size = shape.reduce((a, b) => a * b, 1);
  if (!needsSplit(dtype, size, ctx.partBytes)) return [storageBytes(dtype, size)];
  try {
    return planParts(shape, ctx.partBytes, '').map((n) => storageBytes(dtype, n));
  } catch {
    return [];
  }
}
