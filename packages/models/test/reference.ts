/**
 * Independent float64 reference forwards for Llama and GPT-2, written from the transformers modeling
 * files with plain loops (one sequence at a time, no shared code with src/). The PEFT fixtures pin
 * the default configs; this pins every config flag, and its float64 precision makes it a good
 * finite-difference oracle for gradients.
 */
export type Weights = ReadonlyMap<string, Float32Array | Float64Array>;
type Vec = Float64Array;
type Json = Readonly<Record<string, unknown>>;

const num = (c: Json, k: string, d?: number): number => (c[k] ?? d) as number;

function w(weights: Weights, key: string): Float32Array | Float64Array {
  const v = weights.get(key);
  if (!v) throw new Error(`reference: no weight ${key}`);
  return v;
}

/** y[o] = Σ_i x[i]·W[o, i] (+ b[o]), W [out, in]. */
function linear(x: Vec, weight: ArrayLike<number>, out: number, bias?: ArrayLike<number>): Vec {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = bias ? bias[o]! : 0;
    for (let i = 0; i < n; i++) s += x[i]! * weight[o * n + i]!;
    y[o] = s;
  }
  return y;
}

/** y[o] = Σ_i x[i]·W[i, o] + b[o], W [in, out] (transformers Conv1D). */
function conv1d(x: Vec, weight: ArrayLike<number>, out: number, bias: ArrayLike<number>): Vec {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = bias[o]!;
    for (let i = 0; i < x.length; i++) s += x[i]! * weight[i * out + o]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Vec, weight: ArrayLike<number>, eps: number): Vec {
  let ms = 0;
  for (const v of x) ms += v * v;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * r * weight[i]!);
}

function layerNorm(x: Vec, weight: ArrayLike<number>, bias: ArrayLike<number>, eps: number): Vec {
  const mu = x.reduce((a, b) => a + b, 0) / x.length;
  const variance = x.reduce((a, b) => a + (b - mu) ** 2, 0) / x.length;
  return x.map((v, i) => ((v - mu) / Math.sqrt(variance + eps)) * weight[i]! + bias[i]!);
}

function erf(x: number): number {
  // Abramowitz–Stegun 7.1.26 is too coarse for 1e-5; integrate the series / continued fraction instead.
  const t = Math.abs(x);
  if (t < 3) {
    let sum = t;
    let term = t;
    for (let n = 1; n < 200; n++) {
      term *= (-t * t) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  return Math.sign(x) * (1 - erfcLarge(t));
}

function erfcLarge(t: number): number {
  // Continued fraction for erfc, accurate for t ≥ 3.
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (t + f);
  return Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f);
}

const ACT: Record<string, (x: number) => number> = {
  gelu_new: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  gelu_pytorch_tanh: (x) => ACT['gelu_new']!(x),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  relu: (x) => Math.max(0, x),
  silu: (x) => x / (1 + Math.exp(-x)),
  swish: (x) => x / (1 + Math.exp(-x)),
};

/** Causal attention for one sequence: q [heads][seq][d], k/v [kvHeads][seq][d] → [seq][heads·d]. */
function attend(q: Vec[][], k: Vec[][], v: Vec[][], scale: number): Vec[] {
  const heads = q.length;
  const group = heads / k.length;
  const seq = q[0]!.length;
  const d = q[0]![0]!.length;
  const out = Array.from({ length: seq }, () => new Float64Array(heads * d));
  for (let h = 0; h < heads; h++) {
    const kv = Math.floor(h / group);
    for (let i = 0; i < seq; i++) {
      const scores = new Float64Array(i + 1);
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let e = 0; e < d; e++) s += q[h]![i]![e]! * k[kv]![j]![e]!;
        scores[j] = s * scale;
      }
      const m = Math.max(...scores);
      const p = scores.map((s) => Math.exp(s - m));
      const z = p.reduce((a, b) => a + b, 0);
      for (let j = 0; j <= i; j++) for (let e = 0; e < d; e++) out[i]![h * d + e]! += (p[j]! / z) * v[kv]![j]![e]!;
    }
  }
  return out;
}

/** Splits [seq][n·d] rows into [n][seq][d]. */
function heads(rows: Vec[], n: number, d: number): Vec[][] {
  return Array.from({ length: n }, (_, h) => rows.map((r) => r.slice(h * d, (h + 1) * d)));
}

function rope(x: Vec, pos: number, theta: number): Vec {
  const d = x.length;
  const half = d / 2;
  const out = new Float64Array(d);
  for (let i = 0; i < half; i++) {
    const angle = pos / theta ** ((2 * i) / d);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    out[i] = x[i]! * c - x[i + half]! * s;
    out[i + half] = x[i + half]! * c + x[i]! * s;
  }
  return out;
}

function ropeTheta(c: Json): number {
  const params = c['rope_parameters'] as Json | undefined;
  return num(params ?? {}, 'rope_theta', num(c, 'rope_theta', 10000));
}

