/**
 * A minifying bundler renames classes, so a name taken from `constructor.name` reaches users as `Fg`: error
 * names printed by apps, `typeName` in messages and in saved adapter configs (`base_model_class`), and the
 * Trainer's no-weight-decay rule for `*Norm` layers. Every dorajs error and module class spells its name out
 * (`static typeName`). This bundles the library packages minified — as Vite and esbuild do for an app, no
 * `keepNames` — runs the bundle, and checks every exported error and module class against its export name.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { esbuildSource, RESOLVE_DIR } from '../src/bundle.js';

const ENTRY = `
import * as core from '@dorajs/core';
import * as peft from '@dorajs/peft';
import * as models from '@dorajs/models';
import * as train from '@dorajs/train';
const derives = (value, base) => typeof value === 'function' && value.prototype instanceof base;
export const checked = [];
for (const [pkg, ns] of Object.entries({ core, peft, models, train })) {
  for (const [key, value] of Object.entries(ns)) {
    if (derives(value, core.DoraError) || derives(value, core.Module) || value === core.DoraError) {
      checked.push({ pkg, key, typeName: core.ownTypeName(value), className: value.name });
    }
  }
}
export const samples = {
  error: new core.ShapeError('x').name,
  subclassError: new peft.LoraConfigError('x').name,
  // A module's typeName getter, without building one (that needs a backend).
  layerNorm: Object.create(core.LayerNorm.prototype).typeName,
  linear: Object.create(core.Linear.prototype).typeName,
};
`;

it('error and module names survive minification', async () => {
  const dir = await mkdtemp(join(RESOLVE_DIR, 'node_modules', '.minified-names-'));
  try {
    const file = join(dir, 'bundle.mjs');
    await writeFile(file, (await esbuildSource(ENTRY)).code);
    const { checked, samples } = (await import(pathToFileURL(file).href)) as {
      checked: { pkg: string; key: string; typeName: string; className: string }[];
      samples: Record<string, string>;
    };
    expect(checked.length).toBeGreaterThan(50);
    // The check can fail: the minifier did rename the classes themselves.
    expect(checked.filter((c) => c.className !== c.key).length).toBeGreaterThan(checked.length / 2);
    expect(checked.filter((c) => c.typeName !== c.key).map((c) => `${c.pkg}.${c.key} is named '${c.typeName}'`)).toEqual([]);
    expect(samples).toEqual({ error: 'ShapeError', subclassError: 'LoraConfigError', layerNorm: 'LayerNorm', linear: 'Linear' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
