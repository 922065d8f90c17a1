/**
 * Module trees named by property, as in PyTorch: a child module or parameter stored in property `lin1`
 * has state-dict keys `lin1.…`. Properties whose names start with `_` are private bookkeeping and never
 * part of the tree. Replacing a property (e.g. PEFT wrapping a layer) replaces it in the tree.
 */
import type { Backend } from '../backend/backend.js';
import { ownTypeName, StateDictError } from '../errors.js';
import { shapeStr } from '../tensor/shape.js';
import { Parameter, type Tensor } from '../tensor/tensor.js';

export abstract class Module {
  /** The class's name as messages, summaries and saved configs spell it (see `ownTypeName`: minifiers rename classes). */
  static readonly typeName: string = 'Module';
  /** Train mode (dropout active, DoRA caches off). Toggle with train()/eval(). */
  training = true;

  /** Direct children in property order. */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [k, v] of Object.entries(this)) if (!k.startsWith('_') && v instanceof Module) out.push([k, v]);
    return out;
  }

  /** Own parameters (not children's) in property order. */
  ownParameters(): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    for (const [k, v] of Object.entries(this)) if (!k.startsWith('_') && v instanceof Parameter) out.push([k, v]);
    return out;
  }

  /** Every module in the tree with its dotted path ('' for this one), depth first in property order. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [k, child] of this.namedChildren()) out.push(...child.namedModules(prefix ? `${prefix}.${k}` : k));
    return out;
  }

  namedParameters(prefix = ''): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    const seen = new Set<Parameter>();
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [k, p] of m.ownParameters()) {
        if (seen.has(p)) continue; // tied weights appear once, under their first name
        seen.add(p);
        out.push([path ? `${path}.${k}` : k, p]);
      }
    }
    return out;
  }

  parameters(): Parameter[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Parameters by dotted name; tied parameters appear under every name (as PyTorch's state_dict). */
  stateDict(): Map<string, Parameter> {
    const out = new Map<string, Parameter>();
    for (const [path, m] of this.namedModules()) {
      for (const [k, p] of m.ownParameters()) out.set(path ? `${path}.${k}` : k, p);
    }
    return out;
  }

  /**
   * Copies values into parameters by name. Shapes must match exactly (the error names the key and both
   * shapes). With `strict`, missing and unexpected keys are errors too. Nothing is assigned unless every
   * check passes.
   */
  loadStateDict(values: ReadonlyMap<string, Tensor>, options: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !values.has(k));
    const unexpected = [...values.keys()].filter((k) => !own.has(k));
    if (options.strict !== false && (missing.length || unexpected.length)) {
      throw new StateDictError(
        `state dict does not match the module: missing ${JSON.stringify(missing)}, unexpected ${JSON.stringify(unexpected)}`,
      );
    }
    for (const [k, v] of values) {
      const p = own.get(k);
      if (!p) continue;
      if (p.shape.length !== v.shape.length || p.shape.some((d, i) => d !== v.shape[i])) {
        throw new StateDictError(`state dict key '${k}': expected shape ${shapeStr(p.shape)}, got ${shapeStr(v.shape)}`);
      }
      if (p.dtype !== v.dtype) throw new StateDictError(`state dict key '${k}': expected ${p.dtype}, got ${v.dtype}`);
      if (p.backend !== v.backend)
        throw new StateDictError(`state dict key '${k}': value lives on '${v.backend.name}', parameter on '${p.backend.name}'`);
    }
    for (const [k, v] of values) own.get(k)?.assign(v);
    return { missing, unexpected };
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) {
      m.training = mode;
      m.onTrainModeChange(mode);
    }
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Hook for modules that keep mode-dependent caches. */
  protected onTrainModeChange(_mode: boolean): void {}

  /** Sets requiresGrad on every parameter. */
  requiresGrad(flag: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = flag;
    return this;
  }

  getSubmodule(path: string): Module {
    if (path === '') return this;
    let m: Module = this;
    for (const part of path.split('.')) {
      const next = (m as unknown as Record<string, unknown>)[part];
      if (!(next instanceof Module)) throw new StateDictError(`no submodule '${path}' (stopped at '${part}')`);
      m = next;
    }
    return m;
  }

  /** Replaces the submodule at `path` (used by PEFT to wrap layers). */
  setSubmodule(path: string, module: Module): void {
    const i = path.lastIndexOf('.');
    const parent = i < 0 ? this : this.getSubmodule(path.slice(0, i));
    const name = i < 0 ? path : path.slice(i + 1);
    if (!(parent as unknown as Record<string, unknown>)[name]) throw new StateDictError(`no submodule '${path}'`);
    (parent as unknown as Record<string, unknown>)[name] = module;
  }

  /**
   * Moves every parameter to `backend`, and what modules hold besides parameters (a QuantizedLinear's packed
   * weight): each module's `moveState`. Weights shared by several modules move once.
   */
  async to(backend: Backend): Promise<this> {
    for (const p of this.parameters()) await p.moveTo(backend);
    const moved = new Map<object, object>();
    const seen = new Set<Module>();
    for (const [, m] of this.namedModules()) {
      if (seen.has(m)) continue;
      seen.add(m);
      await m.moveState(backend, moved);
    }
    return this;
  }

  /**
   * Hook for modules holding backend state that is not a Parameter (packed quantized weights): move it to
   * `backend`. `moved` maps each object already moved during this `to` call to its replacement, so state
   * shared between modules moves once.
   */
  protected async moveState(_backend: Backend, _moved: Map<object, object>): Promise<void> {}

  /** Disposes every parameter's storage, and what each module keeps beside them (`releaseState`). */
  dispose(): void {
    for (const [, m] of this.namedModules()) m.releaseState();
    for (const p of this.parameters()) p.dispose();
  }

  /** Hook for modules keeping tensors that are not Parameters (caches): release them. Called by dispose(). */
  protected releaseState(): void {}

  /** Class name used in error messages, summaries and saved configs: the class's own `static typeName`. */
  get typeName(): string {
    return ownTypeName(this.constructor);
  }
}

