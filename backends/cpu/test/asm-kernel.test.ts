/**
 * The micro-kernel is only fast if the engine validates it as asm.js, and a change that breaks
 * validation would silently cost ~1.5× (results stay identical). Compile it the way the build does
 * (tsc, ES2022) and ask V8 directly.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

describe('asm.js micro-kernel', () => {
  it('still validates as asm.js after tsc', () => {
    const source = readFileSync(new URL('../src/kernels/asm-kernel.ts', import.meta.url), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    });
    const dir = mkdtempSync(join(tmpdir(), 'dorajs-asm-'));
    try {
      writeFileSync(join(dir, 'asm-kernel.mjs'), outputText);
      const probe = `import { MicroKernelModule as M } from './asm-kernel.mjs';
        const heap = new ArrayBuffer(1 << 22);
        const k = M(globalThis, null, heap);
        const h = new Float64Array(heap);
        for (let i = 0; i < 8; i++) h[i] = i + 1;
        for (let i = 0; i < 4; i++) h[8 + i] = 1;
        k.kernel(2, 0, 64, 256, 16);
        console.log(JSON.stringify({ asm: %IsAsmWasmCode(M), tile: Array.from(h.subarray(32, 40)) }));`;
      writeFileSync(join(dir, 'probe.mjs'), probe);
      const out = JSON.parse(execFileSync(process.execPath, ['--allow-natives-syntax', join(dir, 'probe.mjs')], { encoding: 'utf8' }));
      expect(out.asm).toBe(true);
      // A = [[1,5],[2,6],[3,7],[4,8]] (k-major panel), B [2,2] of ones: row i sums to a_i0 + a_i1.
      expect(out.tile).toEqual([6, 6, 8, 8, 10, 10, 12, 12]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
