/**
 * Kernel parameters in content-addressed uniform slots: identical parameters (the common case in any loop)
 * reuse one slot, which lets bind groups be static (no dynamic offsets). Slots live in a few large arenas
 * written to the GPU once per submit (the dirty range only).
 */
import { BufferUsage } from '../gpu-constants.js';

export interface UniformSlot {
  readonly id: number;
  readonly arena: Arena;
  readonly offset: number;
  readonly words: number;
}

interface Arena {
  readonly buffer: GPUBuffer;
  readonly words: Uint32Array<ArrayBuffer>;
  used: number;
  dirtyFrom: number;
  dirtyTo: number;
}

const MAX_ARENAS = 4;

export class UniformArena {
  /** Where a dispatch packs its parameter words before asking for their slot. */
  readonly scratch = new Uint32Array(1024);
  private readonly arenas: Arena[] = [];
  private slots = new Map<number, UniformSlot | UniformSlot[]>();
  private nextSlotId = 1;

  /**
   * `onFull` runs when every slot is taken: it must submit the work that uses them (and drop whatever
   * refers to them) before they are overwritten. `stats.uniformSlots` counts the slots written.
   */
  constructor(
    private readonly device: GPUDevice,
    private readonly slotAlign: number,
    private readonly arenaBytes: number,
    private readonly stats: { uniformSlots: number },
    private readonly onFull: () => void,
  ) {}

  /** The slot holding exactly these parameter words (`scratch[0, words)`), written once per batch at most. */
  slot(words: number): UniformSlot {
    const w = this.scratch;
    let h = 0x811c9dc5 ^ words;
    for (let i = 0; i < words; i++) h = Math.imul(h ^ w[i]!, 0x01000193);
    const found = this.slots.get(h);
    if (found) {
      const list = Array.isArray(found) ? found : [found];
      for (const slot of list) if (slot.words === words && this.sameWords(slot, words)) return slot;
    }
    const slot = this.allocSlot(words);
    slot.arena.words.set(w.subarray(0, words), slot.offset / 4);
    slot.arena.dirtyFrom = Math.min(slot.arena.dirtyFrom, slot.offset);
    slot.arena.dirtyTo = Math.max(slot.arena.dirtyTo, slot.offset + words * 4);
    if (!found) this.slots.set(h, slot);
    else if (Array.isArray(found)) found.push(slot);
    else this.slots.set(h, [found, slot]);
    this.stats.uniformSlots++;
    return slot;
  }

  private sameWords(slot: UniformSlot, words: number): boolean {
    const a = slot.arena.words;
    const base = slot.offset / 4;
    for (let i = 0; i < words; i++) if (a[base + i] !== this.scratch[i]) return false;
    return true;
  }

  private allocSlot(words: number): UniformSlot {
    const bytes = Math.ceil((words * 4) / this.slotAlign) * this.slotAlign;
    let arena = this.arenas.find((a) => a.used + bytes <= this.arenaBytes);
    if (!arena && this.arenas.length < MAX_ARENAS) {
      const buffer = this.device.createBuffer({
        label: 'dora uniforms',
        size: this.arenaBytes,
        usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST,
      });
      arena = { buffer, words: new Uint32Array(this.arenaBytes / 4), used: 0, dirtyFrom: this.arenaBytes, dirtyTo: 0 };
      this.arenas.push(arena);
    }
    if (!arena) {
      // Every slot is taken (parameters that change on every call): submit what uses them, then recycle.
      // Later queue writes are ordered after the submitted work, so overwriting the slots is safe.
      this.onFull();
      this.slots.clear();
      this.stats.uniformSlots = 0;
      for (const a of this.arenas) a.used = 0;
      arena = this.arenas[0]!;
    }
    const slot = { id: this.nextSlotId++, arena, offset: arena.used, words };
    arena.used += bytes;
    return slot;
  }

  /** Writes the slots filled since the last call (ordered before the next submit). */
  write(): void {
    for (const a of this.arenas) {
      if (a.dirtyTo <= a.dirtyFrom) continue;
      this.device.queue.writeBuffer(a.buffer, a.dirtyFrom, a.words, a.dirtyFrom / 4, (a.dirtyTo - a.dirtyFrom) / 4);
      a.dirtyFrom = this.arenaBytes;
      a.dirtyTo = 0;
    }
  }

  destroy(): void {
    for (const a of this.arenas) a.buffer.destroy();
    this.arenas.length = 0;
  }
}
