/**
 * The fuzz targets: each turns seed files into inputs (mutants, or structured inputs from fast-check
 * arbitraries) and checks one input against the invariants:
 *
 * - the only errors are dorajs's typed errors (`DoraError` subclasses), on one line, naming the file;
 * - an accepted input round-trips: parse → serialize → parse gives the same value, and serializing that
 *   again gives the same bytes (compared with `Buffer.compare`, never element by element);
 * - the streaming/file readers agree with the in-memory parsers (same verdict, same bytes).
 *
 * Hangs and memory are the runner's business (a watchdog outside the worker).
 */
import { isDeepStrictEqual } from 'node:util';
import { IdsJsonReader, MAX_IDS } from '@dorajs/cli';
import {
  DoraError,
  type HostTensor,
  parseJsonBounded,
  parseSafetensors,
  type SafetensorsContents,
  serializeSafetensors,
} from '@dorajs/core';
import { type FileSystem, openSafetensors } from '@dorajs/core/node';
import {
  architectureFor,
  type JsonObject,
  ModelConfigError,
  modelTypeOf,
  parseGemma2Config,
  parseGPT2Config,
  parseLlamaConfig,
  parseMistralConfig,
  parsePhi3Config,
  parseQwen2Config,
  parseQwen3Config,
} from '@dorajs/models';
import { configFromJsonText, configToJsonText, setPeftWarningHandler } from '@dorajs/peft';
import fc from 'fast-check';
import { fixtureFiles } from './corpus.js';
import { ascii, mutateBytes, mutateSafetensors } from './mutate.js';
import type { Rng } from './rng.js';

/** An invariant broke: the runner reports it with the input. */
export class Violation extends Error {}

/** What a target did with one input: 'accepted', or the name of the typed error that rejected it. */
export type Verdict = string;

export interface Target {
  readonly name: string;
  /** The seed inputs (loaded once per worker). */
  seeds(): Uint8Array[];
  /** Input number `index`, from its own generator. */
  generate(rng: Rng, seeds: readonly Uint8Array[], index: number): Uint8Array;
  /** Runs the parser(s) on `input`; throws Violation when an invariant breaks. */
  check(input: Uint8Array, rng: Rng): Verdict | Promise<Verdict>;
}

const FILE = '/fuzz/input';

/** The verdict for an error thrown on `input`; anything but a typed one-line error naming the file is a violation. */
function rejected(error: unknown, file: string = FILE): Verdict {
  if (!(error instanceof DoraError)) {
    const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    throw new Violation(`untyped error ${what.slice(0, 300)}`);
  }
  if (error.message.includes('\n')) throw new Violation(`${error.name} message spans lines: ${error.message.slice(0, 300)}`);
  if (error.message.length > 2000) throw new Violation(`${error.name} message is ${error.message.length} characters long`);
  if (!error.message.includes(file)) throw new Violation(`${error.name} does not name the file: ${error.message.slice(0, 300)}`);
  return error.name;
}

