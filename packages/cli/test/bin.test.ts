import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, floats, idsJson, readTensors, tempDir } from './helpers.js';
import { relativeError } from '@dorajs/backend-conformance';

// The package's test script builds first, so this is the JavaScript that `node_modules/.bin/dora` runs.
const BIN = new URL('../dist/bin.js', import.meta.url).pathname;

describe('the built dora binary under plain Node', () => {
  it('exists and prints help', () => {
    expect(existsSync(BIN)).toBe(true);
    expect(execFileSync(process.execPath, [BIN, 'run', '--help'], { encoding: 'utf8' })).toContain('Usage: dora run');
  });

  it('runs the llama fixture with its adapter and exits 0; errors exit 1 with one line', () => {
    const dir = tempDir();
    const out = join(dir, 'logits.safetensors');
    const base = join(FIXTURES, 'llama', 'base');
    const r = spawnSync(
      process.execPath,
      [
        BIN,
        'run',
        '--model',
        base,
        '--adapter',
        join(FIXTURES, 'llama', 'adapter'),
        '--ids',
        idsJson('llama', dir),
        '--out',
        out,
        '--backend',
        'cpu',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const expected = readTensors(join(FIXTURES, 'llama', 'tensors.safetensors'));
    expect(relativeError(floats(readTensors(out), 'logits'), floats(expected, 'out.dora'))).toBeLessThanOrEqual(1e-5);
    const bad = spawnSync(process.execPath, [BIN, 'run', '--model', base, '--ids', join(dir, 'missing.json'), '--out', out], {
      encoding: 'utf8',
    });
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n').at(-1)).toMatch(/^dora: InputFileError: cannot read ids file .*missing\.json/);
  });
});
