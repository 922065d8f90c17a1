/** Browsers' side of the `#wasm-dir` import: the page serves the `.wasm` files and names them (`wasmPaths`). */
export async function nodeWasmDir(): Promise<string | undefined> {
  return undefined;
}
