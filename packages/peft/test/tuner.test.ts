import {
  type Backend,
  type HostTensor,
  Layer,
  Linear,
  Module,
  ModuleList,
  Random,
  serializeSafetensors,
  type Tensor,
  tensor,
} from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import {
  collectWarningsAsync,
  getPeftModel,
  LoraConfig,
  LoraConv2d,
  LoraEmbedding,
  LoraLinear,
  ModulesToSaveWrapper,
  PeftModel,
  TargetNotFoundError,
} from '../src/index.js';
import { adapterFiles } from '../src/io/save-adapter.js';
import { cpu } from './helpers/backend.js';
import { Conv1DNet, ConvNet, EmbHead, MLP } from './helpers/models.js';
import { relativeError } from '@dorajs/backend-conformance';

class Block extends Module {
  attn: { q_proj: Linear; v_proj: Linear } & Module;
  constructor(backend: Backend) {
    super();
    const attn = new (class extends Module {
      q_proj = new Linear(4, 4, { backend });
      v_proj = new Linear(4, 4, { backend });
    })();
    this.attn = attn;
  }
}

/** A transformers-like tree: model.layers.N.attn.{q,v}_proj and an lm_head. */
class Tiny extends Layer {
  model: Module;
  lm_head: Linear;
  constructor(backend: Backend, n = 3) {
    super();
    const layers = new ModuleList([...Array(n)].map(() => new Block(backend)));
    this.model = new (class extends Module {
      layers = layers;
    })();
    this.lm_head = new Linear(4, 7, { backend });
  }
  forward(x: Tensor): Tensor {
    return this.lm_head.forward(x);
  }
}

const loraPaths = (peft: PeftModel) =>
  peft
    .getBaseModel()
    .namedModules()
    .filter(([, m]) => m instanceof LoraLinear || m instanceof LoraEmbedding || m instanceof LoraConv2d)
    .map(([p]) => p);

