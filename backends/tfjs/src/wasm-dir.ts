/** The `node` side of the `#wasm-dir` import: in Node, tfjs-backend-wasm's `.wasm` files ship in its dist/ folder. */
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';

export async function nodeWasmDir(): Promise<string | undefined> {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + sep;
}
