/**
 * Patterns from adapter configs run on RE2 (linear time): a pattern that makes a backtracking engine run
 * for minutes returns at once, with PEFT's matching (fullmatch for target/exclude strings, the
 * `(.*\.)?(key)$` match for rank/alpha keys, `.*\.{pattern}\.(\d+)\.` for layers_pattern); a pattern RE2
 * cannot express is a typed error before the model is touched.
 */
import { type Backend, Layer, Linear, Module, serializeSafetensors, type Tensor } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { AdapterFileError, getPeftModel, LoraConfig, LoraConfigError, LoraLinear, PeftModel } from '../src/index.js';
import { cpu } from './helpers/backend.js';

// A module whose name makes `(x+x+)+y` backtrack 2^40 times in a backtracking engine.
const LONG = 'x'.repeat(40);

class Net extends Layer {
  [LONG]: Linear;
  model: Module;
  constructor(backend: Backend) {
    super();
    this[LONG] = new Linear(4, 4, { backend });
    const layers = new (class extends Module {
      '0' = new (class extends Module {
        q_proj = new Linear(4, 4, { backend });
      })();
      '1' = new (class extends Module {
        q_proj = new Linear(4, 4, { backend });
      })();
    })();
    this.model = new (class extends Module {
      h = layers;
    })();
  }
  forward(x: Tensor): Tensor {
    return this[LONG].forward(x);
  }
}

const paths = (peft: PeftModel<Module>) =>
  peft
    .getBaseModel()
    .namedModules()
    .filter(([, m]) => m instanceof LoraLinear)
    .map(([p]) => p);

describe('adapter-config patterns on a linear-time engine', () => {
  it('catastrophic backtracking patterns finish at once (target_modules, exclude_modules, rank and alpha keys)', async () => {
    const evil = '(x+x+)+y';
    const peft = await getPeftModel(
      new Net(cpu()),
      new LoraConfig({
        targetModules: `${evil}|x+|.*q_proj`,
        excludeModules: `${evil}|model\\.h\\.1\\.q_proj`,
        rankPattern: { [evil]: 3, [`(x+)+${evil}`]: 5 },
        alphaPattern: { [evil]: 7 },
      }),
    );
    expect(paths(peft)).toEqual([LONG, 'model.h.0.q_proj']);
    expect((peft.getBaseModel().getSubmodule(LONG) as LoraLinear).settings('default')).toMatchObject({ r: 8, alpha: 8 });
  });

  it('layers_pattern from a config runs on RE2 too, capturing group 1 like re.match', async () => {
    const peft = await getPeftModel(
      new Net(cpu()),
      new LoraConfig({ targetModules: ['q_proj'], layersToTransform: [1], layersPattern: '(?:h+)+' }),
    );
    expect(paths(peft)).toEqual(['model.h.1.q_proj']);
    // A capturing group shifts PEFT's group(1) off the index (Python's int() raises): a typed error here.
    await expect(
      getPeftModel(new Net(cpu()), new LoraConfig({ targetModules: ['q_proj'], layersToTransform: [1], layersPattern: '(h)' })),
    ).rejects.toThrow("layers_pattern: '(h)' captures 'h' as the layer index");
  });

  it('PEFT semantics: a target string must match the whole path; a rank key matches a dotted suffix', async () => {
    await expect(getPeftModel(new Net(cpu()), new LoraConfig({ targetModules: 'q_proj' }))).rejects.toThrow(/matched no/);
    const peft = await getPeftModel(
      new Net(cpu()),
      new LoraConfig({ targetModules: '.*q_proj', rankPattern: { 'h\\.0\\.q_proj': 2, proj: 5 } }),
    );
    const r = (p: string) => (peft.getBaseModel().getSubmodule(p) as LoraLinear).settings('default')!.r;
    expect([r('model.h.0.q_proj'), r('model.h.1.q_proj')]).toEqual([2, 8]);
  });

  it.each([
    ['a backreference', '(q)\\1_proj'],
    ['a lookahead', '(?=q).*'],
    ['a syntax error', '('],
  ])('%s is a LoraConfigError naming the field, and the model is untouched', async (_, pattern) => {
    const model = new Net(cpu());
    const before = [...model.stateDict().keys()];
    const error = await getPeftModel(model, new LoraConfig({ targetModules: pattern })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LoraConfigError);
    expect((error as Error).message).toMatch(/^target_modules: .* is not a regular expression the linear-time engine \(RE2\) can run/);
    expect([...model.stateDict().keys()]).toEqual(before);
  });

  it('from adapter_config.json, an inexpressible rank_pattern key is an AdapterFileError naming the file', async () => {
    const config = { peft_type: 'LORA', r: 2, target_modules: ['q_proj'], rank_pattern: { '(?<=h)\\.0': 4 } };
    const error = await PeftModel.fromPretrained(new Net(cpu()), {
      config: JSON.stringify(config),
      weights: serializeSafetensors({}),
      name: 'stranger',
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AdapterFileError);
    expect((error as Error).message).toMatch(/^stranger\/adapter_config\.json: rank_pattern key: /);
  });

  it('an over-long pattern is refused by its length', async () => {
    await expect(getPeftModel(new Net(cpu()), new LoraConfig({ targetModules: 'a'.repeat(20_000) }))).rejects.toThrow(
      'over the 10000-character limit',
    );
  });
});
