/**
 * Tape-free reverse-mode autograd: each op that sees an input requiring grad attaches a GradNode to its
 * output. Nodes are reference counted (by their output tensor and by the nodes that consume them), so
 * disposing the tensors of a forward pass frees the activations saved for backward — no leaks when a
 * graph is built but never differentiated.
 */
import { DoraError, ShapeError } from '../errors.js';
import { isGradEnabled, noGrad, tidy } from './scope.js';
import { shapeStr, sameShape } from './shape.js';
import { Storage } from './storage.js';
import { Tensor } from './tensor.js';

export type BackwardFn = (grad: Tensor, saved: readonly Tensor[]) => readonly (Tensor | null)[];

export class GradNode {
  private refs = 1;
  private saved: Tensor[] | null;

  constructor(
    readonly op: string,
    readonly inputs: readonly (Tensor | null)[],
    saved: readonly Tensor[],
    readonly backwardFn: BackwardFn,
  ) {
    // Shadow tensors share storage but are owned by the node, not by any scope.
    this.saved = saved.map((t) => new Tensor(t.storage.retain(), t.shape, false));
    for (const input of inputs) input?.node?.incRef();
  }

  incRef(): void {
    this.refs++;
  }

  decRef(): void {
    if (--this.refs > 0) return;
    this.freeSaved();
    for (const input of this.inputs) input?.node?.decRef();
  }

  get savedTensors(): readonly Tensor[] {
    if (!this.saved)
      throw new DoraError(`backward through '${this.op}' a second time: its saved tensors were freed (pass { retainGraph: true })`);
    return this.saved;
  }

  freeSaved(): void {
    if (!this.saved) return;
    for (const t of this.saved) t.dispose();
    this.saved = null;
  }
}

/**
 * Attaches a node to `output` when grad is enabled and any input requires grad. Returns `output`.
 * `saved` are tensors the backward needs (the node keeps them alive).
 */
export function record(
  op: string,
  output: Tensor,
  inputs: readonly (Tensor | null)[],
  saved: readonly Tensor[],
  backwardFn: BackwardFn,
): Tensor {
  if (!isGradEnabled() || !inputs.some((t) => t?.requiresGrad)) return output;
  output.requiresGrad = true;
  output.node = new GradNode(
    op,
    inputs.map((t) => (t?.requiresGrad ? t : null)),
    saved,
    backwardFn,
  );
  return output;
}

function topoOrder(root: GradNode): GradNode[] {
  const order: GradNode[] = [];
  const visited = new Set<GradNode>();
  // Iterative DFS: deep models overflow the call stack otherwise.
  const stack: [GradNode, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i]?.node;
      if (child && !visited.has(child)) {
        visited.add(child);
        stack.push([child, 0]);
      }
    } else {
      order.push(node);
      stack.pop();
    }
  }
  return order.reverse();
}

export interface BackwardOptions {
  /** Gradient of the final objective with respect to `root`; defaults to ones (root must be a scalar then). */
  readonly gradient?: Tensor;
  /** Keep saved activations so backward can run again through the same graph. */
  readonly retainGraph?: boolean;
}

/** Accumulates d(root)/d(leaf) into `leaf.grad` for every leaf that requires grad. */
export function backward(root: Tensor, options: BackwardOptions = {}): void {
  root.assertAlive();
  if (!root.requiresGrad) throw new DoraError('backward(): the tensor does not require grad (no parameter took part in computing it)');
  noGrad(() => {
    let seed: Tensor;
    if (options.gradient) {
      if (!sameShape(options.gradient.shape, root.shape)) {
        throw new ShapeError(`backward(): gradient ${shapeStr(options.gradient.shape)} does not match output ${shapeStr(root.shape)}`);
      }
      seed = new Tensor(options.gradient.storage.retain(), options.gradient.shape, false);
    } else {
      if (root.size !== 1) throw new ShapeError(`backward(): output ${shapeStr(root.shape)} is not a scalar; pass { gradient }`);
      const b = root.backend;
      seed = new Tensor(new Storage(b, b.fill(root.shape, 1, 'float32'), 'float32', 1), root.shape, false);
    }
    if (!root.node) {
      accumulateLeaf(root, seed);
      return;
    }
    const grads = new Map<GradNode, Tensor>([[root.node, seed]]);
    for (const node of topoOrder(root.node)) {
      const g = grads.get(node);
      grads.delete(node);
      if (!g) continue;
      // tidy frees the temporaries each backward step creates; the returned grads survive it.
      const saved = node.savedTensors;
      const raw = tidy(() => node.backwardFn(g, saved));
      // Own every gradient through a fresh handle: a backward may return g itself, a saved tensor,
      // or the same tensor for two inputs.
      const inputGrads = raw.map((t) => (t ? new Tensor(t.storage.retain(), t.shape, false) : null));
      for (const t of raw) if (t && t !== g && !saved.includes(t)) t.dispose();
      g.dispose();
      if (!options.retainGraph) node.freeSaved();
      node.inputs.forEach((input, i) => {
        const ig = inputGrads[i];
        if (!ig) return;
        if (!input) {
          ig.dispose();
          return;
        }
        if (!sameShape(ig.shape, input.shape)) {
          throw new ShapeError(`autograd '${node.op}': gradient ${shapeStr(ig.shape)} for input ${shapeStr(input.shape)}`);
        }
        if (input.node) {
          const prev = grads.get(input.node);
          grads.set(input.node, prev ? addInto(prev, ig) : ig);
        } else {
          accumulateLeaf(input, ig);
        }
      });
    }
  });
}

let addKernel: ((a: Tensor, b: Tensor) => Tensor) | null = null;

/** @internal ops register elementwise add here (autograd cannot import ops without a cycle). */
export function setGradAdd(fn: (a: Tensor, b: Tensor) => Tensor): void {
  addKernel = fn;
}

function addInto(a: Tensor, b: Tensor): Tensor {
  const sum = addKernel!(a, b);
  a.dispose();
  b.dispose();
  // Detach from any scope: gradients are owned by autograd until handed to a leaf.
  const owned = new Tensor(sum.storage.retain(), sum.shape, false);
  sum.dispose();
  return owned;
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  leaf.grad = leaf.grad ? addInto(leaf.grad, g) : g;
}
