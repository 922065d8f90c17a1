import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dora, FIXTURES, floats, idsJson, readTensors, tempDir } from './helpers.js';
import { relativeError } from '@dorajs/backend-conformance';

// CPU matches PEFT to float32 rounding; GPU and tfjs kernels sum in other orders.
const BACKENDS = [
  { backend: 'cpu', tol: 1e-5 },
  { backend: 'webgpu', tol: 1e-4 },
  { backend: 'tfjs', tol: 1e-4 },
] as const;
const CASES = BACKENDS.flatMap((b) => ['llama', 'gpt2', 'llama_embed'].map((name) => ({ name, ...b })));

describe.each(CASES)('dora run / merge on the $name fixture ($backend)', ({ name, backend, tol: TOL }) => {
  const base = join(FIXTURES, name, 'base');
  const adapter = join(FIXTURES, name, 'adapter');
  const expected = readTensors(join(FIXTURES, name, 'tensors.safetensors'));

  it('run: base logits, adapter logits and merged logits equal PEFT', async () => {
    const dir = tempDir();
    const ids = idsJson(name, dir);
    for (const [extra, key] of [
      [[], 'out.base'],
      [['--adapter', adapter], 'out.dora'],
      [['--adapter', adapter, '--merge'], 'out.merged'],
    ] as const) {
      const out = join(dir, `${key}.safetensors`);
      const r = await dora('run', '--model', base, ...extra, '--ids', ids, '--out', out, '--backend', backend);
      expect(r.stderr).toContain(`backend ${backend}`);
      expect(r.code, r.stderr).toBe(0);
      const logits = readTensors(out).get('logits')!;
      expect(logits.dtype).toBe('F32');
      expect(logits.shape).toEqual(expected.get(key)!.shape);
      expect(relativeError(floats(readTensors(out), 'logits'), floats(expected, key))).toBeLessThanOrEqual(TOL);
    }
  });

  it('merge: writes the base checkpoint names, layout and dtypes with PEFT-equal merged weights', async () => {
    const out = join(tempDir(), 'merged');
    const r = await dora('merge', '--model', base, '--adapter', adapter, '--out', out, '--backend', backend, '--safe-merge');
    expect(r.code, r.stderr).toBe(0);
    const written = readTensors(join(out, 'model.safetensors'));
    const original = readTensors(join(base, 'model.safetensors'));
    const golden = readTensors(join(FIXTURES, name, 'merged.safetensors'));
    expect([...written.keys()].sort()).toEqual([...original.keys()].sort());
    for (const [key, t] of written) {
      expect(t.shape, key).toEqual(original.get(key)!.shape);
      expect(t.dtype, key).toBe(original.get(key)!.dtype);
      if (golden.has(key)) expect(relativeError(floats(written, key), floats(golden, key)), key).toBeLessThanOrEqual(TOL);
    }
    expect(existsSync(join(out, 'config.json'))).toBe(true);
  });
});

