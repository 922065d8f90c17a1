/** The small base models of the PEFT fixtures (fixtures/peft/README.md), built from core layers. */
import { type Backend, Conv1D, Conv1d, Conv2d, Conv3d, Embedding, Layer, Linear, ReLU, Sequential, type Tensor } from '@dorajs/core';

/** MLP: lin1 (bias) → ReLU → lin2 (no bias), as the fixtures' `MLP(dims, bias)`. */
export class MLP extends Layer {
  lin1: Layer;
  act = new ReLU();
  lin2: Layer;

  constructor(backend: Backend, dims: readonly [number, number, number] = [16, 32, 8], bias: readonly [boolean, boolean] = [true, false]) {
    super();
    this.lin1 = new Linear(dims[0], dims[1], { backend, bias: bias[0] });
    this.lin2 = new Linear(dims[1], dims[2], { backend, bias: bias[1] });
  }

  forward(x: Tensor): Tensor {
    return this.lin2.forward(this.act.forward(this.lin1.forward(x)));
  }
}

/** Embedding(vocab, dim) → Linear(dim, out). */
export class EmbHead extends Layer {
  emb: Layer;
  head: Layer;

  constructor(backend: Backend, vocab = 40, dim = 12, out = 6) {
    super();
    this.emb = new Embedding(vocab, dim, { backend });
    this.head = new Linear(dim, out, { backend });
  }

  forward(ids: Tensor): Tensor {
    return this.head.forward(this.emb.forward(ids));
  }
}

export interface ConvNetOptions {
  readonly channels?: readonly [number, number, number];
  readonly k1?: number;
  readonly padding1?: number;
  readonly dilation1?: number;
  readonly groups2?: number;
  readonly k2?: number;
}

/** Conv2d(3→6, k3, pad 1) → ReLU → Conv2d(6→4, k1). */
export class ConvNet extends Layer {
  c1: Layer;
  act = new ReLU();
  c2: Layer;

  constructor(backend: Backend, o: ConvNetOptions = {}) {
    super();
    const [a, b, c] = o.channels ?? [3, 6, 4];
    this.c1 = new Conv2d(a, b, o.k1 ?? 3, { backend, padding: o.padding1 ?? 1, dilation: o.dilation1 ?? 1 });
    this.c2 = new Conv2d(b, c, o.k2 ?? 1, { backend, groups: o.groups2 ?? 1 });
  }

  forward(x: Tensor): Tensor {
    return this.c2.forward(this.act.forward(this.c1.forward(x)));
  }
}

/** GPT-2-style block: two transformers Conv1D layers (weights [in, out]). */
export class Conv1DNet extends Layer {
  c_fc: Layer;
  act = new ReLU();
  c_proj: Layer;

  constructor(backend: Backend, dims: readonly [number, number, number] = [8, 12, 5]) {
    super();
    this.c_fc = new Conv1D(dims[1], dims[0], { backend });
    this.c_proj = new Conv1D(dims[2], dims[1], { backend });
  }

  forward(x: Tensor): Tensor {
    return this.c_proj.forward(this.act.forward(this.c_fc.forward(x)));
  }
}

export { Sequential };

/** nn.Conv1d(3→6, k3, stride 2, pad 1) → ReLU → Conv1d(6→4, k1): fixtures/peft/conv1d (make_conv_nd.py). */
export class ConvNet1d extends Layer {
  c1: Layer;
  act = new ReLU();
  c2: Layer;

  constructor(backend: Backend, o: { groups1?: number; dilation1?: number } = {}) {
    super();
    this.c1 = new Conv1d(3 * (o.groups1 ?? 1), 6, 3, {
      backend,
      stride: 2,
      padding: 1,
      groups: o.groups1 ?? 1,
      dilation: o.dilation1 ?? 1,
    });
    this.c2 = new Conv1d(6, 4, 1, { backend });
  }

  forward(x: Tensor): Tensor {
    return this.c2.forward(this.act.forward(this.c1.forward(x)));
  }
}

/** nn.Conv3d(2→4, k (2,3,3), stride (1,2,1), pad (1,1,0)) → ReLU → Conv3d(4→3, k1): fixtures/peft/conv3d. */
export class ConvNet3d extends Layer {
  c1: Layer;
  act = new ReLU();
  c2: Layer;

  constructor(backend: Backend, o: { groups2?: number } = {}) {
    super();
    this.c1 = new Conv3d(2, 4, [2, 3, 3], { backend, stride: [1, 2, 1], padding: [1, 1, 0] });
    this.c2 = new Conv3d(4, 4 - (o.groups2 ? 0 : 1), 1, { backend, groups: o.groups2 ?? 1 });
  }

  forward(x: Tensor): Tensor {
    return this.c2.forward(this.act.forward(this.c1.forward(x)));
  }
}
