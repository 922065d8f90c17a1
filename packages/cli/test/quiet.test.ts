/**
 * Quiet by default: every command, run by the built binary with the default backend ('auto') on this machine
 * (no GPU: Dawn finds no adapter and says so natively), writes only dorajs's own lines to stderr — the backend
 * line and progress bars. With --verbose the native diagnostics are shown. The filter itself is checked on
 * Dawn's and tfjs's real texts.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NativeNoiseFilter } from '../src/quiet.js';
import { FIXTURES, idsJson, tempDir } from './helpers.js';

const BIN = new URL('../dist/bin.js', import.meta.url).pathname;
const OWN_LINE = /^(dora: |train \[|eval \[)/;

function dora(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, DORA_DEBUG: '', ...env },
    timeout: 300_000,
  });
  return { status: r.status, stderr: r.stderr, lines: r.stderr.split(/[\r\n]+/).filter((l) => l.length > 0) };
}

describe('stderr holds only dorajs lines with the default backend', () => {
  const dir = tempDir();
  const base = join(FIXTURES, 'llama', 'base');
  const adapter = join(FIXTURES, 'llama', 'adapter');
  const commands: [string, string[]][] = [
    ['run', ['run', '--model', base, '--adapter', adapter, '--ids', idsJson('llama', dir), '--out', join(dir, 'logits.safetensors')]],
    ['merge', ['merge', '--model', base, '--adapter', adapter, '--out', join(dir, 'merged')]],
    ['finetune', ['finetune', '--max-steps', '2', '--eval-step', '2', '--output', join(dir, 'adapter')]],
  ];
  it.each(commands)('dora %s', (_name, args) => {
    const r = dora(args);
    expect(r.status, r.stderr).toBe(0);
    expect(r.lines.filter((l) => !OWN_LINE.test(l))).toEqual([]);
    expect(r.lines.filter((l) => l.startsWith('dora: backend '))).toHaveLength(1);
  });

  it('--verbose shows what the filter hides', () => {
    const quiet = dora(commands[0]![1]);
    const verbose = dora([...commands[0]![1], '--verbose']);
    expect(verbose.status, verbose.stderr).toBe(0);
    // This machine has no GPU, so Dawn's adapter discovery complains natively: shown only with --verbose.
    expect(quiet.lines.filter((l) => !OWN_LINE.test(l))).toEqual([]);
    expect(verbose.lines.some((l) => !OWN_LINE.test(l))).toBe(true);
  });
});

describe('NativeNoiseFilter', () => {
  const filtered = (chunks: string[]) => {
    let out = '';
    const f = new NativeNoiseFilter((t) => {
      out += t;
    });
    for (const c of chunks) f.push(c);
    f.end();
    return out;
  };

  it("drops Dawn's adapter-discovery warnings and tfjs's banner, keeps everything else", () => {
    const dawn = [
      "Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file: No such file or directory\n",
      '    at operator() (/home/runner/work/node-webgpu/node-webgpu/third_party/dawn/src/dawn/native/vulkan/BackendVk.cpp:368)\n',
      '\n',
      'Warning: eglInitialize failed with EGL_NOT_INITIALIZED\n',
      ' - While trying to discover a BackendType::OpenGLES adapter.\n',
      '    at CheckEGL (/home/runner/work/node-webgpu/node-webgpu/third_party/dawn/src/dawn/native/opengl/UtilsEGL.cpp:89)\n',
      '\n',
    ].join('');
    const tfjs =
      '\n============================\nHi, looks like you are running TensorFlow.js in Node.js. To speed things up dramatically, install our node backend, visit https://github.com/tensorflow/tfjs-node for more details. \n============================\n';
    const own = 'dora: backend cpu (auto: cpu)\n';
    const bar = '\rtrain [####....] 1/2  loss 1.0000';
    // Split mid-line, as pipes do.
    const text = dawn + own + tfjs + bar;
    expect(filtered([text.slice(0, 50), text.slice(50, 333), text.slice(333)])).toBe(`${own}\n${bar}`);
  });

  it('passes a line that only resembles noise', () => {
    expect(filtered(['dora: Warning: not native\n', '   at the end\n'])).toBe('dora: Warning: not native\n   at the end\n');
  });
});
