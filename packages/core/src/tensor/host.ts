/**
 * Bridges between host tensors (safetensors contents) and backend tensors. Float dtypes are widened to
 * float32 and integer dtypes to int32 on the way in; on the way out a float32 tensor can be narrowed to
 * the dtype a checkpoint stored (BF16/F16 with round-to-nearest-even).
 */
import type { Backend } from '../backend/backend.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../dtype.js';
import { DTypeError } from '../errors.js';
import { type HostTensor, type TensorOrigin, toFloat32, toInt32 } from '../io/host-tensor.js';
import type { SafetensorsDType } from '../io/safetensors-dtypes.js';
import { type Tensor, tensor } from './tensor.js';

const FLOAT_DTYPES = new Set<SafetensorsDType>(['F32', 'F16', 'BF16']);

export function fromHostTensor(host: HostTensor, backend: Backend, origin: TensorOrigin = { file: '<memory>', key: '?' }): Tensor {
  if (FLOAT_DTYPES.has(host.dtype)) return tensor(toFloat32(host, origin), host.shape, { backend, dtype: 'float32' });
  return tensor(toInt32(host, origin), host.shape, { backend, dtype: 'int32' });
}

/** Reads a tensor back as a host tensor of `dtype` (F32, BF16, F16 for floats; I32 or I64 for ints). */
export async function toHostTensor(t: Tensor, dtype: SafetensorsDType = t.dtype === 'int32' ? 'I32' : 'F32'): Promise<HostTensor> {
  const values = await t.data();
  const shape = [...t.shape];
  if (t.dtype === 'float32') {
    const f = values as Float32Array;
    switch (dtype) {
      case 'F32':
        return { dtype, shape, data: f };
      case 'BF16':
        return { dtype, shape, data: Uint16Array.from(f, f32ToBf16) };
      case 'F16':
        return { dtype, shape, data: Uint16Array.from(f, f32ToF16) };
      default:
        break;
    }
  } else if (t.dtype === 'int32') {
    const i = values as Int32Array;
    switch (dtype) {
      case 'I32':
        return { dtype, shape, data: i };
      case 'I64':
        return { dtype, shape, data: BigInt64Array.from(i, (v) => BigInt(v)) };
      default:
        break;
    }
  } else if (t.dtype === 'bfloat16' || t.dtype === 'float16') {
    // A narrow weight (loadModel keepWidth): its own bits, or widened exactly to float32.
    const bits = values as Uint16Array;
    const own = t.dtype === 'bfloat16' ? 'BF16' : 'F16';
    if (dtype === own) return { dtype: own, shape, data: bits };
    if (dtype === 'F32') return { dtype, shape, data: Float32Array.from(bits, own === 'BF16' ? bf16ToF32 : f16ToF32) };
  }
  throw new DTypeError(`cannot write a ${t.dtype} tensor ${JSON.stringify(shape)} as ${dtype}`);
}
