/**
 * transformers' bitsandbytes checkpoint layout, both ways (docs/qdora.md):
 *
 * - 4-bit (`Linear4bit._save_to_state_dict` + `QuantState.as_dict(packed=True)`): `<m>.weight` uint8
 *   [ceil(n/2), 1], `<m>.weight.absmax` (float32 per block, or uint8 codes when double-quantized),
 *   `<m>.weight.quant_map` float32 [16], `<m>.weight.nested_absmax` float32, `<m>.weight.nested_quant_map`
 *   float32 [256], and `<m>.weight.quant_state.bitsandbytes__nf4|fp4`: uint8 bytes of
 *   `json.dumps({quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype, nested_offset]})`.
 * - int8 (`Linear8bitLt`): `<m>.weight` int8 [out, in], `<m>.SCB` float32 [out], `<m>.weight_format` a 0-d
 *   uint8 (0 = row-major, the only layout bitsandbytes still writes).
 *
 * Every check here reads headers and the few-byte quant-state tensors only, so a whole checkpoint is
 * validated before any weight is read.
 */
import {
  DOUBLE_QUANT_BLOCKSIZE,
  DoraError,
  type HostTensor,
  parseJsonBounded,
  preview,
  type QuantFormat,
  type QuantizedHost,
  SUPPORTED_BLOCKSIZES,
} from '@dorajs/core';

/** A bitsandbytes checkpoint's quant state is missing, inconsistent or of a kind dorajs cannot read. */
export class QuantStateError extends DoraError {
  static override readonly typeName: string = 'QuantStateError';
  constructor(
    message: string,
    readonly file: string,
    readonly key: string,
  ) {
    super(`${file}: '${key}' ${message}`);
  }
}

/** What a safetensors header says of one tensor. */
export interface HeaderEntry {
  readonly dtype: string;
  readonly shape: readonly number[];
}

/** One quantized Linear of a checkpoint: its key prefix (`<m>`), format and every key it owns. */
export interface BnbModule {
  readonly prefix: string;
  readonly format: QuantFormat;
  readonly file: string;
  /** `<m>.weight` first, then the state keys in the order bitsandbytes writes them. */
  readonly keys: readonly string[];
}

/** The parsed `quant_state.bitsandbytes__*` JSON (4-bit only). */
export interface QuantStateJson {
  readonly quant_type: 'nf4' | 'fp4';
  readonly blocksize: number;
  readonly dtype: string;
  readonly shape: readonly [number, number];
  readonly nested_blocksize?: number;
  readonly nested_dtype?: string;
  readonly nested_offset?: number;
}

const STATE_KEY = /^(.+)\.weight\.quant_state\.bitsandbytes__(.+)$/;
const FOUR_BIT_PARTS = ['absmax', 'quant_map', 'nested_absmax', 'nested_quant_map'] as const;

/** Keys that belong to a quantized weight besides `<m>.weight` (any prefix). */
export const BNB_STATE_KEY = /\.(weight\.(absmax|quant_map|nested_absmax|nested_quant_map|quant_state\.[\w.]+)|SCB|weight_format)$/;

/** The torch dtype names bitsandbytes records (`str(dtype).strip("torch.")`). */
const TORCH_FLOATS = ['float32', 'bfloat16', 'float16'];

/**
 * Finds the quantized Linear modules of a checkpoint from its keys (headers only): 4-bit by their
 * quant_state key, int8 by `SCB`. Throws a QuantStateError for an unsupported quant type, a state key
 * without its weight, or 4-bit parts without a quant_state.
 */