describe('targeting (PEFT rules)', () => {
  it('a list entry matches the exact path or a `.`-suffix, never a substring', async () => {
    const peft = await getPeftModel(new Tiny(cpu()), new LoraConfig({ targetModules: ['q_proj', 'lm_head'] }));
    expect(loraPaths(peft)).toEqual(['model.layers.0.attn.q_proj', 'model.layers.1.attn.q_proj', 'model.layers.2.attn.q_proj', 'lm_head']);
    await expect(getPeftModel(new Tiny(cpu()), new LoraConfig({ targetModules: ['proj'] }))).rejects.toThrow(TargetNotFoundError);
  });

  it('a string is a full-match regex', async () => {
    const peft = await getPeftModel(new Tiny(cpu()), new LoraConfig({ targetModules: '.*\\.1\\..*_proj' }));
    expect(loraPaths(peft)).toEqual(['model.layers.1.attn.q_proj', 'model.layers.1.attn.v_proj']);
  });

  it("'all-linear' is every Linear except the output layer, saved as the expanded list", async () => {
    const peft = await getPeftModel(new Tiny(cpu(), 2), new LoraConfig({ targetModules: 'all-linear' }));
    const expected = [
      'model.layers.0.attn.q_proj',
      'model.layers.0.attn.v_proj',
      'model.layers.1.attn.q_proj',
      'model.layers.1.attn.v_proj',
    ];
    expect(loraPaths(peft)).toEqual(expected);
    expect(peft.peftConfig.get('default')!.targetModules).toEqual(expected);
  });

  it('excludeModules wins over targets', async () => {
    const peft = await getPeftModel(
      new Tiny(cpu()),
      new LoraConfig({ targetModules: ['q_proj', 'v_proj'], excludeModules: ['layers.1.attn.v_proj', 'q_proj'] }),
    );
    expect(loraPaths(peft)).toEqual(['model.layers.0.attn.v_proj', 'model.layers.2.attn.v_proj']);
  });

  it('layersToTransform / layersPattern pick layer indices', async () => {
    let peft = await getPeftModel(
      new Tiny(cpu()),
      new LoraConfig({ targetModules: ['q_proj'], layersToTransform: [0, 2], layersPattern: 'layers' }),
    );
    expect(loraPaths(peft)).toEqual(['model.layers.0.attn.q_proj', 'model.layers.2.attn.q_proj']);
    peft = await getPeftModel(new Tiny(cpu()), new LoraConfig({ targetModules: ['q_proj'], layersToTransform: 1 }));
    expect(loraPaths(peft)).toEqual(['model.layers.1.attn.q_proj']);
  });

  it('rankPattern / alphaPattern set per-module rank and alpha (first match wins)', async () => {
    const peft = await getPeftModel(
      new Tiny(cpu()),
      new LoraConfig({
        r: 2,
        loraAlpha: 4,
        targetModules: ['q_proj', 'v_proj'],
        rankPattern: { 'layers\\.1\\.attn\\.q_proj': 3, v_proj: 1 },
        alphaPattern: { q_proj: 6 },
      }),
    );
    const layer = (p: string) => peft.getBaseModel().getSubmodule(p) as LoraLinear;
    expect(layer('model.layers.1.attn.q_proj').settings('default')).toMatchObject({ r: 3, alpha: 6, scaling: 2 });
    expect(layer('model.layers.0.attn.q_proj').settings('default')).toMatchObject({ r: 2, alpha: 6, scaling: 3 });
    expect(layer('model.layers.0.attn.v_proj').settings('default')).toMatchObject({ r: 1, alpha: 4, scaling: 4 });
    expect(layer('model.layers.1.attn.q_proj').lora_A.get('default')!.weight.shape).toEqual([3, 4]);
  });

  it('a target that matches nothing raises a typed error naming the targets, and leaves the model alone', async () => {
    const model = new Tiny(cpu());
    const before = [...model.stateDict().keys()];
    const err = await getPeftModel(model, new LoraConfig({ targetModules: ['k_proj', 'o_proj'] })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetNotFoundError);
    expect((err as Error).message).toContain("['k_proj', 'o_proj']");
    expect((err as Error).message).toContain('model.layers.0.attn.q_proj');
    expect([...model.stateDict().keys()]).toEqual(before);
  });

  it('wraps Linear, Conv1D, Embedding and Conv2d with PEFT in-memory keys', async () => {
    const b = cpu();
    const emb = await getPeftModel(new EmbHead(b), new LoraConfig({ targetModules: ['emb', 'head'], useDora: true }));
    expect([...emb.stateDict().keys()]).toEqual([
      'base_model.model.emb.base_layer.weight',
      'base_model.model.emb.lora_embedding_A.default',
      'base_model.model.emb.lora_embedding_B.default',
      'base_model.model.emb.lora_magnitude_vector.default.weight',
      'base_model.model.head.base_layer.weight',
      'base_model.model.head.base_layer.bias',
      'base_model.model.head.lora_A.default.weight',
      'base_model.model.head.lora_B.default.weight',
      'base_model.model.head.lora_magnitude_vector.default.weight',
    ]);
    const conv = await getPeftModel(new ConvNet(b), new LoraConfig({ targetModules: ['c1'], useDora: true }));
    expect(conv.stateDict().get('base_model.model.c1.lora_magnitude_vector.default.weight')!.shape).toEqual([1, 6, 1, 1]);
    expect(conv.stateDict().get('base_model.model.c1.lora_A.default.weight')!.shape).toEqual([8, 3, 3, 3]);
    expect(conv.stateDict().get('base_model.model.c1.lora_B.default.weight')!.shape).toEqual([6, 8, 1, 1]);
  });

  it('targeting a Conv1D sets fan_in_fan_out with a warning (and a Linear clears it)', async () => {
    const b = cpu();
    const { result: peft, warnings } = await collectWarningsAsync(() =>
      getPeftModel(new Conv1DNet(b), new LoraConfig({ targetModules: ['c_fc', 'c_proj'], useDora: true })),
    );
    expect(warnings.filter((w) => w.code === 'fan-in-fan-out-corrected')).toHaveLength(1);
    expect(peft.peftConfig.get('default')!.fanInFanOut).toBe(true);
    expect(JSON.parse((await adapterFiles(peft, 'default')).config).fan_in_fan_out).toBe(true);
    const { result: lin, warnings: w2 } = await collectWarningsAsync(() =>
      getPeftModel(new MLP(b), new LoraConfig({ targetModules: ['lin1'], fanInFanOut: true })),
    );
    expect(w2.map((w) => w.code)).toEqual(['fan-in-fan-out-corrected']);
    expect(lin.peftConfig.get('default')!.fanInFanOut).toBe(false);
  });
});

