/**
 * A packed quantized weight living in a backend: the parts bitsandbytes stores (packed data, absmax or
 * SCB, the nested state of a double-quantized absmax) as backend tensors, plus its logical [rows, cols].
 * It is frozen (no gradient); `ops.narrowLinear`, `ops.narrowGather`, `ops.weightNorm` and
 * `ops.dequantize` take it wherever a weight goes.
 */
import type { Backend } from '../backend/backend.js';
import { QuantizationError } from '../errors.js';
import { keep as keepAlive } from '../tensor/scope.js';
import { tensor, type Tensor } from '../tensor/tensor.js';
import { type NestedAbsmaxHost, type QuantFormat, type QuantizedHost, quantizedBytes, validateQuantized } from './format.js';
import { type QuantizeOptions, quantizeHost } from './host.js';

export interface NestedAbsmax {
  readonly absmax: Tensor;
  readonly code: Tensor;
  readonly offset: number;
  readonly blocksize: number;
}

export class QuantizedWeight {
  private disposed = false;

  private constructor(
    readonly name: string,
    readonly format: QuantFormat,
    readonly shape: readonly [number, number],
    /** Elements per absmax block (cols for int8). */
    readonly blocksize: number,
    /** Packed 4-bit bytes (uint8, or int32 one byte each where the backend lacks uint8) or int8 values. */
    readonly data: Tensor,
    /** float32 absmax per block / SCB per row, or uint8 (int32) codes when `nested`. */
    readonly scales: Tensor,
    readonly nested: NestedAbsmax | null,
    /** Bytes of the packed form (what bitsandbytes stores). */
    readonly bytes: number,
  ) {}

  get backend(): Backend {
    return this.data.backend;
  }

  /** Always 0: a packed weight is never written in place (a change is a new QuantizedWeight). */
  get version(): number {
    return 0;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Uploads a packed weight after checking every part's length (typed `QuantizationError` naming `name`).
   * Nothing is uploaded when a check fails.
   */
  static fromHost(host: QuantizedHost, backend: Backend, name = '<tensor>'): QuantizedWeight {
    validateQuantized(host, name);
    // A backend without 8-bit storage (tfjs) holds one byte per int32: 4× the bytes, same values.
    const byteType = backend.capabilities.dtypes.includes('uint8') ? 'uint8' : 'int32';
    const int8Type = backend.capabilities.dtypes.includes('int8') ? 'int8' : 'int32';
    const bytes = (a: Uint8Array, shape: readonly number[] = [a.length]) =>
      tensor(byteType === 'uint8' ? a : Int32Array.from(a), shape, { backend, dtype: byteType });
    const made: Tensor[] = [];
    // The parts belong to the weight, not to an enclosing tidy.
    const keep = <T extends Tensor>(t: T) => (made.push(t), keepAlive(t));
    try {
      const shape: [number, number] = [host.shape[0], host.shape[1]];
      if (host.format === 'int8') {
        const data = keep(tensor(int8Type === 'int8' ? host.data : Int32Array.from(host.data), shape, { backend, dtype: int8Type }));
        const scb = keep(tensor(host.scb, [shape[0]], { backend }));
        return new QuantizedWeight(name, 'int8', shape, shape[1], data, scb, null, quantizedBytes(host));
      }
      // Packed data of whole-byte rows is [rows, cols/2], so a backend that splits large tensors by rows keeps each
      // row (and, rows permitting, each block) in one buffer; an odd row length packs across rows: [bytes].
      const [rows, cols] = shape;
      const data = keep(bytes(host.data, cols % 2 === 0 ? [rows, cols / 2] : [host.data.length]));
      const scales = keep(
        host.nested ? bytes(host.absmax as Uint8Array) : tensor(host.absmax as Float32Array, [host.absmax.length], { backend }),
      );
      const nested = host.nested ? uploadNested(host.nested, backend, keep) : null;
      return new QuantizedWeight(name, host.format, shape, host.blocksize, data, scales, nested, quantizedBytes(host));
    } catch (e) {
      for (const t of made) t.dispose();
      throw e;
    }
  }

  /** Quantizes host values (bitsandbytes' algorithm) and uploads only the packed form. */
  static quantize(values: Float32Array, shape: readonly [number, number], backend: Backend, options: QuantizeOptions): QuantizedWeight {
    return QuantizedWeight.fromHost(quantizeHost(values, shape, options), backend, options.name);
  }

  /**
   * This weight on `backend` (itself when already there): the packed parts read back and uploaded as that
   * backend stores them (uint8/int8, or one byte per int32). The caller disposes this one when done.
   */
  async to(backend: Backend): Promise<QuantizedWeight> {
    if (this.disposed) throw new QuantizationError(`moved after dispose()`, this.name);
    if (backend === this.backend) return this;
    return QuantizedWeight.fromHost(await this.toHost(), backend, this.name);
  }

  /** Reads the packed parts back (to save a bitsandbytes checkpoint). */
  async toHost(): Promise<QuantizedHost> {
    const u8 = async (t: Tensor) => Uint8Array.from((await t.data()) as ArrayLike<number>);
    if (this.format === 'int8') {
      const data = Int8Array.from((await this.data.data()) as ArrayLike<number>);
      return { format: 'int8', shape: this.shape, data, scb: (await this.scales.data()) as Float32Array };
    }
    const nested: NestedAbsmaxHost | null = this.nested
      ? {
          absmax: (await this.nested.absmax.data()) as Float32Array,
          code: (await this.nested.code.data()) as Float32Array,
          offset: this.nested.offset,
          blocksize: this.nested.blocksize,
        }
      : null;
    return {
      format: this.format,
      shape: this.shape,
      blocksize: this.blocksize,
      data: await u8(this.data),
      absmax: nested ? await u8(this.scales) : ((await this.scales.data()) as Float32Array),
      nested,
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.data.dispose();
    this.scales.dispose();
    this.nested?.absmax.dispose();
    this.nested?.code.dispose();
  }

  toString(): string {
    return `QuantizedWeight(${this.name}, ${this.format}, [${this.shape.join(', ')}])`;
  }
}

function uploadNested(n: NestedAbsmaxHost, backend: Backend, keep: (t: Tensor) => Tensor): NestedAbsmax {
  return {
    absmax: keep(tensor(n.absmax, [n.absmax.length], { backend })),
    code: keep(tensor(n.code, [256], { backend })),
    offset: n.offset,
    blocksize: n.blocksize,
  };
}