export function findBnbModules(
  files: ReadonlyMap<string, ReadonlyMap<string, HeaderEntry>>,
  describe: (file: string) => string = (f) => f,
): BnbModule[] {
  const out: BnbModule[] = [];
  const claimed = new Set<string>();
  for (const [file, entries] of files) {
    for (const key of entries.keys()) {
      const m = STATE_KEY.exec(key);
      if (m) {
        const [, prefix, type] = m as unknown as [string, string, string];
        if (type !== 'nf4' && type !== 'fp4') {
          throw new QuantStateError(`has quant type '${type}', which dorajs does not support (nf4, fp4 or int8)`, describe(file), key);
        }
        const weight = `${prefix}.weight`;
        if (!entries.has(weight)) throw new QuantStateError(`has no packed weight '${weight}' in the same file`, describe(file), key);
        const parts = FOUR_BIT_PARTS.map((p) => `${weight}.${p}`).filter((k) => entries.has(k));
        out.push({ prefix, format: type, file, keys: [weight, ...parts, key] });
        for (const k of [weight, ...parts, key]) claimed.add(`${file}\0${k}`);
      } else if (key.endsWith('.SCB')) {
        const prefix = key.slice(0, -'.SCB'.length);
        const weight = `${prefix}.weight`;
        if (!entries.has(weight)) throw new QuantStateError(`has no int8 weight '${weight}' in the same file`, describe(file), key);
        const format = `${prefix}.weight_format`;
        const keys = [weight, key, ...(entries.has(format) ? [format] : [])];
        out.push({ prefix, format: 'int8', file, keys });
        for (const k of keys) claimed.add(`${file}\0${k}`);
      }
    }
  }
  for (const [file, entries] of files) {
    for (const key of entries.keys()) {
      if (BNB_STATE_KEY.test(key) && !claimed.has(`${file}\0${key}`)) {
        throw new QuantStateError(
          key.endsWith('.weight_format')
            ? 'has no SCB beside it (int8 state incomplete)'
            : 'belongs to a 4-bit weight without a quant_state',
          describe(file),
          key,
        );
      }
    }
  }
  return out;
}

/** Parses and checks a `quant_state.bitsandbytes__*` tensor's JSON. */
export function parseQuantState(bytes: Uint8Array, file: string, key: string, format: 'nf4' | 'fp4'): QuantStateJson {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new QuantStateError('is not UTF-8 (pack_dict_to_tensor)', file, key);
  }
  // From a stranger's checkpoint: nesting is bounded before parsing, values are previewed in messages.
  const json = parseJsonBounded(text, (reason) => new QuantStateError(`is not valid JSON (pack_dict_to_tensor): ${reason}`, file, key));
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new QuantStateError('is not a JSON object', file, key);
  const j = json as Record<string, unknown>;
  const bad = (field: string, what: string): never => {
    throw new QuantStateError(`field '${field}' ${what}`, file, key);
  };
  if (j['quant_type'] !== format) bad('quant_type', `is ${preview(j['quant_type'])} but the key says '${format}'`);
  const bs = j['blocksize'];
  if (typeof bs !== 'number' || !SUPPORTED_BLOCKSIZES.includes(bs)) {
    bad('blocksize', `is ${preview(bs)} (one of ${SUPPORTED_BLOCKSIZES.join(', ')})`);
  }
  if (typeof j['dtype'] !== 'string' || !TORCH_FLOATS.includes(j['dtype']))
    bad('dtype', `is ${preview(j['dtype'])} (${TORCH_FLOATS.join(', ')})`);
  const shape = j['shape'];
  if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    bad('shape', `is ${preview(shape)}, not a 2-D weight shape`);
  }
  const nestedFields = ['nested_blocksize', 'nested_dtype', 'nested_offset'].filter((f) => f in j);
  if (nestedFields.length !== 0 && nestedFields.length !== 3) bad(nestedFields[0]!, 'is given without the other nested_* fields');
  if (nestedFields.length === 3) {
    if (j['nested_blocksize'] !== DOUBLE_QUANT_BLOCKSIZE && !SUPPORTED_BLOCKSIZES.includes(j['nested_blocksize'] as number)) {
      bad('nested_blocksize', `is ${preview(j['nested_blocksize'])}`);
    }
    if (j['nested_dtype'] !== 'float32') bad('nested_dtype', `is ${preview(j['nested_dtype'])} (float32)`);
    if (typeof j['nested_offset'] !== 'number' || !Number.isFinite(j['nested_offset'])) {
      bad('nested_offset', `is ${preview(j['nested_offset'])}, not a finite number`);
    }
  }
  return j as unknown as QuantStateJson;
}

/**
 * Checks one module's tensors against each other and the model's [out, in] from headers and its parsed
 * state: dtypes, shapes, the block count and the nested stats. Nothing is read.
 */
