/**
 * The slice of the WebAssembly JS API the backend uses, typed locally: the repository compiles with
 * `lib: ES2023` (no DOM, where TypeScript declares WebAssembly), and a global declaration of ours would
 * clash with a consumer's lib.dom.
 */

export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
  /**
   * Turns `buffer` into a resizable ArrayBuffer that `grow` resizes in place instead of detaching (the
   * WebAssembly JS API's resizable-buffer integration: current Chromium; not Node 20).
   */
  toResizableBuffer?(): ArrayBuffer;
}

export type WasmModule = object;

export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WasmNamespace {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  validate(bytes: Uint8Array): boolean;
}

/** The engine's WebAssembly namespace, or undefined where there is none. */
export const wasmApi: WasmNamespace | undefined = (globalThis as { WebAssembly?: WasmNamespace }).WebAssembly;
