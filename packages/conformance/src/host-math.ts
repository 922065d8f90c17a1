/**
 * Float64 host references, written straight from the definitions (loops over indices, no blocking, no
 * shared code with any backend), so that a wrong backend cannot agree with them by construction.
 * Accumulating references also return a per-element magnitude (the sum of |terms|) for `assertClose`.
 */

export interface HostResult {
  readonly value: Float64Array;
  /** Σ|terms| behind each element. */
  readonly magnitude: Float64Array;
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

/** numpy broadcast of two shapes (no checks: cases are written to be valid). */
export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    return da === 1 ? db : da;
  });
}

/** For each element of `outShape`, the flat index it reads in a tensor of `shape` broadcast to it. */
export function broadcastIndices(shape: readonly number[], outShape: readonly number[]): Int32Array {
  const total = sizeOf(outShape);
  const idx = new Int32Array(total);
  const rank = outShape.length;
  for (let flat = 0; flat < total; flat++) {
    let rem = flat;
    let src = 0;
    let stride = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const coord = rem % outShape[d]!;
      rem = Math.floor(rem / outShape[d]!);
      const k = d - (rank - shape.length);
      if (k >= 0) {
        if (shape[k] !== 1) src += coord * stride;
        stride *= shape[k]!;
      }
    }
    idx[flat] = src;
  }
  return idx;
}

/** Batched matmul with transposes and leading-axis broadcasting. */
export function matmulHost(
  a: ArrayLike<number>,
  aShape: readonly number[],
  b: ArrayLike<number>,
  bShape: readonly number[],
  transposeA = false,
  transposeB = false,
): HostResult & { shape: number[] } {
  const ar = aShape.length;
  const br = bShape.length;
  const [m, k] = transposeA ? [aShape[ar - 1]!, aShape[ar - 2]!] : [aShape[ar - 2]!, aShape[ar - 1]!];
  const n = transposeB ? bShape[br - 2]! : bShape[br - 1]!;
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const batch = broadcastShape(aBatch, bBatch);
  const ai = broadcastIndices(aBatch, batch);
  const bi = broadcastIndices(bBatch, batch);
  const count = sizeOf(batch);
  const value = new Float64Array(count * m * n);
  const magnitude = new Float64Array(count * m * n);
  for (let t = 0; t < count; t++) {
    const ao = ai[t]! * m * k;
    const bo = bi[t]! * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let mag = 0;
        for (let p = 0; p < k; p++) {
          const x = a[ao + (transposeA ? p * m + i : i * k + p)]!;
          const y = b[bo + (transposeB ? j * k + p : p * n + j)]!;
          s += x * y;
          mag += Math.abs(x * y);
        }
        value[(t * m + i) * n + j] = s;
        magnitude[(t * m + i) * n + j] = mag;
      }
    }
  }
  return { value, magnitude, shape: [...batch, m, n] };
}

/** A convolution's per-axis hyper-parameters: Conv2dParams, Conv3dParams (one entry per spatial axis). */
export interface ConvHostParams {
  readonly stride: readonly number[];
  readonly padding: readonly number[];
  readonly dilation: readonly number[];
  readonly groups: number;
}

/** [N, O, ...spatial out] of an N-d convolution (NC... input, OI... weight). */
export function convOutputShape(xShape: readonly number[], wShape: readonly number[], p: ConvHostParams): number[] {
  const out = xShape
    .slice(2)
    .map((n, i) => Math.floor((n + 2 * p.padding[i]! - p.dilation[i]! * (wShape[2 + i]! - 1) - 1) / p.stride[i]!) + 1);
  return [xShape[0]!, wShape[0]!, ...out];
}

/**
 * Visits every (output element, weight element, input element) triple of an N-d convolution by its definition:
 * y[n, o, q…] = Σ_{c, k…} x[n, g·Cg + c, q·s − p + k·d …] · w[o, c, k…], one spatial index per axis.
 */
function forEachConvTerm(
  xShape: readonly number[],
  wShape: readonly number[],
  p: ConvHostParams,
  visit: (yIndex: number, xIndex: number, wIndex: number) => void,
): void {
  const [n, c] = xShape as [number, number];
  const [o, cg] = wShape as [number, number];
  const spatial = xShape.slice(2);
  const kernel = wShape.slice(2);
  const outSpatial = convOutputShape(xShape, wShape, p).slice(2);
  const dims = spatial.length;
  const og = o / p.groups;
  const outSize = sizeOf(outSpatial);
  const kSize = sizeOf(kernel);
  const inSize = sizeOf(spatial);
  const q = new Array<number>(dims);
  const k = new Array<number>(dims);
  for (let b = 0; b < n; b++) {
    for (let oc = 0; oc < o; oc++) {
      const g = Math.floor(oc / og);
      for (let qi = 0; qi < outSize; qi++) {
        for (let a = dims - 1, r = qi; a >= 0; a--) {
          q[a] = r % outSpatial[a]!;
          r = Math.floor(r / outSpatial[a]!);
        }
        const yIndex = (b * o + oc) * outSize + qi;
        for (let ci = 0; ci < cg; ci++) {
          for (let ki = 0; ki < kSize; ki++) {
            for (let a = dims - 1, r = ki; a >= 0; a--) {
              k[a] = r % kernel[a]!;
              r = Math.floor(r / kernel[a]!);
            }
            let xi = 0;
            let inside = true;
            for (let a = 0; a < dims; a++) {
              const pos = q[a]! * p.stride[a]! - p.padding[a]! + k[a]! * p.dilation[a]!;
              if (pos < 0 || pos >= spatial[a]!) {
                inside = false;
                break;
              }
              xi = xi * spatial[a]! + pos;
            }
            if (!inside) continue;
            visit(yIndex, (b * c + g * cg + ci) * inSize + xi, (oc * cg + ci) * kSize + ki);
          }
        }
      }
    }
  }
}