/** 1 in 8 inputs comes from a fast-check arbitrary (sometimes mutated once), the rest are mutants of seeds. */
function structuredOrMutant(
  rng: Rng,
  seeds: readonly Uint8Array[],
  arbitrary: fc.Arbitrary<Uint8Array>,
  mutate: (rng: Rng, seed: Uint8Array) => Uint8Array,
): Uint8Array {
  if (rng.chance(1 / 8)) {
    const [value] = fc.sample(arbitrary, { seed: rng.u32() | 0, numRuns: 1 });
    return rng.chance(0.5) ? value! : mutateBytes(rng, value!, 1);
  }
  return mutate(rng, rng.pick(seeds));
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of `bytes`, or null where they are not valid UTF-8. */
function utf8OrNull(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}
const lossy = new TextDecoder('utf-8');
const encoder = new TextEncoder();

/**
 * Mutants of text files, made valid UTF-8 again (bad sequences become U+FFFD): the readers refuse
 * invalid UTF-8 before any parser runs, so such inputs would test nothing past that check.
 */
function mutateText(rng: Rng, seed: Uint8Array): Uint8Array {
  const bytes = mutateBytes(rng, seed);
  return utf8OrNull(bytes) === null ? encoder.encode(lossy.decode(bytes)) : bytes;
}

// ---------------------------------------------------------------- safetensors

const DTYPE_ARRAYS = {
  F32: [Float32Array, 4],
  F16: [Uint16Array, 2],
  BF16: [Uint16Array, 2],
  I64: [BigInt64Array, 8],
  I32: [Int32Array, 4],
  I8: [Int8Array, 1],
  U8: [Uint8Array, 1],
} as const;

/** A valid safetensors file from random tensors (any key, including '__proto__' and surrogates) and metadata. */
export const safetensorsArbitrary: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.uniqueArray(
      fc.record({
        key: fc.oneof(fc.string({ maxLength: 12, unit: 'grapheme' }), fc.constantFrom('__proto__', 'constructor', '0', 'a.b.weight')),
        dtype: fc.constantFrom(...(Object.keys(DTYPE_ARRAYS) as (keyof typeof DTYPE_ARRAYS)[])),
        shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
        bytes: fc.uint8Array({ maxLength: 8 * 125 }),
      }),
      { selector: (t) => t.key, maxLength: 6 },
    ),
    fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 3 })),
  )
  .map(([items, metadata]) => {
    const tensors = new Map<string, HostTensor>();
    for (const { key, dtype, shape, bytes } of items) {
      if (key === '__metadata__') continue;
      const [Array_, size] = DTYPE_ARRAYS[dtype];
      const numel = shape.reduce((a, b) => a * b, 1);
      const raw = new Uint8Array(numel * size);
      raw.set(bytes.subarray(0, raw.length));
      tensors.set(key, { dtype, shape, data: new Array_(raw.buffer) } as HostTensor);
    }
    return serializeSafetensors(tensors, metadata ?? undefined);
  });

function sameContents(a: SafetensorsContents, b: SafetensorsContents, what: string): void {
  if (!isDeepStrictEqual({ ...a.metadata }, { ...b.metadata })) throw new Violation(`${what}: metadata differs`);
  const keysA = [...a.tensors.keys()].sort();
  const keysB = [...b.tensors.keys()].sort();
  if (!isDeepStrictEqual(keysA, keysB)) throw new Violation(`${what}: keys differ`);
  for (const key of keysA) {
    const x = a.tensors.get(key)!;
    const y = b.tensors.get(key)!;
    if (x.dtype !== y.dtype || !isDeepStrictEqual([...x.shape], [...y.shape])) throw new Violation(`${what}: ${key} dtype/shape differs`);
    if (Buffer.compare(bytesOf(x.data), bytesOf(y.data)) !== 0) throw new Violation(`${what}: ${key} bytes differ`);
  }
}

