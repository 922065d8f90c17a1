/**
 * The Backend contract: the only thing a compute backend implements.
 *
 * A backend owns storage and runs numeric kernels on it. It knows nothing of autograd, modules or DoRA:
 * gradients, caching, detaching and merging live in core. Every tensor a kernel sees is dense, row-major
 * and contiguous (views such as reshape are handled by core without calling the backend).
 *
 * Kernels are synchronous *to enqueue*: a GPU backend may return a handle whose contents are computed
 * later. Only `download` waits.
 */
import type { DType, TypedArrayFor } from '../dtype.js';
import type { QuantFormat } from '../quant/format.js';

/** What a kernel receives for each tensor: the backend's own handle plus shape and dtype. */
export interface TensorInfo<H = unknown> {
  readonly data: H;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'max' | 'min' | 'pow' | 'greater' | 'equal';
export type UnaryOp =
  | 'neg'
  | 'abs'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'rsqrt'
  | 'reciprocal'
  | 'square'
  | 'relu'
  | 'step'
  | 'sigmoid'
  | 'silu'
  | 'gelu'
  | 'geluTanh'
  | 'tanh'
  | 'erf'
  | 'sin'
  | 'cos'
  | 'sign'
  | 'isFinite';
// step(x) = x > 0 ? 1 : 0 (the relu derivative); sign(x) ∈ {-1, 0, 1}; isFinite → 1/0.
// gelu is the erf form, geluTanh PyTorch's tanh approximation. Derivatives are composed in core.
export type ReduceOp = 'sum' | 'max' | 'min' | 'mean';

export interface MatMulOptions {
  /** Use aᵀ (the last two axes of a). */
  readonly transposeA?: boolean;
  /** Use bᵀ (the last two axes of b). */
  readonly transposeB?: boolean;
}

/** Conv2d hyper-parameters, NCHW activations and OIHW weights as in PyTorch. */
export interface Conv2dParams {
  readonly stride: readonly [number, number];
  readonly padding: readonly [number, number];
  readonly dilation: readonly [number, number];
  readonly groups: number;
}

/** A 3-D convolution's hyper-parameters, per axis (depth, height, width). */
export interface Conv3dParams {
  readonly stride: readonly [number, number, number];
  readonly padding: readonly [number, number, number];
  readonly dilation: readonly [number, number, number];
  readonly groups: number;
}

export interface WeightNormOptions {
  /**
   * W is stored [in, out] (transformers Conv1D, or Embedding's [vocab, dim] seen as [dim, vocab]ᵀ):
   * the norm is taken per column of W, i.e. per row of Wᵀ.
   */
  readonly transposeW?: boolean;
}

/**
 * A packed quantized weight as kernels see it: the logical row-major matrix W [rows, cols] (PyTorch's
 * [out, in]) in bitsandbytes' layout (docs/narrow-weights.md). Element e = r·cols + c of W is
 *   nf4/fp4: code[nibble(e)] · scales[floor(e / blocksize)], nibble(e) = e even ? data[e/2] >> 4 : data[e>>1] & 15
 *   int8:    data[e] · scales[r] · fround(1/127)
 * with every product rounded to float32 as bitsandbytes does. Double quantization is resolved by core
 * before a kernel sees the weight: `scales` is always float32.
 */
export interface QuantizedInfo<H = unknown> {
  readonly format: QuantFormat;
  readonly shape: readonly [number, number];
  /** nf4/fp4: uint8 [ceil(rows·cols/2)] (int32 holding one byte each where the backend lacks uint8); int8: int8 [rows, cols]. */
  readonly data: TensorInfo<H>;
  /** float32: absmax per block (nf4/fp4) or SCB per row (int8). */
  readonly scales: TensorInfo<H>;
  /** Elements per absmax block (nf4/fp4); cols for int8. */
  readonly blocksize: number;
}

/**
 * A weight operand of the narrow kernels: a dense tensor (float32, bfloat16 or float16 bits) or a packed
 * quantized one. Activations, adapters and outputs stay float32.
 */
export type WeightInfo<H = unknown> = TensorInfo<H> | QuantizedInfo<H>;

/**
 * The kernels every backend implements. Shapes follow numpy broadcasting where noted.
 * `H` is the backend's storage handle type.
 */
export interface BackendKernels<H = unknown> {
  // ---- storage
  /** Copies host values into backend storage. `values.length` equals the product of `shape`. */
  upload(values: TypedArrayFor<DType>, shape: readonly number[], dtype: DType): H;
  /** Reads a tensor back to the host. The only asynchronous operation. */
  download(t: TensorInfo<H>): Promise<TypedArrayFor<DType>>;
  /** Frees storage. Called exactly once per handle by core. */
  release(data: H): void;
  /** Number of storage buffers alive (for leak tests). */
  liveBuffers(): number;
  /** A tensor of `shape` filled with `value`. */
  fill(shape: readonly number[], value: number, dtype: DType): H;

