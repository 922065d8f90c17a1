/**
 * writeSlice: overwrites dst's slab [offset, offset + n) along one axis with src, in place — one dispatch
 * per write, touching only the slab (a KV cache step costs its new positions, not the whole cache).
 *
 * Seen from the axis, dst is `outer` rows of `dstRun` elements and src `outer` rows of `srcRun`; row o's
 * slab starts at element o·dstRun + start (start = offset · inner). One invocation per 32-bit word of dst
 * that a row's slab touches: row o's k-th word. For packed dtypes (bf16/f16: 2 per word, int8/uint8: 4) a
 * word at a slab edge also holds elements outside it, whose bits the invocation keeps; a word touched by
 * the slabs of two neighbouring rows is written by the lower row's invocation only, which resolves every
 * element of the word by its own coordinates — so no word has two writers and no atomics are needed.
 */
import type { DType } from '@dorajs/core';
import type { KernelContext } from '../context.js';
import { memoProgram, type Program } from '../runtime.js';
import { grid } from '../shapes.js';
import { elementsPerWord } from '../storage.js';
import { bindInput, bindOutput, ELEMENTWISE_WORKGROUP as WG, linearMain, loadBits } from '../wgsl/common.js';
import type { TensorArg } from './elementwise.js';

function program(dtype: DType): Program {
  const epw = elementsPerWord(dtype);
  return memoProgram(`write-slice:${dtype}`, () => ({
    key: `write-slice:${dtype}`,
    name: `write slice ${dtype}`,
    uniforms: {
      scalars: [
        ['threads', 'u32'],
        ['wordsPerRow', 'u32'],
        ['n', 'u32'],
        ['dstRun', 'u32'],
        ['srcRun', 'u32'],
        ['start', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 1,
    source: () => {
      const body =
        epw === 1
          ? // One element per word: the k-th element of row o's slab.
            `  out[o * P.dstRun + P.start + k] = src[o * P.srcRun + k];`
          : `  let first = (o * P.dstRun + P.start) / ${epw}u;
  let w = first + k;
  let last = o * P.dstRun + P.start + P.srcRun - 1u;
  if (w * ${epw}u > last) { return; }
  // The previous row's slab reaches into this word: its invocation writes it.
  if (k == 0u && o > 0u && w * ${epw}u <= (o - 1u) * P.dstRun + P.start + P.srcRun - 1u) { return; }
  var word = out[w];
  for (var j = 0u; j < ${epw}u; j++) {
    let e = w * ${epw}u + j;
    if (e >= P.n) { break; }
    let row = e / P.dstRun;
    let pos = e % P.dstRun;
    if (pos >= P.start && pos < P.start + P.srcRun) {
      let bits = ${loadBits('src', dtype, 'row * P.srcRun + pos - P.start')};
      word = insertBits(word, bits, j * ${32 / epw}u, ${32 / epw}u);
    }
  }
  out[w] = word;`;
      return `${bindOutput(1, 'out', 'u32')}
${bindInput(2, 'src', 'u32')}
${linearMain(
  WG,
  `  if (index >= P.threads) { return; }
  let o = index / P.wordsPerRow;
  let k = index % P.wordsPerRow;
${body}`,
)}`;
    },
  }));
}

/** In place: dst[..., offset + i, ...] = src[..., i, ...] along `axis` (shapes checked by the caller). */
export function writeSlice(ctx: KernelContext, dst: TensorArg, src: TensorArg, axis: number, offset: number): void {
  const inner = dst.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
  const outer = dst.shape.slice(0, axis).reduce((p, d) => p * d, 1);
  const dstRun = dst.shape[axis]! * inner;
  const srcRun = src.shape[axis]! * inner;
  const n = outer * dstRun;
  if (srcRun === 0 || outer === 0) return;
  const epw = elementsPerWord(dst.t.dtype);
  // A slab of srcRun elements starting anywhere in a word touches at most ceil(srcRun / epw) + 1 words.
  const wordsPerRow = epw === 1 ? srcRun : Math.ceil(srcRun / epw) + 1;
  const threads = outer * wordsPerRow;
  ctx.rt.dispatch({
    program: program(dst.t.dtype),
    outputs: [dst.t.buf],
    inputs: [src.t.buf],
    scalars: { threads, wordsPerRow, n, dstRun, srcRun, start: offset * inner },
    workgroups: grid(Math.ceil(threads / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension),
  });
}