/** Llama logits for one sequence of ids: [seq][vocab]. */
export function referenceLlama(c: Json, W: Weights, ids: readonly number[]): Vec[] {
  const hidden = num(c, 'hidden_size');
  const nh = num(c, 'num_attention_heads');
  const kvh = num(c, 'num_key_value_heads', nh);
  const d = num(c, 'head_dim', hidden / nh);
  const inter = num(c, 'intermediate_size');
  const vocab = num(c, 'vocab_size');
  const eps = num(c, 'rms_norm_eps', 1e-6);
  const theta = ropeTheta(c);
  const act = ACT[(c['hidden_act'] as string | undefined) ?? 'silu']!;
  const opt = (k: string) => W.get(k);
  const embed = w(W, 'model.embed_tokens.weight');
  let x = ids.map((id) => Float64Array.from(embed.subarray(id * hidden, (id + 1) * hidden)));
  for (let l = 0; l < num(c, 'num_hidden_layers'); l++) {
    const p = `model.layers.${l}.`;
    const h = x.map((r) => rmsNorm(r, w(W, `${p}input_layernorm.weight`), eps));
    const proj = (name: string, out: number) =>
      h.map((r) => linear(r, w(W, `${p}self_attn.${name}.weight`), out, opt(`${p}self_attn.${name}.bias`)));
    const q = heads(proj('q_proj', nh * d), nh, d).map((hs) => hs.map((r, s) => rope(r, s, theta)));
    const k = heads(proj('k_proj', kvh * d), kvh, d).map((hs) => hs.map((r, s) => rope(r, s, theta)));
    const v = heads(proj('v_proj', kvh * d), kvh, d);
    const attn = attend(q, k, v, d ** -0.5).map((r) =>
      linear(r, w(W, `${p}self_attn.o_proj.weight`), hidden, opt(`${p}self_attn.o_proj.bias`)),
    );
    x = x.map((r, s) => r.map((v2, i) => v2 + attn[s]![i]!));
    const mlp = x.map((r) => {
      const n = rmsNorm(r, w(W, `${p}post_attention_layernorm.weight`), eps);
      const gate = linear(n, w(W, `${p}mlp.gate_proj.weight`), inter, opt(`${p}mlp.gate_proj.bias`));
      const up = linear(n, w(W, `${p}mlp.up_proj.weight`), inter, opt(`${p}mlp.up_proj.bias`));
      return linear(
        gate.map((g, i) => act(g) * up[i]!),
        w(W, `${p}mlp.down_proj.weight`),
        hidden,
        opt(`${p}mlp.down_proj.bias`),
      );
    });
    x = x.map((r, s) => r.map((v2, i) => v2 + mlp[s]![i]!));
  }
  const head = c['tie_word_embeddings'] === true ? embed : w(W, 'lm_head.weight');
  return x.map((r) => linear(rmsNorm(r, w(W, 'model.norm.weight'), eps), head, vocab));
}

/** GPT-2 logits for one sequence of ids: [seq][vocab]. */
export function referenceGPT2(c: Json, W: Weights, ids: readonly number[]): Vec[] {
  const e = num(c, 'n_embd');
  const nh = num(c, 'n_head');
  const d = e / nh;
  const inner = num(c, 'n_inner', 4 * e);
  const vocab = num(c, 'vocab_size');
  const eps = num(c, 'layer_norm_epsilon', 1e-5);
  const act = ACT[(c['activation_function'] as string | undefined) ?? 'gelu_new']!;
  const wte = w(W, 'transformer.wte.weight');
  const wpe = w(W, 'transformer.wpe.weight');
  let x = ids.map((id, s) => Float64Array.from({ length: e }, (_, i) => wte[id * e + i]! + wpe[s * e + i]!));
  for (let l = 0; l < num(c, 'n_layer'); l++) {
    const p = `transformer.h.${l}.`;
    const ln = (r: Vec, name: string) => layerNorm(r, w(W, `${p}${name}.weight`), w(W, `${p}${name}.bias`), eps);
    const qkv = x.map((r) => conv1d(ln(r, 'ln_1'), w(W, `${p}attn.c_attn.weight`), 3 * e, w(W, `${p}attn.c_attn.bias`)));
    const part = (i: number) =>
      heads(
        qkv.map((r) => r.slice(i * e, (i + 1) * e)),
        nh,
        d,
      );
    let scale = c['scale_attn_weights'] === false ? 1 : 1 / Math.sqrt(d);
    if (c['scale_attn_by_inverse_layer_idx'] === true) scale /= l + 1;
    const attn = attend(part(0), part(1), part(2), scale).map((r) =>
      conv1d(r, w(W, `${p}attn.c_proj.weight`), e, w(W, `${p}attn.c_proj.bias`)),
    );
    x = x.map((r, s) => r.map((v, i) => v + attn[s]![i]!));
    const mlp = x.map((r) => {
      const hfc = conv1d(ln(r, 'ln_2'), w(W, `${p}mlp.c_fc.weight`), inner, w(W, `${p}mlp.c_fc.bias`));
      return conv1d(hfc.map(act), w(W, `${p}mlp.c_proj.weight`), e, w(W, `${p}mlp.c_proj.bias`));
    });
    x = x.map((r, s) => r.map((v, i) => v + mlp[s]![i]!));
  }
  const head = c['tie_word_embeddings'] === false ? w(W, 'lm_head.weight') : wte;
  return x.map((r) => linear(layerNorm(r, w(W, 'transformer.ln_f.weight'), w(W, 'transformer.ln_f.bias'), eps), head, vocab));
}
