/**
 * Which modules a LoraConfig targets, with PEFT's rules (`check_target_module_exists`,
 * `_maybe_include_all_linear_layers`, `get_pattern_key`).
 */
import { Conv1D, Conv1d, Conv2d, Conv3d, Embedding, Linear, type Module, QuantizedLinear } from '@dorajs/core';
import type { LoraConfig } from '../config/lora-config.js';
import { fullMatch, keyMatches, layerIndex } from '../config/patterns.js';

export type TargetableLayer = Linear | Conv1D | QuantizedLinear | Embedding | Conv1d | Conv2d | Conv3d;

export function isTargetableLayer(m: Module): m is TargetableLayer {
  return (
    m instanceof Linear ||
    m instanceof QuantizedLinear ||
    m instanceof Conv1D ||
    m instanceof Embedding ||
    m instanceof Conv1d ||
    m instanceof Conv2d ||
    m instanceof Conv3d
  );
}

/** Does `path` match a list of names (exact, or ends with `.` + name) or a full-match regex? */
export function matchesModuleList(spec: readonly string[] | string, path: string, field = 'target_modules'): boolean {
  if (typeof spec === 'string') return fullMatch(spec, path, field);
  return spec.includes(path) || spec.some((name) => path.endsWith(`.${name}`));
}

/** PEFT's layers_to_transform / layers_pattern filter: the layer index is the number after `<pattern>.`. */
function layerIndexOf(path: string, layersPattern: string | readonly string[] | null): number | null {
  const patterns =
    layersPattern === null || layersPattern.length === 0 ? [null] : typeof layersPattern === 'string' ? [layersPattern] : layersPattern;
  for (const p of patterns) {
    // re.match(r".*\.[^.]*\.(\d+)\.") (a fixed pattern) or re.match(rf".*\.{pattern}\.(\d+)\.") (the config's, on RE2)
    const index = p === null ? defaultLayerIndex(path) : layerIndex(p, path);
    if (index !== null) return index;
  }
  return null;
}

function defaultLayerIndex(path: string): number | null {
  const m = /^.*\.[^.]*\.(\d+)\./.exec(path);
  return m ? Number(m[1]) : null;
}

/** True when `path` is a target of `config` (ignoring exclusions). `targetModules` must not be 'all-linear' here. */
export function isTarget(config: LoraConfig, targets: readonly string[] | string, path: string): boolean {
  if (typeof targets === 'string') return fullMatch(targets, path, 'target_modules');
  if (targets.includes(path)) return true;
  if (!targets.some((name) => path.endsWith(`.${name}`))) return false;
  const layers = config.layersToTransform;
  const usingIndexes = layers !== null && (typeof layers === 'number' || layers.length > 0);
  if (!usingIndexes) return true;
  const index = layerIndexOf(path, config.layersPattern);
  if (index === null) return false;
  return typeof layers === 'number' ? index === layers : layers.includes(index);
}

export function isExcluded(config: LoraConfig, path: string): boolean {
  const ex = config.excludeModules;
  return ex !== null && matchesModuleList(ex, path, 'exclude_modules');
}

/**
 * 'all-linear' expanded as PEFT 0.21 does: the full paths of every Linear/Conv1D except the output layer
 * (the module `getOutputEmbeddings()` returns when the model has that method, else one named `lm_head`).
 */
export function expandAllLinear(model: Module, candidates: readonly [string, Module][]): string[] {
  const getOut = (model as unknown as { getOutputEmbeddings?: () => Module | null }).getOutputEmbeddings;
  const output = typeof getOut === 'function' ? getOut.call(model) : null;
  return candidates
    .filter(
      ([path, m]) =>
        (m instanceof Linear || m instanceof Conv1D || m instanceof QuantizedLinear) &&
        (output ? m !== output : path.split('.').pop() !== 'lm_head'),
    )
    .map(([path]) => path);
}

/** The rank and alpha for one module: the first matching rank_pattern / alpha_pattern key, else the config's. */
export function rankAndAlpha(config: LoraConfig, path: string): { r: number; alpha: number } {
  const pick = (pattern: Readonly<Record<string, number>>, fallback: number, field: string): number => {
    for (const [key, value] of Object.entries(pattern)) if (keyMatches(key, path, field)) return value;
    return fallback;
  };
  return { r: pick(config.rankPattern, config.r, 'rank_pattern'), alpha: pick(config.alphaPattern, config.loraAlpha, 'alpha_pattern') };
}