/** An N-d convolution (conv2d, conv3d) in float64. */
export function convHost(
  x: ArrayLike<number>,
  xShape: readonly number[],
  w: ArrayLike<number>,
  wShape: readonly number[],
  p: ConvHostParams,
): HostResult {
  const size = sizeOf(convOutputShape(xShape, wShape, p));
  const value = new Float64Array(size);
  const magnitude = new Float64Array(size);
  forEachConvTerm(xShape, wShape, p, (yi, xi, wi) => {
    value[yi]! += x[xi]! * w[wi]!;
    magnitude[yi]! += Math.abs(x[xi]! * w[wi]!);
  });
  return { value, magnitude };
}

/** dL/dx = the adjoint of the forward map applied to dy. */
export function convInputGradHost(
  dy: ArrayLike<number>,
  w: ArrayLike<number>,
  wShape: readonly number[],
  xShape: readonly number[],
  p: ConvHostParams,
): HostResult {
  const value = new Float64Array(sizeOf(xShape));
  const magnitude = new Float64Array(sizeOf(xShape));
  forEachConvTerm(xShape, wShape, p, (yi, xi, wi) => {
    value[xi]! += dy[yi]! * w[wi]!;
    magnitude[xi]! += Math.abs(dy[yi]! * w[wi]!);
  });
  return { value, magnitude };
}

export function convFilterGradHost(
  x: ArrayLike<number>,
  xShape: readonly number[],
  dy: ArrayLike<number>,
  wShape: readonly number[],
  p: ConvHostParams,
): HostResult {
  const value = new Float64Array(sizeOf(wShape));
  const magnitude = new Float64Array(sizeOf(wShape));
  forEachConvTerm(xShape, wShape, p, (yi, xi, wi) => {
    value[wi]! += x[xi]! * dy[yi]!;
    magnitude[wi]! += Math.abs(x[xi]! * dy[yi]!);
  });
  return { value, magnitude };
}

/** Reduction over `axes`, keeping dims; sums in float64. */
export function reduceHost(
  op: 'sum' | 'max' | 'min' | 'mean',
  x: ArrayLike<number>,
  shape: readonly number[],
  axes: readonly number[],
): HostResult {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const size = sizeOf(kept);
  const value = new Float64Array(size).fill(op === 'max' ? -Infinity : op === 'min' ? Infinity : 0);
  const magnitude = new Float64Array(size);
  const counts = new Float64Array(size);
  const target = broadcastIndices(kept, shape); // for each input element, its output slot
  for (let i = 0; i < x.length; i++) {
    const t = target[i]!;
    const v = x[i]!;
    if (op === 'max') value[t] = Number.isNaN(v) || Number.isNaN(value[t]!) ? NaN : Math.max(value[t]!, v);
    else if (op === 'min') value[t] = Number.isNaN(v) || Number.isNaN(value[t]!) ? NaN : Math.min(value[t]!, v);
    else value[t]! += v;
    magnitude[t]! += Math.abs(v);
    counts[t]!++;
  }
  if (op === 'mean') for (let t = 0; t < size; t++) [value[t], magnitude[t]] = [value[t]! / counts[t]!, magnitude[t]! / counts[t]!];
  return { value, magnitude };
}

export function softmaxHost(x: ArrayLike<number>, rowLength: number, log: boolean): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / rowLength; r++) {
    const row = Array.from({ length: rowLength }, (_, i) => x[r * rowLength + i]!);
    const max = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
    row.forEach((v, i) => (out[r * rowLength + i] = log ? v - max - Math.log(sum) : Math.exp(v - max) / sum));
  }
  return out;
}

/** erf by its all-positive series for |x| < 3 and 1 − erfc by continued fraction beyond. */
export function erfHost(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 3) return Math.sign(x) * (1 - erfcTail(ax));
  let term = ax;
  let sum = ax;
  for (let n = 1; term > sum * 1e-17; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}

/** erfc(x) for x ≥ 3 by its continued fraction (modified Lentz). */
function erfcTail(x: number): number {
  if (!Number.isFinite(x)) return 0;
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 1000; n++) {
    d = 1 / (x + (n / 2) * d);
    c = x + n / 2 / c;
    f *= c * d;
    if (Math.abs(c * d - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** Φ(x)·x through erfc so the negative tail keeps relative accuracy. */
export function geluHost(x: number): number {
  if (x >= 0 || Number.isNaN(x)) return 0.5 * x * (1 + erfHost(x / Math.SQRT2));
  const t = -x / Math.SQRT2;
  return 0.5 * x * (t >= 3 ? erfcTail(t) : 1 - erfHost(t));
}

export function geluTanhHost(x: number): number {
  const u = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1 + Math.tanh(u));
}
