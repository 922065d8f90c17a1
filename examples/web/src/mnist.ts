/** The page's side of demo-assets.ts: `data/mnist-digits.bin` back into the digits `readMnistDigits` gives in Node. */
import { type DigitExample, DatasetError, MNIST_CLASSES, MNIST_PIXELS } from '@dorajs/train';

const MAGIC = 'DMNIST01';

export function decodeMnist(bytes: Uint8Array, file: string): DigitExample[][] {
  const fail = (why: string): never => {
    throw new DatasetError(why, file);
  };
  if (bytes.byteLength < 52 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) fail(`not a ${MAGIC} file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const counts = Array.from({ length: MNIST_CLASSES }, (_, d) => view.getUint32(8 + d * 4, true));
  const levelCount = view.getUint32(48, true);
  const head = 52 + levelCount * 2;
  const total = counts.reduce((a, b) => a + b, 0);
  if (levelCount > 256 || bytes.byteLength !== head + total * MNIST_PIXELS)
    fail(`${bytes.byteLength} bytes do not hold ${total} images with ${levelCount} grey levels`);
  // Thousandths divided in float64 then rounded to float32: the same value JSON.parse + Float32Array.from give.
  const levels = Float32Array.from({ length: levelCount }, (_, i) => view.getUint16(52 + i * 2, true) / 1000);
  let at = head;
  return counts.map((count, label) => {
    const pixels = new Float32Array(count * MNIST_PIXELS);
    for (let i = 0; i < pixels.length; i++) {
      const level = levels[bytes[at++]!];
      if (level === undefined) fail(`grey level index ${bytes[at - 1]} is out of range`);
      pixels[i] = level!;
    }
    return Array.from({ length: count }, (_, i) => ({ pixels: pixels.subarray(i * MNIST_PIXELS, (i + 1) * MNIST_PIXELS), label }));
  });
}

export async function fetchBytes(url: string, onProgress?: (loaded: number, total: number) => void): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new DatasetError(`HTTP ${res.status} ${res.statusText}`, url);
  const total = Number(res.headers.get('content-length') ?? 0);
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress?.(loaded, total);
  }
  if (total && loaded !== total) throw new DatasetError(`truncated: ${loaded} of ${total} bytes`, url);
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