describe('--backend auto', () => {
  it('picks a backend, says which on stderr, and never prefers an emulated GPU over the CPU backend', async () => {
    const dir = tempDir();
    const out = join(dir, 'logits.safetensors');
    const r = await dora(
      'run',
      '--model',
      join(FIXTURES, 'llama', 'base'),
      '--adapter',
      join(FIXTURES, 'llama', 'adapter'),
      '--ids',
      idsJson('llama', dir),
      '--out',
      out,
    );
    expect(r.code, r.stderr).toBe(0);
    const line = r.stderr.split('\n').find((l) => l.startsWith('dora: backend '))!;
    expect(line).toMatch(/^dora: backend (cpu|webgpu|tfjs) \(auto: /);
    if (line.includes('software device')) expect(line).toMatch(/^dora: backend cpu /);
    const expected = readTensors(join(FIXTURES, 'llama', 'tensors.safetensors'));
    expect(relativeError(floats(readTensors(out), 'logits'), floats(expected, 'out.dora'))).toBeLessThanOrEqual(1e-4);
  });
});

describe('help', () => {
  it.each(['run', 'merge', 'finetune'])('dora %s --help lists its flags and --backend', async (cmd) => {
    const r = await dora(cmd, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: dora ${cmd}`);
    expect(r.stdout).toContain('--backend');
  });

  it('dora --help lists the commands', async () => {
    const r = await dora('--help');
    expect(r.code).toBe(0);
    for (const cmd of ['run', 'merge', 'finetune']) expect(r.stdout).toContain(cmd);
  });
});

describe('bad input: exit 1, one line `dora: <ErrorName>: …`, nothing half-written', () => {
  const llama = join(FIXTURES, 'llama', 'base');
  const expectOneLine = (r: { code: number; stderr: string }, name: RegExp, text: RegExp) => {
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('dora: ') && !l.startsWith('dora: backend'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^dora: ${name.source}: `));
    expect(lines[0]).toMatch(text);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack without --debug
  };

  it('unknown flag and missing required flag', async () => {
    expectOneLine(await dora('run', '--model', llama, '--bogus'), /UsageError/, /bogus/);
    expectOneLine(await dora('run', '--model', llama), /UsageError/, /--ids/);
    expectOneLine(await dora('frobnicate'), /UsageError/, /frobnicate/);
  });

  it('ids not rectangular, out of vocabulary, not JSON', async () => {
    const dir = tempDir();
    const { writeFileSync } = await import('node:fs');
    const cases: [string, RegExp][] = [
      ['[[1,2,3],[4,5]]', /rectangular|row 1/],
      ['[[1,2,96000]]', /96000/],
      ['{not json', /JSON/],
    ];
    for (const [text, re] of cases) {
      const ids = join(dir, 'ids.json');
      writeFileSync(ids, text);
      const out = join(dir, 'logits.safetensors');
      const r = await dora('run', '--model', llama, '--ids', ids, '--out', out, '--backend', 'cpu');
      expectOneLine(r, /\w+Error/, re);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('a folder without weights, an unsupported model_type', async () => {
    const { mkdirSync, writeFileSync, copyFileSync } = await import('node:fs');
    const dir = tempDir();
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    copyFileSync(join(llama, 'config.json'), join(empty, 'config.json'));
    const ids = idsJson('llama', dir);
    expectOneLine(
      await dora('run', '--model', empty, '--ids', ids, '--out', join(dir, 'o.safetensors'), '--backend', 'cpu'),
      /\w+Error/,
      /weights|safetensors/,
    );
    const odd = join(dir, 'odd');
    mkdirSync(odd);
    writeFileSync(join(odd, 'config.json'), JSON.stringify({ model_type: 'mamba' }));
    expectOneLine(
      await dora('run', '--model', odd, '--ids', ids, '--out', join(dir, 'o.safetensors'), '--backend', 'cpu'),
      /\w+Error/,
      /mamba/,
    );
  });

  it('an adapter for another architecture and a truncated adapter file leave no output folder', async () => {
    const { cpSync, truncateSync, statSync } = await import('node:fs');
    const dir = tempDir();
    const out = join(dir, 'merged');
    const wrong = await dora(
      'merge',
      '--model',
      join(FIXTURES, 'gpt2', 'base'),
      '--adapter',
      join(FIXTURES, 'llama', 'adapter'),
      '--out',
      out,
      '--backend',
      'cpu',
    );
    expectOneLine(wrong, /\w+Error/, /\w/);
    expect(existsSync(out)).toBe(false);
    const shapeMismatch = await dora(
      'merge',
      '--model',
      join(FIXTURES, 'llama', 'base'),
      '--adapter',
      join(FIXTURES, 'llama_embed', 'adapter'),
      '--out',
      out,
      '--backend',
      'cpu',
    );
    expectOneLine(shapeMismatch, /\w+Error/, /\[\d+(, \d+)*\]/);
    expect(existsSync(out)).toBe(false);
    const truncated = join(dir, 'adapter');
    cpSync(join(FIXTURES, 'llama', 'adapter'), truncated, { recursive: true });
    const file = join(truncated, 'adapter_model.safetensors');
    truncateSync(file, statSync(file).size - 100);
    expectOneLine(
      await dora('merge', '--model', llama, '--adapter', truncated, '--out', out, '--backend', 'cpu'),
      /SafetensorsError/,
      /adapter_model\.safetensors/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('tmp'))).toEqual([]);
  });
});
