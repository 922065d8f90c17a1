/** Plain-loop float64 references for kernel tests, and deterministic random data. */

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** out[...] = f(a[bcast], b[bcast]) with numpy broadcasting. */
export function broadcastMap(
  shapes: readonly (readonly number[])[],
  arrays: readonly ArrayLike<number>[],
  outShape: readonly number[],
  f: (...xs: number[]) => number,
): Float64Array {
  const n = size(outShape);
  const out = new Float64Array(n);
  const os = strides(outShape);
  const ins = shapes.map((shape) => {
    const st = strides(shape);
    const off = outShape.length - shape.length;
    return outShape.map((_, d) => (d < off || shape[d - off] === 1 ? 0 : st[d - off]!));
  });
  for (let i = 0; i < n; i++) {
    const xs = ins.map((st, k) => {
      let idx = 0;
      for (let d = 0; d < outShape.length; d++) idx += (Math.floor(i / os[d]!) % outShape[d]!) * st[d]!;
      return arrays[k]![idx]!;
    });
    out[i] = f(...xs);
  }
  return out;
}

/** Batched matmul reference (batch broadcast on leading axes). */
export function matmulRef(
  a: ArrayLike<number>,
  aShape: readonly number[],
  b: ArrayLike<number>,
  bShape: readonly number[],
  transA: boolean,
  transB: boolean,
): { out: Float64Array; shape: number[] } {
  const ra = aShape.length;
  const rb = bShape.length;
  const M = transA ? aShape[ra - 1]! : aShape[ra - 2]!;
  const K = transA ? aShape[ra - 2]! : aShape[ra - 1]!;
  const N = transB ? bShape[rb - 2]! : bShape[rb - 1]!;
  const aB = aShape.slice(0, -2);
  const bB = bShape.slice(0, -2);
  const nb = Math.max(aB.length, bB.length);
  const outB: number[] = [];
  for (let i = 0; i < nb; i++) {
    const da = aB[aB.length - nb + i] ?? 1;
    const db = bB[bB.length - nb + i] ?? 1;
    outB.push(Math.max(da, db));
  }
  const batch = size(outB);
  const out = new Float64Array(batch * M * N);
  const ob = strides(outB);
  const as = strides(aB);
  const bs = strides(bB);
  for (let z = 0; z < batch; z++) {
    let ao = 0;
    let bo = 0;
    for (let d = 0; d < nb; d++) {
      const c = Math.floor(z / ob[d]!) % outB[d]!;
      const da = d - (nb - aB.length);
      const db = d - (nb - bB.length);
      if (da >= 0 && aB[da] !== 1) ao += c * as[da]!;
      if (db >= 0 && bB[db] !== 1) bo += c * bs[db]!;
    }
    ao *= M * K;
    bo *= K * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ao + (transA ? k * M + m : m * K + k)]!;
          const bv = b[bo + (transB ? n * K + k : k * N + n)]!;
          s += av * bv;
        }
        out[z * M * N + m * N + n] = s;
      }
    }
  }
  return { out, shape: [...outB, M, N] };
}