describe('initialisation and trainable parameters', () => {
  it('default init: B = 0 (Embedding: A = 0) and DoRA is an exact no-op; init false: DoRA == LoRA', async () => {
    const b = cpu();
    const x = tensor(new Random(3).fillNormal(5 * 16), [5, 16], { backend: b });
    const base = new MLP(b);
    const ref = await base.forward(x).float32();
    const dora = await getPeftModel(base, new LoraConfig({ targetModules: ['lin1', 'lin2'], useDora: true }));
    expect(relativeError(await dora.forward(x).float32(), ref)).toBeLessThan(1e-6);

    const m1 = new MLP(b);
    const m2 = new MLP(b);
    m2.loadStateDict(m1.stateDict());
    const lora = await getPeftModel(m1, new LoraConfig({ targetModules: ['lin1', 'lin2'], initLoraWeights: false }), 'default', {
      random: new Random(7),
    });
    const dora2 = await getPeftModel(
      m2,
      new LoraConfig({ targetModules: ['lin1', 'lin2'], initLoraWeights: false, useDora: true }),
      'default',
      { random: new Random(7) },
    );
    const yl = await lora.forward(x).float32();
    expect(relativeError(yl, ref)).toBeGreaterThan(1e-3);
    expect(relativeError(await dora2.forward(x).float32(), yl)).toBeLessThan(1e-5);
  });

  it('only adapter parameters train; printTrainableParameters prints PEFT’s line', async () => {
    const peft = await getPeftModel(new MLP(cpu()), new LoraConfig({ r: 4, targetModules: ['lin1', 'lin2'], useDora: true }));
    const trainable = peft
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([k]) => k);
    expect(trainable).toEqual([
      'base_model.model.lin1.lora_A.default.weight',
      'base_model.model.lin1.lora_B.default.weight',
      'base_model.model.lin1.lora_magnitude_vector.default.weight',
      'base_model.model.lin2.lora_A.default.weight',
      'base_model.model.lin2.lora_B.default.weight',
      'base_model.model.lin2.lora_magnitude_vector.default.weight',
    ]);
    // lin1 16→32 (bias), lin2 32→8: base 544 + 256 = 800; adapters 4·16+32·4+32 + 4·32+8·4+8 = 392
    const lines: string[] = [];
    expect(peft.printTrainableParameters((l) => lines.push(l))).toBe('trainable params: 392 || all params: 1,192 || trainable%: 32.8859');
    expect(lines).toHaveLength(1);
  });

  it("bias 'all' and 'lora_only' make biases trainable and save them", async () => {
    const b = cpu();
    const all = await getPeftModel(new EmbHead(b), new LoraConfig({ targetModules: ['emb'], bias: 'all' }));
    expect(
      all
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([k]) => k),
    ).toContain('base_model.model.head.bias');
    expect([...(await adapterFiles(all, 'default')).tensors.keys()]).toContain('base_model.model.head.bias');
    const only = await getPeftModel(new MLP(b), new LoraConfig({ targetModules: ['lin1'], bias: 'lora_only' }));
    const names = only
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([k]) => k);
    expect(names).toContain('base_model.model.lin1.base_layer.bias');
    expect([...(await adapterFiles(only, 'default')).tensors.keys()]).toContain('base_model.model.lin1.base_layer.bias');
  });

  it('modulesToSave: a trainable copy per adapter, saved under the plain path and loaded back', async () => {
    const b = cpu();
    const model = new MLP(b);
    const peft = await getPeftModel(model, new LoraConfig({ targetModules: ['lin1'], modulesToSave: ['lin2'], useDora: true }));
    const wrapper = peft.getBaseModel().getSubmodule('lin2');
    expect(wrapper).toBeInstanceOf(ModulesToSaveWrapper);
    const keys = peft
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([k]) => k);
    expect(keys).toContain('base_model.model.lin2.modules_to_save.default.weight');
    expect(keys).not.toContain('base_model.model.lin2.original_module.weight');
    // Change the copy; the saved file carries it under PEFT's key.
    const copy = (wrapper as ModulesToSaveWrapper).modules_to_save.get('default') as Linear;
    copy.weight.assign(tensor(new Float32Array(copy.weight.size).fill(0.5), [...copy.weight.shape], { backend: b }));
    const files = await adapterFiles(peft, 'default');
    expect([...files.tensors.keys()]).toContain('base_model.model.lin2.weight');
    const fresh = new MLP(b);
    fresh.loadStateDict(
      new Map(
        [...model.stateDict()]
          .filter(([k]) => !k.includes('lora_'))
          .map(([k, v]) => [k.replace('.base_layer', '').replace('.original_module', ''), v]),
      ),
      { strict: false },
    );
    const loaded = await PeftModel.fromPretrained(fresh, { config: files.config, weights: serialize(files.tensors) });
    const w = (loaded.getBaseModel().getSubmodule('lin2') as ModulesToSaveWrapper).modules_to_save.get('default') as Linear;
    expect(Array.from(await w.weight.float32()).every((v) => v === 0.5)).toBe(true);
    const x = tensor(new Random(1).fillNormal(3 * 16), [3, 16], { backend: b });
    peft.eval();
    expect(relativeError(await loaded.forward(x).float32(), await peft.forward(x).float32())).toBeLessThan(1e-6);
  });
});

function serialize(t: ReadonlyMap<string, HostTensor>): Uint8Array {
  return serializeSafetensors(t, { format: 'pt' });
}