  // ---- linear algebra
  /** Batched matmul over the last two axes; leading axes broadcast. a [..., M, K] · b [..., K, N]. */
  matmul(a: TensorInfo<H>, b: TensorInfo<H>, options: MatMulOptions, outShape: readonly number[]): H;

  // ---- elementwise
  /** Broadcasting binary op; comparisons return 1/0 in float32. */
  binary(op: BinaryOp, a: TensorInfo<H>, b: TensorInfo<H>, outShape: readonly number[]): H;
  unary(op: UnaryOp, a: TensorInfo<H>): H;
  /** a * scale + offset, elementwise (cheap affine; used for scalar arithmetic without uploads). */
  affine(a: TensorInfo<H>, scale: number, offset: number): H;
  /** cond ? a : b with broadcasting (cond non-zero = true). */
  where(cond: TensorInfo<H>, a: TensorInfo<H>, b: TensorInfo<H>, outShape: readonly number[]): H;

  // ---- reductions
  /** Reduces over `axes` (sorted, unique, non-empty); the output keeps size-1 axes (`outShape`). */
  reduce(op: ReduceOp, a: TensorInfo<H>, axes: readonly number[], outShape: readonly number[]): H;
  /** Index of the maximum along the last axis, int32, shape without the last axis. */
  argMax(a: TensorInfo<H>): H;
  /** Softmax (or log-softmax) along the last axis. */
  softmax(a: TensorInfo<H>, log: boolean): H;

  // ---- indexing
  /** Rows of a 2-D table: out[i, :] = table[indices[i], :]. indices int32 of any shape (flattened). */
  gather(table: TensorInfo<H>, indices: TensorInfo<H>): H;
  /** The transpose of gather: out [numRows, cols] = Σ over i with indices[i] = row of updates[i, :]. */
  scatterAdd(indices: TensorInfo<H>, updates: TensorInfo<H>, numRows: number): H;

  // ---- layout
  transpose(a: TensorInfo<H>, perm: readonly number[]): H;
  slice(a: TensorInfo<H>, begin: readonly number[], size: readonly number[]): H;
  concat(tensors: readonly TensorInfo<H>[], axis: number, outShape: readonly number[]): H;
  cast(a: TensorInfo<H>, dtype: DType): H;