function bytesOf(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

function roundTrip(first: SafetensorsContents): void {
  const once = serializeSafetensors(first.tensors, first.metadata);
  let second: SafetensorsContents;
  try {
    second = parseSafetensors(once, 'round-trip');
  } catch (error) {
    throw new Violation(`an accepted file, written again, is refused: ${(error as Error).message.slice(0, 300)}`);
  }
  sameContents(first, second, 'parse → serialize → parse');
  const twice = serializeSafetensors(second.tensors, second.metadata);
  if (Buffer.compare(once, twice) !== 0) throw new Violation('serialize(parse(serialize(x))) differs from serialize(x)');
}

const safetensorsSeeds = () => fixtureFiles((name) => name.endsWith('.safetensors'));

const safetensors: Target = {
  name: 'safetensors',
  seeds: safetensorsSeeds,
  generate: (rng, seeds) => structuredOrMutant(rng, seeds, safetensorsArbitrary, mutateSafetensors),
  check(input) {
    let first: SafetensorsContents;
    try {
      first = parseSafetensors(input, FILE);
    } catch (error) {
      return rejected(error);
    }
    roundTrip(first);
    return 'accepted';
  },
};

/**
 * An in-memory file system holding one file, whose reads return short counts at random (the reader
 * must loop), for `openSafetensors`.
 */
function memoryFileSystem(path: string, bytes: Uint8Array, rng: Rng): FileSystem {
  const handle = {
    stat: async () => ({ isFile: () => true, size: bytes.length }),
    read: async (buffer: Uint8Array, offset: number, length: number, position: number) => {
      const start = Math.min(bytes.length, position);
      const n = Math.min(length, bytes.length - start, rng.chance(0.3) ? 1 + rng.int(64) : length);
      buffer.set(bytes.subarray(start, start + n), offset);
      return { bytesRead: n, buffer };
    },
    close: async () => {},
  };
  const open = async (p: string) => {
    if (p !== path) throw Object.assign(new Error(`ENOENT: no such file, open '${p}'`), { code: 'ENOENT' });
    return handle;
  };
  return { open } as unknown as FileSystem;
}

const safetensorsFile: Target = {
  name: 'safetensors-file',
  seeds: safetensorsSeeds,
  generate: (rng, seeds) => structuredOrMutant(rng, seeds, safetensorsArbitrary, mutateSafetensors),
  async check(input, rng) {
    let whole: SafetensorsContents | undefined;
    let wholeError: unknown;
    try {
      whole = parseSafetensors(input, FILE);
    } catch (error) {
      wholeError = error;
    }
    let streamed: SafetensorsContents | undefined;
    let streamedError: unknown;
    try {
      const file = await openSafetensors(FILE, memoryFileSystem(FILE, input, rng));
      const tensors = new Map<string, HostTensor>();
      try {
        for (const key of file.keys) tensors.set(key, await file.read(key));
      } finally {
        await file.close();
      }
      streamed = { metadata: file.metadata, tensors };
    } catch (error) {
      streamedError = error;
    }
    if ((whole === undefined) !== (streamed === undefined)) {
      const why = (e: unknown) => (e instanceof Error ? e.message.slice(0, 200) : String(e));
      throw new Violation(
        whole === undefined
          ? `the file reader accepts what parseSafetensors refuses (${why(wholeError)})`
          : `the file reader refuses what parseSafetensors accepts (${why(streamedError)})`,
      );
    }
    if (streamed === undefined) {
      rejected(wholeError);
      return rejected(streamedError);
    }
    sameContents(whole!, streamed, 'file reader vs parseSafetensors');
    return 'accepted';
  },
};

// ---------------------------------------------------------------- adapter_config.json

const patternString = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom('q_proj', '.*\\.q_proj', '(x+x+)+y', '(a|a)*$', '(?=x)', '(\\w)\\1', '[', 'layers', '^model\\.layers\\.\\d+\\.'),
);
const jsonNumber = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, 1e12, 2 ** 31, 2 ** 53 + 2),
);

export const adapterConfigArbitrary: fc.Arbitrary<Uint8Array> = fc
  .record(
    {
      peft_type: fc.oneof(fc.constant('LORA'), fc.constant('LORA'), fc.jsonValue({ maxDepth: 1 })),
      r: jsonNumber,
      lora_alpha: jsonNumber,
      lora_dropout: jsonNumber,
      target_modules: fc.oneof(fc.constant(null), patternString, fc.array(patternString, { maxLength: 4 })),
      exclude_modules: fc.oneof(fc.constant(null), patternString, fc.array(patternString, { maxLength: 3 })),
      layers_pattern: fc.oneof(fc.constant(null), patternString, fc.array(patternString, { maxLength: 2 })),
      layers_to_transform: fc.oneof(fc.constant(null), jsonNumber, fc.array(fc.integer({ min: -2, max: 40 }), { maxLength: 4 })),
      rank_pattern: fc.dictionary(patternString, jsonNumber, { maxKeys: 3 }),
      alpha_pattern: fc.dictionary(patternString, jsonNumber, { maxKeys: 3 }),
      use_dora: fc.boolean(),
      use_rslora: fc.boolean(),
      bias: fc.constantFrom('none', 'all', 'lora_only', 'other'),
      init_lora_weights: fc.oneof(fc.boolean(), fc.constantFrom('gaussian', 'pissa', 'olora', 'loftq', 'eva', 'bogus')),
      modules_to_save: fc.oneof(fc.constant(null), fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 })),
      task_type: fc.oneof(fc.constant(null), fc.constantFrom('CAUSAL_LM', 'SEQ_CLS')),
      extra_key: fc.jsonValue({ maxDepth: 3 }),
    },
    { requiredKeys: ['peft_type'] },
  )
  .map((o) => encoder.encode(JSON.stringify(o)));