/** Children named '0', '1', … (PyTorch's ModuleList / Sequential keys). */
export class ModuleList<M extends Module = Module> extends Module {
  static override readonly typeName: string = 'ModuleList';
  [index: number]: M;
  private _length = 0;

  constructor(modules: readonly M[] = []) {
    super();
    for (const m of modules) this.push(m);
  }

  push(m: M): void {
    (this as unknown as Record<string, M>)[String(this._length++)] = m;
  }

  get length(): number {
    return this._length;
  }

  at(i: number): M {
    return (this as unknown as Record<string, M>)[String(i)]!;
  }

  *[Symbol.iterator](): Iterator<M> {
    for (let i = 0; i < this._length; i++) yield this.at(i);
  }
}

/** Children keyed by name (PEFT keeps one sub-module per adapter in these). */
export class ModuleDict<M extends Module = Module> extends Module {
  static override readonly typeName: string = 'ModuleDict';
  get(name: string): M | undefined {
    const v = (this as unknown as Record<string, unknown>)[name];
    return v instanceof Module ? (v as M) : undefined;
  }

  set(name: string, m: M): void {
    (this as unknown as Record<string, unknown>)[name] = m;
  }

  delete(name: string): void {
    delete (this as unknown as Record<string, unknown>)[name];
  }

  keys(): string[] {
    return this.namedChildren().map(([k]) => k);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }
}

/** Parameters keyed by name (PEFT's lora_embedding_A / _B). */
export class ParameterDict extends Module {
  static override readonly typeName: string = 'ParameterDict';
  get(name: string): Parameter | undefined {
    const v = (this as unknown as Record<string, unknown>)[name];
    return v instanceof Parameter ? v : undefined;
  }

  set(name: string, p: Parameter): void {
    (this as unknown as Record<string, unknown>)[name] = p;
  }

  delete(name: string): void {
    delete (this as unknown as Record<string, unknown>)[name];
  }

  keys(): string[] {
    return this.ownParameters().map(([k]) => k);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }
}