  // ---- convolution (NCHW / OIHW)
  conv2d(x: TensorInfo<H>, w: TensorInfo<H>, p: Conv2dParams, outShape: readonly number[]): H;
  /** dL/dx given dL/dy and the weight. */
  conv2dBackpropInput(dy: TensorInfo<H>, w: TensorInfo<H>, p: Conv2dParams, xShape: readonly number[]): H;
  /** dL/dw given the input and dL/dy. */
  conv2dBackpropFilter(x: TensorInfo<H>, dy: TensorInfo<H>, p: Conv2dParams, wShape: readonly number[]): H;
}

/**
 * Optional fused kernels. Core has a composite default for each (see `fused.ts`); a backend provides one
 * only to be faster, and the conformance suite checks it against the composite.
 */
export interface FusedKernels<H = unknown> {
  /**
   * 3-D convolution (NCDHW input, OIDHW weight) and its two gradients — all three or none. Without them core
   * builds conv3d from conv2d kernels, one per depth tap (ops/conv-nd.ts).
   */
  conv3d?(x: TensorInfo<H>, w: TensorInfo<H>, p: Conv3dParams, outShape: readonly number[]): H;
  conv3dBackpropInput?(dy: TensorInfo<H>, w: TensorInfo<H>, p: Conv3dParams, xShape: readonly number[]): H;
  conv3dBackpropFilter?(x: TensorInfo<H>, dy: TensorInfo<H>, p: Conv3dParams, wShape: readonly number[]): H;
  /**
   * ‖W + scale·B·A‖ per output feature, float32 accumulation, without materialising B·A.
   * W [out, in] (or [in, out] with transposeW), A [r, in], B [out, r] → [out].
   */
  weightNorm?(w: TensorInfo<H>, a: TensorInfo<H>, b: TensorInfo<H>, scale: number, options: WeightNormOptions): H;
  /**
   * bias + g ⊙ (base + scale·lora); base and lora [..., out], g [out], bias [out] or absent.
   */
  doraCompose?(base: TensorInfo<H>, lora: TensorInfo<H>, g: TensorInfo<H>, scale: number, bias: TensorInfo<H> | null): H;
  /**
   * In place: overwrites dst's slab [offset, offset + src.shape[axis]) along `axis` with src (same rank and
   * dtype, equal sizes on every other axis). The one kernel that mutates storage; core calls it only on a
   * buffer no other tensor shares (a KV cache), ordered after every kernel enqueued before it. Without it,
   * core rebuilds the buffer from slice + concat on the device.
   */
  writeSlice?(dst: TensorInfo<H>, src: TensorInfo<H>, axis: number, offset: number): void;
  /**
   * RMSNorm over the last axis: x · rsqrt(mean(x²) + eps), times weight [last] when given. float32 x
   * [..., n] → float32 of x's shape, each row on its own (a row's result never depends on the other rows).
   * Core calls it where no gradient is recorded (inference); training runs the composite.
   */
  rmsNorm?(x: TensorInfo<H>, weight: TensorInfo<H> | null, eps: number): H;
  /**
   * Rotary embedding with rotate_half: x·cos + cat(−x₂, x₁)·sin over the last axis (x₁, x₂ its halves),
   * each product and the sum rounded to float32 as the composite's mul, mul, add. float32 x
   * [batch, heads, seq, d], cos and sin [rows, 1, seq, d] with rows 1 (every batch row alike) or batch;
   * d even. Core calls it where no gradient is recorded.
   */
  rotary?(x: TensorInfo<H>, cos: TensorInfo<H>, sin: TensorInfo<H>): H;
  /**
   * Storage for a tensor whose bytes arrive in pieces (a loader streaming a checkpoint tensor by bounded
   * chunks), so the whole tensor never exists on the host: the sink's `write` copies the next bytes
   * (little-endian values of `dtype`, in order) straight into the storage. Core validates shape, dtype and
   * every write's length before calling the sink, and calls `finish` only after exactly the tensor's bytes
   * were written. Without it, core assembles the values on the host and calls `upload` (`tensorWriter`).
   */
  beginUpload?(shape: readonly number[], dtype: DType): UploadSink<H>;
  /**
   * A hint before a loader's `beginUpload` calls: the tensors it will ask for next, in order (a checkpoint's
   * header gives every size up front). A backend that packs loaded weights may size its allocations to what
   * is coming (the WebGPU backend's last slab). Only a hint: calls that differ from it still work.
   */
  planUploads?(tensors: readonly { readonly shape: readonly number[]; readonly dtype: DType }[]): void;
  /**
   * A DoRA Linear's base matmul with the compose in its epilogue: base = x·Wᵀ (x·W with transposeW) and
   * y = bias + g ⊙ (base + scale·lora). x [rows, in], W [out, in] (or [in, out]), lora [rows, out],
   * g [out], bias [out] or absent → both [rows, out] (backward needs base).
   */
  matmulCompose?(
    x: TensorInfo<H>,
    w: TensorInfo<H>,
    lora: TensorInfo<H>,
    g: TensorInfo<H>,
    scale: number,
    bias: TensorInfo<H> | null,
    options: WeightNormOptions,
  ): { readonly base: H; readonly y: H };
  /**
   * A DoRA Linear's base matmul and weight norm from one pass over W: base = x·Wᵀ [rows, out] and
   * ‖W + scale·B·A‖ [out]; W dense or narrow (widened in registers, as `matmulNarrow`). Returns null where
   * sharing the pass gains nothing on this backend for these shapes (core then runs matmulCompose, or
   * matmul, with a separate weightNorm).
   */
  matmulWeightNorm?(
    x: TensorInfo<H>,
    w: WeightInfo<H>,
    a: TensorInfo<H>,
    b: TensorInfo<H>,
    scale: number,
    options: WeightNormOptions,
  ): { readonly base: H; readonly norm: H } | null;