const adapterConfig: Target = {
  name: 'adapter-config',
  seeds: () => fixtureFiles((name) => name === 'adapter_config.json'),
  generate: (rng, seeds) => structuredOrMutant(rng, seeds, adapterConfigArbitrary, mutateText),
  check(input) {
    const text = utf8OrNull(input);
    if (text === null) return 'not-utf8';
    let written: string;
    try {
      written = configToJsonText(configFromJsonText(text, FILE));
    } catch (error) {
      return rejected(error);
    }
    let again: string;
    try {
      again = configToJsonText(configFromJsonText(written, 'round-trip'));
    } catch (error) {
      throw new Violation(`an accepted adapter_config.json, written again, is refused: ${(error as Error).message.slice(0, 300)}`);
    }
    if (Buffer.compare(Buffer.from(written), Buffer.from(again)) !== 0) throw new Violation('adapter_config.json does not round-trip');
    return 'accepted';
  },
};

// ---------------------------------------------------------------- config.json

const PARSERS: Readonly<Record<string, (json: JsonObject, file: string) => unknown>> = {
  llama: parseLlamaConfig,
  qwen2: parseQwen2Config,
  qwen3: parseQwen3Config,
  mistral: parseMistralConfig,
  phi3: parsePhi3Config,
  gemma2: parseGemma2Config,
  gpt2: parseGPT2Config,
};

/** config.json as the loader reads it: bounded JSON, an object, a supported model_type, the architecture's fields. */
function parseModelConfig(text: string, file: string): unknown {
  const json = parseJsonBounded(text, (reason) => new ModelConfigError(`is ${reason}`, file, '(file)'));
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ModelConfigError('must hold a JSON object', file, '(file)');
  const modelType = modelTypeOf(json as JsonObject, file);
  architectureFor(modelType, file);
  const parse = PARSERS[modelType];
  if (parse === undefined) throw new Violation(`model_type '${modelType}' is supported but the fuzzer has no parser for it`);
  return parse(json as JsonObject, file);
}

const sizeValue = fc.oneof(
  fc.integer({ min: -1, max: 4096 }),
  fc.constantFrom(0, 1e12, 2 ** 31, 200000, 1.5, -0, 4.0),
  fc.string({ maxLength: 4 }),
);

