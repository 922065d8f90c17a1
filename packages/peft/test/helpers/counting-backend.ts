/**
 * A Backend proxy that records every kernel call with the number of elements its output buffer holds, so
 * tests can see where work ran and how large each allocation was. `hideFused` drops the optional fused
 * kernels so core falls back to its composite (materialising) forms.
 */
import type { Backend, TensorInfo } from '@dorajs/core';

export interface KernelCall {
  readonly op: string;
  readonly elements: number;
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const last = (args: unknown[]) => size(args[args.length - 1] as readonly number[]);

/** Output element count per kernel, from its arguments (the contract fixes every output shape). */
const OUTPUT: Record<string, (args: unknown[]) => number> = {
  upload: (a) => size(a[1] as number[]),
  fill: (a) => size(a[0] as number[]),
  matmul: last,
  binary: last,
  where: last,
  reduce: last,
  concat: last,
  conv2d: last,
  conv2dBackpropInput: last,
  conv2dBackpropFilter: last,
  unary: (a) => size((a[1] as TensorInfo).shape),
  affine: (a) => size((a[0] as TensorInfo).shape),
  softmax: (a) => size((a[0] as TensorInfo).shape),
  cast: (a) => size((a[0] as TensorInfo).shape),
  transpose: (a) => size((a[0] as TensorInfo).shape),
  argMax: (a) => size((a[0] as TensorInfo).shape.slice(0, -1)),
  slice: (a) => size(a[2] as number[]),
  gather: (a) => size((a[1] as TensorInfo).shape) * (a[0] as TensorInfo).shape[1]!,
  scatterAdd: (a) => (a[2] as number) * (a[1] as TensorInfo).shape[1]!,
  weightNorm: (a) => {
    const w = (a[0] as TensorInfo).shape;
    return (a[4] as { transposeW?: boolean }).transposeW ? w[1]! : w[0]!;
  },
  doraCompose: (a) => size((a[0] as TensorInfo).shape) as number,
};

export interface CountingBackend {
  readonly backend: Backend;
  readonly calls: KernelCall[];
  /** The name of every backend method called (releases, reads and fused kernels too), in order. */
  readonly every: string[];
  reset(): void;
  /** Calls whose op is one of `ops`. */
  count(...ops: string[]): number;
  largest(): number;
}

export function counting(inner: Backend, options: { hideFused?: boolean; name?: string } = {}): CountingBackend {
  const calls: KernelCall[] = [];
  const every: string[] = [];
  const proxy = new Proxy(inner, {
    get(target, prop, receiver) {
      if (options.hideFused && (prop === 'weightNorm' || prop === 'doraCompose')) return undefined;
      if (prop === 'name' && options.name) return options.name;
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      const outputs = OUTPUT[prop];
      return (...args: unknown[]) => {
        every.push(prop);
        if (outputs) calls.push({ op: prop, elements: outputs(args) });
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    backend: proxy,
    calls,
    every,
    reset: () => {
      calls.splice(0);
      every.splice(0);
    },
    count: (...ops) => calls.filter((c) => ops.includes(c.op)).length,
    largest: () => calls.reduce((m, c) => Math.max(m, c.elements), 0),
  };
}