  // ---- narrow weights (bf16/f16 dense, nf4/fp4/int8 packed): W is widened in registers, never stored
  // as float32. Core calls these only for a narrow W; each has a composite (ops/narrow.ts) that widens W
  // into a float32 temporary first.
  /**
   * x [M, K] · Wᵀ with W [N, K] (transposeW, the forward of a Linear) → [M, N]; or x [M, N] · W with
   * W [N, K] (the input gradient dY·W) → [M, K]. float32 x and output.
   */
  matmulNarrow?(x: TensorInfo<H>, w: WeightInfo<H>, transposeW: boolean, outShape: readonly number[]): H;
  /** Rows of a narrow 2-D table (an Embedding), widened: float32 [indices.size, cols]. */
  gatherNarrow?(table: WeightInfo<H>, indices: TensorInfo<H>): H;
  /** `weightNorm` with a narrow W. */
  weightNormNarrow?(w: WeightInfo<H>, a: TensorInfo<H>, b: TensorInfo<H>, scale: number, options: WeightNormOptions): H;
  /** W widened to float32 [rows, cols] (bitsandbytes' dequantize_4bit / int8_vectorwise_dequant). */
  dequantize?(w: QuantizedInfo<H>): H;
}

/** Where `beginUpload` writes: called by core only, in order, with whole elements. */
export interface UploadSink<H = unknown> {
  /**
   * Copies `bytes` to the storage right after the bytes written so far; `bytes` may be reused by the caller
   * once it returns. A backend that queues copies (a GPU queue) may return a promise to bound what is in
   * flight: the caller awaits it before reading the next piece. The write itself is already ordered, so a
   * caller that does not await loses only the bound, never data.
   */
  write(bytes: Uint8Array): void | Promise<void>;
  /** The filled handle (every byte written); the sink is done. */
  finish(): H;
  /** Frees the storage of an unfinished upload (a read failed); the sink is done. */
  abort(): void;
}

export interface BackendCapabilities {
  /** Dtypes the backend can store (float32 and int32 are required). */
  readonly dtypes: readonly DType[];
  /** True when tensors live off the host (a GPU), so host round trips are expensive. */
  readonly offHost: boolean;
  /**
   * True when the device is emulated on the CPU (e.g. WebGPU on Mesa llvmpipe): 'auto' then prefers
   * another backend. Asking for the backend by name still uses it.
   */
  readonly software?: boolean;
}

/** Bytes a backend holds and the most it can address (the CPU backend's wasm heap). */
export interface MemoryInfo {
  readonly usedBytes: number;
  readonly limitBytes: number;
}

export interface Backend<H = unknown> extends BackendKernels<H>, FusedKernels<H> {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  /**
   * Where storage is bounded (the CPU backend's wasm heap): what is in use and the limit, so a loader can
   * check that a model fits before uploading any of it (`checkFits`). Absent: no fixed bound is known.
   */
  memory?(): MemoryInfo;
  /** Waits until all enqueued work is done (no-op on synchronous backends). */
  sync(): Promise<void>;
  /** Frees every resource; the backend is unusable afterwards. */
  dispose(): void;
}