export const modelConfigArbitrary: fc.Arbitrary<Uint8Array> = fc
  .record(
    {
      model_type: fc.oneof(fc.constantFrom(...Object.keys(PARSERS)), fc.string({ maxLength: 6 })),
      vocab_size: sizeValue,
      hidden_size: sizeValue,
      intermediate_size: sizeValue,
      num_hidden_layers: sizeValue,
      num_attention_heads: sizeValue,
      num_key_value_heads: sizeValue,
      head_dim: sizeValue,
      max_position_embeddings: sizeValue,
      n_embd: sizeValue,
      n_layer: sizeValue,
      n_head: sizeValue,
      n_positions: sizeValue,
      rms_norm_eps: jsonNumber,
      rope_theta: jsonNumber,
      tie_word_embeddings: fc.boolean(),
      hidden_act: fc.constantFrom('silu', 'gelu', 'gelu_pytorch_tanh', 'relu', 'bogus'),
      rope_scaling: fc.oneof(
        fc.constant(null),
        fc.record({
          rope_type: fc.constantFrom('linear', 'dynamic', 'yarn', 'llama3', 'longrope', 'default', 'bogus'),
          factor: jsonNumber,
          original_max_position_embeddings: sizeValue,
        }),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      extra: fc.jsonValue({ maxDepth: 3 }),
    },
    { requiredKeys: ['model_type'] },
  )
  .map((o) => encoder.encode(JSON.stringify(o)));

const modelConfig: Target = {
  name: 'model-config',
  seeds: () => fixtureFiles((name) => name === 'config.json'),
  generate: (rng, seeds) => structuredOrMutant(rng, seeds, modelConfigArbitrary, mutateText),
  check(input) {
    const text = utf8OrNull(input);
    if (text === null) return 'not-utf8';
    let config: unknown;
    try {
      config = parseModelConfig(text, FILE);
    } catch (error) {
      if (error instanceof Violation) throw error;
      return rejected(error);
    }
    // config.json is kept as text by the loader and written back verbatim; its parsed form must not
    // depend on the spelling: re-serialised, it parses to the same configuration.
    let again: unknown;
    try {
      again = parseModelConfig(JSON.stringify(JSON.parse(text)), FILE);
    } catch (error) {
      throw new Violation(`an accepted config.json, written again, is refused: ${(error as Error).message.slice(0, 300)}`);
    }
    // (JSON.stringify writes -0 as 0, so -0 and 0 count as equal here.)
    if (!isDeepStrictEqual(unsignZero(config), unsignZero(again))) throw new Violation('config.json parses differently once re-serialised');
    return 'accepted';
  },
};

/** `value` with every -0 made 0 (configurations are small plain objects). */
function unsignZero(value: unknown): unknown {
  if (Object.is(value, -0)) return 0;
  if (Array.isArray(value)) return value.map(unsignZero);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unsignZero(v)]));
  }
  return value;
}

// ---------------------------------------------------------------- ids files

