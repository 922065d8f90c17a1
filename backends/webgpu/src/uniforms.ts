/**
 * Kernel parameters (shapes, strides, scalars) travel in a uniform struct so one compiled pipeline serves
 * every shape. A struct is a list of named 32-bit scalars followed by an optional `dims` array of vec4<u32>
 * (uniform arrays need a 16-byte stride) holding shapes and strides.
 */
export type ScalarType = 'u32' | 'i32' | 'f32';

export interface UniformLayout {
  readonly scalars: readonly (readonly [name: string, type: ScalarType])[];
  /** Number of u32 slots in `dims` (rounded up to whole vec4s); 0 for none. */
  readonly dims: number;
}

export function uniformStructWgsl(layout: UniformLayout): string {
  const fields = layout.scalars.map(([name, type]) => `  ${name}: ${type},`);
  if (layout.dims > 0) fields.push(`  dims: array<vec4<u32>, ${Math.ceil(layout.dims / 4)}>,`);
  if (fields.length === 0) fields.push('  unused: u32,');
  return `struct Params {\n${fields.join('\n')}\n}\n@group(0) @binding(0) var<uniform> P: Params;`;
}

/** Bytes the struct occupies, rounded to 16 as uniform bindings require. */
export function uniformBytes(layout: UniformLayout): number {
  let words = Math.max(1, layout.scalars.length);
  if (layout.dims > 0) words = Math.ceil(layout.scalars.length / 4) * 4 + Math.ceil(layout.dims / 4) * 4;
  return Math.ceil((words * 4) / 16) * 16;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Writes the values into `target` (u32 words) at `wordOffset` following `layout`. Scalars are given by
 * name; `dims` are plain non-negative integers.
 */
export function packUniforms(
  layout: UniformLayout,
  scalars: Readonly<Record<string, number>>,
  dims: readonly number[],
  target: Uint32Array,
  wordOffset: number,
): void {
  let w = wordOffset;
  for (const [name, type] of layout.scalars) {
    const v = scalars[name];
    if (v === undefined) throw new Error(`uniform '${name}' missing`);
    if (type === 'f32') {
      f32[0] = v;
      target[w++] = u32[0]!;
    } else {
      target[w++] = type === 'i32' ? v | 0 : v >>> 0;
    }
  }
  if (layout.dims > 0) {
    if (dims.length > layout.dims) throw new Error(`${dims.length} dims exceed the ${layout.dims} slots`);
    w = wordOffset + Math.ceil(layout.scalars.length / 4) * 4;
    for (let i = 0; i < dims.length; i++) target[w + i] = dims[i]! >>> 0;
  }
}
