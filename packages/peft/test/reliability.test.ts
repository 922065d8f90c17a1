/**
 * Adapter folders under hostile input and failing disks: adapter_config.json nested deep or as a named
 * pipe, adapter weights as a named pipe; savePretrained with every counted write/fsync/rename/mkdir
 * failing in turn (ENOSPC, EIO, EACCES, EROFS — injected, since tests run as root): the previous adapter
 * stays whole (never new weights beside an old config) and a typed OutputError names the path.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileError, OutputError, SafetensorsError } from '@dorajs/core';
import { faultPoints, faultyFileSystem } from '@dorajs/core/node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdapterFileError, configFromJsonText, configToJsonText, getPeftModel, LoraConfig, PeftModel } from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { perturb } from './helpers/behaviour.js';
import { MLP } from './helpers/models.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dorajs-peft-rel-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function trained(seed: number) {
  const peft = await getPeftModel(new MLP(cpu()), new LoraConfig({ targetModules: ['lin1', 'lin2'], useDora: true, r: 2 }));
  perturb(peft, seed);
  return peft;
}

async function files(folder: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(folder)).sort()) out[name] = (await readFile(join(folder, name))).toString('base64');
  return out;
}

describe('reading adapters from strangers', () => {
  it('found by the fuzzer: a kept key holding 1e400 is written so that dorajs (and Python) read it back', () => {
    const text = '{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"], "custom_limit": 1e400, "low": -1e400}';
    const written = configToJsonText(configFromJsonText(text));
    expect(written).toMatch(/"custom_limit": 1e999/);
    expect(written).toMatch(/"low": -1e999/);
    expect(configToJsonText(configFromJsonText(written))).toBe(written);
  });

  it('adapter_config.json nested 100 000 deep is an AdapterFileError naming it (no stack overflow)', async () => {
    const folder = join(dir, 'deep');
    await (await trained(1)).savePretrained(folder);
    await writeFile(join(folder, 'adapter_config.json'), `{"peft_type":"LORA","x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    const error = await PeftModel.fromPretrained(new MLP(cpu()), folder).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AdapterFileError);
    expect((error as Error).message).toMatch(/adapter_config\.json: JSON nested more than 64 levels deep/);
  });

  it('named pipes as adapter_config.json or adapter_model.safetensors are refused at once', async () => {
    const a = join(dir, 'a');
    await (await trained(1)).savePretrained(a);
    await rm(join(a, 'adapter_config.json'));
    execFileSync('mkfifo', [join(a, 'adapter_config.json')]);
    const e1 = await PeftModel.fromPretrained(new MLP(cpu()), a).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(AdapterFileError);
    expect((e1 as Error).message).toContain('not a regular file (a named pipe)');

    const b = join(dir, 'b');
    await (await trained(1)).savePretrained(b);
    await rm(join(b, 'adapter_model.safetensors'));
    execFileSync('mkfifo', [join(b, 'adapter_model.safetensors')]);
    const e2 = await PeftModel.fromPretrained(new MLP(cpu()), b).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(SafetensorsError);
    expect((e2 as Error).message).toBe(`${join(b, 'adapter_model.safetensors')}: not a regular file (a named pipe)`);
  });
});

describe('savePretrained writes the folder as a whole', () => {
  it('each counted call failing with ENOSPC, EIO, EACCES, EROFS leaves the previous adapter exactly, with an OutputError naming the path', async () => {
    const out = join(dir, 'adapter');
    const first = await trained(1);
    await first.savePretrained(out);
    await writeFile(join(out, 'README.md'), 'mine');
    const before = await files(out);
    const second = await trained(2);
    const counting = faultyFileSystem();
    await second.savePretrained(join(dir, 'count'), { fs: counting.fs });
    let failures = 0;
    // Each fault point once, the codes taking turns (core's atomic tests sweep every code at every call).
    const codes = ['ENOSPC', 'EIO', 'EACCES', 'EROFS'];
    for (const [turn, failAt] of faultPoints(counting.calls).entries()) {
      const code = codes[turn % codes.length]!;
      {
        const faulty = faultyFileSystem({ failAt, code });
        const error = await second.savePretrained(out, { fs: faulty.fs }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect((await readdir(dir)).sort()).toEqual(['adapter', 'count']);
        if (error === undefined) {
          expect(faulty.calls[failAt - 1]).toMatch(/^sync /); // a best-effort folder fsync
          await first.savePretrained(out);
          continue;
        }
        failures++;
        expect(error).toBeInstanceOf(OutputError);
        expect((error as OutputError).path.startsWith(out)).toBe(true);
        expect((error as Error).message).toContain(code);
        expect(await files(out)).toEqual(before);
      }
    }
    expect(failures).toBeGreaterThan(6);
    // Without faults the new adapter replaces both files together and keeps the README.
    await second.savePretrained(out);
    expect(await readFile(join(out, 'README.md'), 'utf8')).toBe('mine');
    expect((await files(out))['adapter_model.safetensors']).toBe((await files(join(dir, 'count')))['adapter_model.safetensors']);
  });

  it('an output that is a file, or under a file, is refused before any work with a FileError', async () => {
    const peft = await trained(1);
    await writeFile(join(dir, 'f'), 'x');
    await expect(peft.savePretrained(join(dir, 'f'))).rejects.toThrowError(FileError);
    await expect(peft.savePretrained(join(dir, 'f', 'sub'))).rejects.toThrowError(
      `${join(dir, 'f', 'sub')}: cannot be created: ${join(dir, 'f')} is not a folder`,
    );
    await mkdir(join(dir, 'ok'));
    await peft.savePretrained(join(dir, 'ok'));
    expect((await readdir(join(dir, 'ok'))).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });
});