const ID = fc.oneof(
  fc.integer({ min: 0, max: 50_000 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.constantFrom(2 ** 31, -0, 1.5, 1e3),
);

export const idsArbitrary: fc.Arbitrary<Uint8Array> = fc
  .oneof(
    fc.array(fc.array(ID, { minLength: 0, maxLength: 8 }), { maxLength: 4 }),
    fc.array(ID, { maxLength: 8 }),
    fc
      .integer({ min: 1, max: 4 })
      .chain((seq) => fc.array(fc.array(ID, { minLength: seq, maxLength: seq }), { minLength: 1, maxLength: 4 })),
    fc.jsonValue({ maxDepth: 3 }),
  )
  .chain((value) =>
    fc
      .constantFrom('', ' ', '\n', '\t\r\n ')
      .map((space) => encoder.encode(JSON.stringify(value, null, space.length > 0 ? space : undefined))),
  );

/** What the ids reader must accept, computed the old way (JSON.parse of the whole text, then the checks). */
function referenceIds(bytes: Uint8Array): Int32Array | undefined {
  let data: unknown;
  try {
    data = JSON.parse(utf8.decode(bytes));
  } catch {
    return undefined;
  }
  if (!Array.isArray(data) || data.length === 0) return undefined;
  const rows: unknown[] = Array.isArray(data[0]) ? data : [data];
  const seq = (rows[0] as unknown[]).length;
  if (seq === 0 || rows.length * seq > MAX_IDS) return undefined;
  const out = new Int32Array(rows.length * seq);
  for (let b = 0; b < rows.length; b++) {
    const row = rows[b];
    if (!Array.isArray(row) || row.length !== seq) return undefined;
    for (let s = 0; s < seq; s++) {
      const id = row[s];
      if (typeof id !== 'number' || !Number.isInteger(id) || id < -(2 ** 31) || id >= 2 ** 31) return undefined;
      out[b * seq + s] = id;
    }
  }
  return out;
}

/** Number tokens longer than the reader's 64-character bound: valid JSON the reader refuses on purpose. */
const LONG_NUMBER = /[-\d.eE+]{65,}/;

const ids: Target = {
  name: 'ids',
  seeds: () => [
    ascii('[[1, 2, 3], [4, 5, 6]]'),
    ascii('[0]'),
    ascii('[[50256]]'),
    ascii('[\n  [\n    128000,\n    9906\n  ]\n]\n'),
    ascii('[[2147483647,-2147483648,0,-0,1.0,1e2,20E-1]]'),
    new Uint8Array([0xef, 0xbb, 0xbf, ...ascii('[[7, 8]]')]),
  ],
  generate: (rng, seeds) => structuredOrMutant(rng, seeds, idsArbitrary, (r, seed) => mutateBytes(r, seed)),
  check(input, rng) {
    // Fed in random chunks: the verdict and the ids must not depend on where the chunks break.
    const reader = new IdsJsonReader(FILE);
    let host: HostTensor;
    try {
      for (let at = 0; at < input.length; ) {
        const n = rng.chance(0.5) ? input.length - at : 1 + rng.int(16);
        reader.push(input.subarray(at, at + n));
        at += n;
      }
      host = reader.end();
    } catch (error) {
      const verdict = rejected(error);
      if (referenceIds(input) !== undefined && !LONG_NUMBER.test(Buffer.from(input).toString('latin1'))) {
        throw new Violation(`the ids reader refuses a valid ids file: ${(error as Error).message.slice(0, 200)}`);
      }
      return verdict;
    }
    const reference = referenceIds(input);
    if (reference === undefined) throw new Violation('the ids reader accepts what JSON.parse and the ids checks refuse');
    if (host.dtype !== 'I32' || Buffer.compare(bytesOf(host.data), bytesOf(reference)) !== 0) {
      throw new Violation('the ids reader reads other ids than JSON.parse');
    }
    // Round trip: written as JSON and read again, the same bytes.
    const [batch, seq] = host.shape as [number, number];
    const rows = Array.from({ length: batch }, (_, b) => Array.from(host.data.subarray(b * seq, (b + 1) * seq)));
    const again = new IdsJsonReader('round-trip');
    again.push(encoder.encode(JSON.stringify(rows)));
    const back = again.end();
    if (Buffer.compare(bytesOf(back.data), bytesOf(host.data)) !== 0 || !isDeepStrictEqual(back.shape, host.shape)) {
      throw new Violation('ids do not round-trip through JSON');
    }
    return 'accepted';
  },
};

// ---------------------------------------------------------------- the harness's own self-test

/**
 * Proves the runner catches what a target cannot report itself: input 3 hangs synchronously, 5 throws
 * a TypeError, 7 fills the JS heap, 9 fills memory outside the heap (ArrayBuffers); the rest pass.
 */
const selftest: Target = {
  name: 'selftest',
  seeds: () => [],
  generate: (_rng, _seeds, index) => Uint8Array.of(index),
  check(input) {
    switch (input[0]) {
      case 3:
        for (;;) {}
      case 5:
        throw new TypeError('not a typed error');
      case 7: {
        // 8 MB of JS heap at a time, paced for the watchdog's 50 ms samples, until the heap limit.
        const hold: number[][] = [];
        for (;;) {
          hold.push(new Array(1e6).fill(1.5));
          const until = Date.now() + 5;
          while (Date.now() < until) {}
        }
      }
      case 9: {
        const hold: Uint8Array[] = [];
        // 8 MiB at a time, slowly enough for the watchdog's 50 ms samples; gives up at 2 GiB.
        for (let i = 0; i < 256; i++) {
          hold.push(new Uint8Array(8 * 2 ** 20).fill(1));
          const until = Date.now() + 5;
          while (Date.now() < until) {}
        }
        return `unbounded ${hold.length}`;
      }
      default:
        return 'accepted';
    }
  },
};

export const TARGETS: Readonly<Record<string, Target>> = Object.fromEntries(
  [safetensors, safetensorsFile, adapterConfig, modelConfig, ids, selftest].map((t) => [t.name, t]),
);

/** The targets a plain run fuzzes (everything but the self-test). */
export const FUZZ_TARGETS: readonly string[] = Object.keys(TARGETS).filter((name) => name !== 'selftest');

/** Silences peft's warnings (unknown keys and the like) in the worker. */
export function quietWarnings(): void {
  setPeftWarningHandler(() => {});
}
