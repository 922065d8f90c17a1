import { readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const PEFT_FIXTURES = join(REPO_ROOT, 'fixtures/peft');

/** Every .safetensors file under fixtures/peft, relative to it. */
export function allFixtureFiles(): string[] {
  const found: string[] = [];
  const walk = (folder: string): void => {
    for (const item of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, item.name);
      if (item.isDirectory()) walk(path);
      else if (item.name.endsWith('.safetensors')) found.push(relative(PEFT_FIXTURES, path));
    }
  };
  walk(PEFT_FIXTURES);
  return found.sort();
}
