/** Bind groups cached by (layout, uniform slot, buffer ids…), so a steady-state dispatch creates none. */
import type { GpuBuffer } from '../buffer-pool.js';
import type { CompiledProgram } from './pipelines.js';
import type { UniformSlot } from './uniform-arena.js';

/** A trie of numeric maps: no key strings per dispatch. */
interface BindGroupNode {
  group?: GPUBindGroup;
  next?: Map<number, BindGroupNode>;
}

const MAX_BIND_GROUPS_CACHED = 8192;

export class BindGroupCache {
  /** One trie root per bind group layout. */
  private roots = new Map<string, BindGroupNode>();
  private count = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly stats: { bindGroupsCreated: number },
  ) {}

  get(compiled: CompiledProgram, slot: UniformSlot, outputs: readonly GpuBuffer[], inputs: readonly GpuBuffer[]): GPUBindGroup {
    let node = this.roots.get(compiled.layoutKey);
    if (!node) this.roots.set(compiled.layoutKey, (node = {}));
    node = child(node, slot.id);
    for (const b of outputs) node = child(node, b.id);
    for (const b of inputs) node = child(node, b.id);
    if (node.group) return node.group;
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: slot.arena.buffer, offset: slot.offset, size: compiled.uniformSize } },
    ];
    let binding = 1;
    for (const b of [...outputs, ...inputs]) entries.push({ binding: binding++, resource: resource(b) });
    const group = this.device.createBindGroup({ layout: compiled.layout, entries });
    if (this.count >= MAX_BIND_GROUPS_CACHED) {
      // Dropping the cache keeps only the group being returned.
      this.clear();
      return group;
    }
    node.group = group;
    this.count++;
    this.stats.bindGroupsCreated++;
    return group;
  }

  /** Forgets every group (their buffers or uniform slots are being reused). */
  clear(): void {
    this.roots = new Map();
    this.count = 0;
  }
}

/** A whole buffer, or a range of a slab (`buffer-pool.ts`). */
function resource(b: GpuBuffer): GPUBufferBinding {
  return b.offset === undefined ? { buffer: b.buffer } : { buffer: b.buffer, offset: b.offset, size: b.size };
}

function child(node: BindGroupNode, id: number): BindGroupNode {
  const next = node.next ?? (node.next = new Map());
  let c = next.get(id);
  if (!c) next.set(id, (c = {}));
  return c;
}
