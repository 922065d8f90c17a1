/**
 * bitsandbytes' code tables, copied from its CUDA kernels (csrc/kernels.cu) so that quantizing here gives
 * the same bytes as `bnb.functional.quantize_4bit` / `quantize_blockwise` on a GPU.
 */

/** NF4 value of each nibble (kernels.cu `nf4_dequantization_lut`), ascending, so nibble = rank. */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334, -0.09105003625154495,
  0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
]);

/**
 * `dQuantizeNF4`'s decision tree flattened: nibble = number of these thresholds that x exceeds (`x > t`),
 * which is what the tree computes since the codes ascend. NaN exceeds none (nibble 0), as on the GPU.
 */
export const NF4_THRESHOLDS: Float32Array = Float32Array.from([
  -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984, -0.13791173323988914,
  -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
  0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
]);

/** FP4 magnitude of the low three bits (`fp4_dequantization_lut`); bit 3 is the sign. */
const FP4_MAGNITUDE = [0.0, 0.005208333333, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25];

/** FP4 value of each nibble: `dDequantizeFP4Tree` = lut[v & 7] · (1 − 2·(v >> 3)). */
export const FP4_CODE: Float32Array = Float32Array.from({ length: 16 }, (_, v) => FP4_MAGNITUDE[v & 7]! * (v & 8 ? -1 : 1));

/** `dQuantizeFP4` on |x|: the thresholds ascending and the 3-bit code of each interval between them. */
export const FP4_THRESHOLDS: Float32Array = Float32Array.from([
  0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333,
]);
export const FP4_BITS: readonly number[] = [0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011];

/** The 4-bit value table for `format` (16 float32 values indexed by nibble). */
export function code4bit(format: 'nf4' | 'fp4'): Float32Array {
  return format === 'nf4' ? NF4_CODE : FP4_CODE;
}

/**
 * torch.linspace(start, end, steps) in float32 as PyTorch's CPU kernel computes it element by element:
 * the first half from `start`, the second half back from `end`.
 */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const f = Math.fround;
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Float32Array.from({ length: steps }, (_, i) => (i < half ? f(s + f(step * i)) : f(e - f(step * (steps - i - 1)))));
}

let dynamic: Float32Array | null = null;

/**
 * `bnb.functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: the 256-entry
 * dynamic code that double quantization stores the absmax in (float32 arithmetic, as torch does).
 */
export function dynamicMap(): Float32Array {
  if (dynamic) return dynamic;
  const f = Math.fround;
  const data: number[] = [];
  const maxExponentBits = 7;
  const nonSignBits = 7;
  for (let i = 0; i < maxExponentBits; i++) {
    const items = 2 ** (i + nonSignBits - maxExponentBits) + 1;
    const b = linspaceF32(0.1, 1, items);
    const scale = f(10 ** (-(maxExponentBits - 1) + i));
    for (let j = 0; j + 1 < items; j++) {
      const mean = f(f(b[j]! + b[j + 1]!) / 2);
      data.push(f(scale * mean), f(-scale * mean));
    }
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  dynamic = Float32Array.from(data);
  return dynamic;
}
