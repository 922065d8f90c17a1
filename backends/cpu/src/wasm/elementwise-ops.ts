/**
 * The elementwise ops that have a wasm kernel, by name. Kept apart from elementwise-wasm.ts (which emits those
 * kernels) so the backend can ask "is there a wasm kernel for this op?" without loading the emitter, which
 * `loadCpuBackend` fetches as a lazy chunk.
 */
export const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'max', 'min', 'greater', 'equal'] as const;
export type WasmBinaryOp = (typeof BINARY_OPS)[number];
export const UNARY_OPS = [
  'neg',
  'abs',
  'sqrt',
  'rsqrt',
  'reciprocal',
  'square',
  'relu',
  'step',
  'sign',
  'isFinite',
  'exp',
  'sigmoid',
  'silu',
  'tanh',
  'geluTanh',
  'log',
  'erf',
  'gelu',
] as const;
export type WasmUnaryOp = (typeof UNARY_OPS)[number];
export function isWasmBinary(op: string): op is WasmBinaryOp {
  return (BINARY_OPS as readonly string[]).includes(op);
}
export function isWasmUnary(op: string): op is WasmUnaryOp {
  return (UNARY_OPS as readonly string[]).includes(op);
}
export const REDUCE_OPS = ['sum', 'max', 'min'] as const;
export type WasmReduceOp = (typeof REDUCE_OPS)[number];
