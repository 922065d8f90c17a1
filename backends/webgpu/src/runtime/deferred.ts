/**
 * Deferred dispatches let kernels fuse lazily: a matmul can be held back until something reads its output,
 * so a following `doraCompose` or `weightNorm` over the same operands can be folded into it. Reordering is
 * safe because, within a batch, every buffer has a single writer: outputs are fresh pool buffers and
 * released buffers are not reused before the next submit. A deferred op is emitted before any dispatch
 * that reads what it writes, and before any submit or readback.
 */
import type { GpuBuffer } from '../buffer-pool.js';

/** A dispatch (or a few) held back so that a later kernel may fold itself into it. */
export interface PendingOp {
  readonly kind: string;
  /** Buffers the op writes: a dispatch reading one of them forces the op out first. */
  readonly writes: readonly GpuBuffer[];
  /** Buffers the op reads (checked against earlier deferred ops when it is deferred). */
  readonly reads: readonly GpuBuffer[];
  /** Records the op's dispatches. */
  emit(): void;
}

const MAX_PENDING = 4;

export class DeferredOps {
  private ops: PendingOp[] = [];

  constructor(private readonly stats: { fused: number }) {}

  get length(): number {
    return this.ops.length;
  }

  /** Holds `op` back; earlier deferred ops whose outputs it reads are emitted first, so none depends on another. */
  defer(op: PendingOp): void {
    this.emitWritersOf(op.reads);
    this.ops.push(op);
    if (this.ops.length > MAX_PENDING) this.ops.shift()!.emit();
  }

  /** Whether a deferred op that `match` accepts exists. */
  has(match: (op: PendingOp) => boolean): boolean {
    return this.ops.some(match);
  }

  /** Removes and returns the first deferred op `match` accepts: the caller fuses it into its own dispatch. */
  take(match: (op: PendingOp) => boolean): PendingOp | null {
    const i = this.ops.findIndex(match);
    if (i < 0) return null;
    this.stats.fused++;
    return this.ops.splice(i, 1)[0]!;
  }

  /** Emits every deferred op that writes one of `buffers`. */
  emitWritersOf(buffers: readonly GpuBuffer[]): void {
    if (this.ops.length === 0) return;
    for (let i = 0; i < this.ops.length; ) {
      const op = this.ops[i]!;
      if (op.writes.some((b) => buffers.includes(b))) {
        this.ops.splice(i, 1);
        op.emit();
      } else {
        i++;
      }
    }
  }

  emitAll(): void {
    while (this.ops.length > 0) this.ops.shift()!.emit();
  }

  /** Whether a deferred op reads or writes `b` (so it cannot be recycled yet); undefined when none is deferred. */
  usesBuffer(): ((b: GpuBuffer) => boolean) | undefined {
    const ops = this.ops;
    return ops.length ? (b) => ops.some((op) => op.reads.includes(b) || op.writes.includes(b)) : undefined;
  }

  clear(): void {
    this.ops = [];
  }
}