export function checkBnbModule(
  mod: BnbModule,
  entries: ReadonlyMap<string, HeaderEntry>,
  state: QuantStateJson | null,
  expected: readonly [number, number],
): void {
  const [out, inF] = expected;
  const n = out * inF;
  const need = (key: string, dtype: string, shape: readonly number[] | ((s: readonly number[]) => boolean), what: string) => {
    const e = entries.get(key);
    if (!e) throw new QuantStateError(`is missing (${what})`, mod.file, key);
    if (e.dtype !== dtype) throw new QuantStateError(`is ${e.dtype}, expected ${dtype} (${what})`, mod.file, key);
    const ok = typeof shape === 'function' ? shape(e.shape) : e.shape.length === shape.length && e.shape.every((d, i) => d === shape[i]);
    if (!ok) {
      const want = typeof shape === 'function' ? what : `[${shape.join(', ')}]`;
      throw new QuantStateError(`is [${e.shape.join(', ')}], expected ${want}`, mod.file, key);
    }
  };
  const weight = `${mod.prefix}.weight`;
  if (mod.format === 'int8') {
    need(weight, 'I8', [out, inF], 'the int8 weight [out, in]');
    need(`${mod.prefix}.SCB`, 'F32', [out], 'one scale per output row');
    const fmt = `${mod.prefix}.weight_format`;
    if (entries.has(fmt)) need(fmt, 'U8', (s) => s.length === 0 || (s.length === 1 && s[0] === 1), 'a 0-d uint8');
    return;
  }
  const s = state!;
  const stateKey = mod.keys[mod.keys.length - 1]!;
  if (s.shape[0] !== out || s.shape[1] !== inF) {
    throw new QuantStateError(`says shape [${s.shape.join(', ')}] but the model's weight is [${out}, ${inF}]`, mod.file, stateKey);
  }
  const half = Math.ceil(n / 2);
  need(
    weight,
    'U8',
    (sh) => (sh.length === 2 && sh[0] === half && sh[1] === 1) || (sh.length === 1 && sh[0] === half),
    `[${half}, 1] packed bytes`,
  );
  const blocks = Math.ceil(n / s.blocksize);
  const nested = s.nested_blocksize !== undefined;
  need(`${weight}.quant_map`, 'F32', [16], 'the 16-entry code');
  need(`${weight}.absmax`, nested ? 'U8' : 'F32', [blocks], `one absmax per block of ${s.blocksize}`);
  const nk = [`${weight}.nested_absmax`, `${weight}.nested_quant_map`];
  if (nested) {
    need(nk[0]!, 'F32', [Math.ceil(blocks / s.nested_blocksize!)], `one per block of ${s.nested_blocksize} absmax codes`);
    need(nk[1]!, 'F32', [256], 'the 256-entry dynamic map');
  } else {
    for (const k of nk) if (entries.has(k)) throw new QuantStateError('is present but the quant_state has no nested_* fields', mod.file, k);
  }
}

/** Core's kernels decode with bitsandbytes' own code table: a checkpoint with another quant_map is refused. */
export function checkQuantMap(map: Float32Array, format: 'nf4' | 'fp4', file: string, key: string): void {
  const want = quantMap(format);
  if (map.length !== 16 || map.some((v, i) => v !== want[i])) {
    throw new QuantStateError(`differs from bitsandbytes' ${format} code (get_4bit_type)`, file, key);
  }
}

/** Assembles a checked module's host tensors into core's packed form (validated again by core on upload). */
export function bnbHost(
  mod: BnbModule,
  read: ReadonlyMap<string, HostTensor>,
  state: QuantStateJson | null,
  shape: readonly [number, number],
): QuantizedHost {
  const weight = `${mod.prefix}.weight`;
  const get = (k: string) => read.get(k)!;
  if (mod.format === 'int8') {
    return { format: 'int8', shape, data: get(weight).data as Int8Array, scb: get(`${mod.prefix}.SCB`).data as Float32Array };
  }
  const s = state!;
  const nested = s.nested_blocksize !== undefined;
  return {
    format: s.quant_type,
    shape,
    blocksize: s.blocksize,
    data: get(weight).data as Uint8Array,
    absmax: get(`${weight}.absmax`).data as Float32Array | Uint8Array,
    nested: nested
      ? {
          absmax: get(`${weight}.nested_absmax`).data as Float32Array,
          code: get(`${weight}.nested_quant_map`).data as Float32Array,
          offset: Math.fround(s.nested_offset!),
          blocksize: s.nested_blocksize!,
        }
      : null,
  };
}

