/**
 * PEFT's ModulesToSaveWrapper: the original module plus one trainable copy per adapter
 * (`modules_to_save.<adapter>`), the active adapter's copy running in its place.
 */
import { Layer, ModuleDict, type Tensor } from '@dorajs/core';
import { AdapterNameError } from '../errors.js';
import { batchAdapterNamesFor } from './batch-scope.js';
import { cloneModule } from './clone-module.js';
import { perRowGroups } from './rows.js';

export class ModulesToSaveWrapper extends Layer {
  static override readonly typeName: string = 'ModulesToSaveWrapper';
  original_module: Layer;
  modules_to_save = new ModuleDict<Layer>();
  readonly _path: string;
  private _active: string | null = null;
  private _disabled = false;

  constructor(original: Layer, path: string) {
    super();
    this.original_module = original;
    this._path = path;
  }

  addAdapter(name: string): void {
    if (this.modules_to_save.has(name)) return;
    const copy = cloneModule(this.original_module);
    this.modules_to_save.set(name, copy);
    copy.train(this.training);
  }

  deleteAdapter(name: string): void {
    const m = this.modules_to_save.get(name);
    if (!m) return;
    m.dispose();
    this.modules_to_save.delete(name);
    if (this._active === name) this._active = null;
  }

  /** The first of `names` that has a copy here becomes active (PEFT allows one active copy). */
  setActive(names: readonly string[]): void {
    this._active = names.find((n) => this.modules_to_save.has(n)) ?? null;
  }

  setDisabled(flag: boolean): void {
    this._disabled = flag;
  }

  get activeAdapter(): string | null {
    return this._active;
  }

  get adapterNames(): string[] {
    return this.modules_to_save.keys();
  }

  forward(x: Tensor, options: { readonly adapterNames?: readonly string[] } = {}): Tensor {
    if (this._disabled) return this.original_module.forward(x);
    const names = options.adapterNames ?? batchAdapterNamesFor(this);
    if (names) {
      if (names.length !== x.shape[0]) {
        throw new AdapterNameError(`module '${this._path}': ${names.length} adapter names for a batch of ${x.shape[0]}`);
      }
      return perRowGroups(x, names, (name, rows) => (this.modules_to_save.get(name) ?? this.original_module).forward(rows));
    }
    const copy = this._active ? this.modules_to_save.get(this._active) : undefined;
    return (copy ?? this.original_module).forward(x);
  }
}
