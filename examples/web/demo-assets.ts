/**
 * The demo's data, made at build time from local packages (nothing is fetched from the internet):
 * - `data/mnist-digits.bin`: the `mnist` package's 10 000 digits (the CLI's job data) in 8 MB instead of
 *   21 MB of JSON. The package stores grey levels rounded to thousandths and uses at most 256 of them, so a
 *   byte per pixel indexes a table of levels and the page gets exactly the values `readMnistDigits` parses.
 *   Layout (little-endian): "DMNIST01", 10 × u32 images per digit, u32 level count L, L × u16 levels in
 *   thousandths, then every image's 784 level indices, digit 0 first.
 * The pretrained CNN comes with @dorajs/train (its MNIST_BASE_FILE is an asset URL the bundler copies).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
export const MNIST_MAGIC = 'DMNIST01';
const PIXELS = 784;

export function mnistDigitsDir(): string {
  return join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
}

export function encodeMnist(dir = mnistDigitsDir()): Uint8Array {
  const perDigit: number[][] = [];
  for (let d = 0; d < 10; d++) {
    const file = join(dir, `${d}.json`);
    const data = (JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown }).data;
    if (!Array.isArray(data) || data.length % PIXELS !== 0) throw new Error(`${file}: expected { data: number[] } of 784-pixel images`);
    perDigit.push(data as number[]);
  }
  const levels = new Map<number, number>();
  for (const data of perDigit) {
    for (const v of data) {
      const q = Math.round(v * 1000);
      if (q / 1000 !== v || q < 0 || q > 1000) throw new Error(`mnist: grey level ${v} is not a thousandth in [0, 1]`);
      if (!levels.has(q)) levels.set(q, levels.size);
    }
  }
  if (levels.size > 256) throw new Error(`mnist: ${levels.size} grey levels do not fit a byte`);
  const total = perDigit.reduce((n, d) => n + d.length, 0);
  const head = 8 + 10 * 4 + 4 + levels.size * 2;
  const out = new Uint8Array(head + total);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(MNIST_MAGIC), 0);
  perDigit.forEach((d, i) => view.setUint32(8 + i * 4, d.length / PIXELS, true));
  view.setUint32(48, levels.size, true);
  for (const [q, i] of levels) view.setUint16(52 + i * 2, q, true);
  let at = head;
  for (const data of perDigit) for (const v of data) out[at++] = levels.get(Math.round(v * 1000))!;
  return out;
}