/** bitsandbytes' `get_4bit_type(t)`: the code divided by its max |value|, float32. */
export function quantMap(format: 'nf4' | 'fp4'): Float32Array {
  const nf4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334, -0.09105003625154495,
    0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
  ];
  // Python's `-0` in bitsandbytes' list is the integer 0: the stored code has +0.0 there.
  const fp4 = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, 0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0];
  const code = Float32Array.from(format === 'nf4' ? nf4 : fp4);
  let max = 0;
  for (const v of code) max = Math.max(max, Math.abs(v));
  return code.map((v) => Math.fround(v / max));
}

/** Python's `repr(float)` (what json.dumps writes): shortest digits, exponent outside [1e-4, 1e16). */
export function pythonFloat(x: number): string {
  if (!Number.isFinite(x)) throw new DoraError(`cannot write ${x} as a JSON number`);
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expStr] = x.toExponential().split('e') as [string, string];
  const exp = Number(expStr);
  if (exp < -4 || exp >= 16) return `${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  const s = String(x);
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/** `json.dumps(non_tensor_dict)` of QuantState.as_dict(packed=True), as bytes. */
export function quantStateBytes(host: Exclude<QuantizedHost, { format: 'int8' }>, dtype: string): Uint8Array {
  const parts = [
    `"quant_type": "${host.format}"`,
    `"blocksize": ${host.blocksize}`,
    `"dtype": "${dtype}"`,
    `"shape": [${host.shape[0]}, ${host.shape[1]}]`,
  ];
  if (host.nested) {
    parts.push(
      `"nested_blocksize": ${host.nested.blocksize}`,
      `"nested_dtype": "float32"`,
      `"nested_offset": ${pythonFloat(host.nested.offset)}`,
    );
  }
  return new TextEncoder().encode(`{${parts.join(', ')}}`);
}

/** A quantized weight as the tensors transformers saves for `<prefix>` (bitsandbytes' key order). */
export function bnbTensors(prefix: string, host: QuantizedHost, dtype: string): [string, HostTensor][] {
  const w = `${prefix}.weight`;
  if (host.format === 'int8') {
    return [
      [w, { dtype: 'I8', shape: [...host.shape], data: host.data }],
      [`${prefix}.SCB`, { dtype: 'F32', shape: [host.shape[0]], data: host.scb }],
      [`${prefix}.weight_format`, { dtype: 'U8', shape: [], data: new Uint8Array([0]) }],
    ];
  }
  const out: [string, HostTensor][] = [
    [w, { dtype: 'U8', shape: [host.data.length, 1], data: host.data }],
    [
      `${w}.absmax`,
      host.nested
        ? { dtype: 'U8', shape: [host.absmax.length], data: host.absmax as Uint8Array }
        : { dtype: 'F32', shape: [host.absmax.length], data: host.absmax as Float32Array },
    ],
    [`${w}.quant_map`, { dtype: 'F32', shape: [16], data: quantMap(host.format) }],
  ];
  if (host.nested) {
    out.push([`${w}.nested_absmax`, { dtype: 'F32', shape: [host.nested.absmax.length], data: host.nested.absmax }]);
    out.push([`${w}.nested_quant_map`, { dtype: 'F32', shape: [256], data: host.nested.code }]);
  }
  const state = quantStateBytes(host, dtype);
  out.push([`${w}.quant_state.bitsandbytes__${host.format}`, { dtype: 'U8', shape: [state.length], data: state }]);
  return out;
}

/** transformers' `BitsAndBytesConfig(...).to_dict()`, keys sorted as config.json has them. */
export function quantizationConfig(format: QuantFormat, doubleQuant: boolean, computeDtype = 'bfloat16'): Record<string, unknown> {
  const four = format !== 'int8';
  return {
    _load_in_4bit: four,
    _load_in_8bit: !four,
    bnb_4bit_compute_dtype: computeDtype,
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: four ? format : 'fp4',
    bnb_4bit_use_double_quant: four && doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0,
    load_in_4bit: four,
    load_in_8bit: !four,
    quant_method: 'bitsandbytes',
  };
}

/** The torch dtype name of a safetensors float dtype (what quant_state records as the original dtype). */
export function torchDtype(safetensorsDtype: string): string {
  return safetensorsDtype === 'BF16' ? 'bfloat16' : safetensorsDtype === 'F16' ? 'float16' : 'float32';
}
