import { memoProgram, type Program } from '../../runtime.js';
import { bindInput, bindOutput, linearMain, ELEMENTWISE_WORKGROUP as WG } from '../../wgsl/common.js';
import type { Epilogue } from './tiled.js';

/** Adds the K slices' partial products (and applies the compose epilogue, if any). */
export function splitReduceProgram(vec: boolean, epilogue: Epilogue): Program {
  return memoProgram(`matmul-split-reduce:${vec ? 'vec4' : 'scalar'}:${epilogue}`, () => buildSplitReduceProgram(vec, epilogue));
}

function buildSplitReduceProgram(vec: boolean, epilogue: Epilogue): Program {
  const f4 = vec ? 'vec4<f32>' : 'f32';
  const compose = epilogue !== 'none';
  let binding = 1;
  const bindings = [bindOutput(binding++, 'C', f4)];
  if (compose) bindings.push(bindOutput(binding++, 'Y', f4));
  bindings.push(bindInput(binding++, 'PART', f4));
  if (compose) {
    bindings.push(bindInput(binding++, 'LORA', f4));
    bindings.push(bindInput(binding++, 'G', f4));
    if (epilogue === 'composeBias') bindings.push(bindInput(binding++, 'BIAS', f4));
  }
  const col = vec ? '((i * 4u) % P.cols) / 4u' : 'i % P.cols';
  return {
    key: `matmul-split-reduce:${vec ? 'vec4' : 'scalar'}:${epilogue}`,
    name: `matmul split-K reduce${compose ? ' + compose' : ''}`,
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['splits', 'u32'],
        ['cols', 'u32'],
        ['escale', 'f32'],
      ],
      dims: 0,
    },
    outputs: compose ? 2 : 1,
    inputs: compose ? (epilogue === 'composeBias' ? 4 : 3) : 1,
    source: () => `${bindings.join('\n')}
${linearMain(
  WG,
  `  let i = index;
  if (i >= P.n) { return; }
  var s = PART[i];
  for (var p = 1u; p < P.splits; p++) { s += PART[p * P.n + i]; }
  C[i] = s;${
    compose
      ? `
  Y[i] = ${epilogue === 'composeBias' ? `BIAS[${col}] + ` : ''}G[${col}] * fma(${f4}(P.escale), LORA[i], s);`
      : ''
  }`,
)}`,
  };
}
