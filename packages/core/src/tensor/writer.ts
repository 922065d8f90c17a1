/**
 * A tensor filled from bytes that arrive in pieces (a loader reading a checkpoint tensor in bounded
 * chunks): the backend's `beginUpload` writes each piece straight into its storage, so the tensor never
 * exists whole on the host; a backend without it gets core's composite (the values assembled on the host,
 * then `upload`, as `tensor()` does).
 */
import type { Backend, UploadSink } from '../backend/backend.js';
import { allocFor, BYTES_PER_ELEMENT, type DType } from '../dtype.js';
import { ShapeError } from '../errors.js';
import { fromHandle, type Tensor } from './tensor.js';
import { assertValidShape, shapeStr, sizeOf } from './shape.js';

export interface TensorWriter {
  /** Bytes the tensor holds: the writes must add up to exactly this. */
  readonly byteLength: number;
  /** Bytes written so far. */
  readonly written: number;
  /**
   * Appends `bytes` (little-endian values of the dtype, whole elements) after those written so far. May
   * return a promise (the backend's back-pressure, see `UploadSink.write`): await it before the next piece.
   */
  write(bytes: Uint8Array): void | Promise<void>;
  /** The tensor, once every byte was written. */
  finish(): Tensor;
  /** Frees the storage of an unfinished tensor; safe to call after `finish` or twice (does nothing then). */
  abort(): void;
}

/** Core's composite for backends without `beginUpload`: assemble on the host, then upload. */
function hostSink<H>(backend: Backend<H>, shape: readonly number[], dtype: DType): UploadSink<H> {
  const values = allocFor(dtype, sizeOf(shape));
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  let at = 0;
  return {
    write(chunk) {
      bytes.set(chunk, at);
      at += chunk.byteLength;
    },
    finish: () => backend.upload(values, shape, dtype),
    abort() {},
  };
}

/**
 * A writer for a `dtype` tensor of `shape` on `backend`. Shape and every write are checked before the
 * backend sees them; storage is taken here, so a backend with bounded memory refuses it up front.
 */
export function tensorWriter(backend: Backend, shape: readonly number[], dtype: DType): TensorWriter {
  assertValidShape(shape);
  const width = BYTES_PER_ELEMENT[dtype];
  const byteLength = sizeOf(shape) * width;
  const sink: UploadSink = backend.beginUpload ? backend.beginUpload(shape, dtype) : hostSink(backend, shape, dtype);
  let written = 0;
  let done = false;
  const what = `a ${dtype} tensor ${shapeStr(shape)}`;
  return {
    byteLength,
    get written() {
      return written;
    },
    write(bytes) {
      if (done) throw new ShapeError(`tensorWriter: ${what} was already finished or aborted`);
      if (bytes.byteLength % width !== 0 || written + bytes.byteLength > byteLength) {
        throw new ShapeError(`tensorWriter: ${bytes.byteLength} more bytes after ${written} do not fit ${what} (${byteLength} bytes)`);
      }
      if (bytes.byteLength === 0) return;
      const pending = sink.write(bytes);
      written += bytes.byteLength;
      return pending;
    },
    finish() {
      if (done) throw new ShapeError(`tensorWriter: ${what} was already finished or aborted`);
      if (written !== byteLength) throw new ShapeError(`tensorWriter: ${written} of the ${byteLength} bytes of ${what} were written`);
      done = true;
      return fromHandle(backend, sink.finish(), [...shape], dtype);
    },
    abort() {
      if (done) return;
      done = true;
      sink.abort();
    },
  };
}
