/** Matmul cases as data: operand shapes as stored, transpose flags, and why each exists. */
export interface MatmulCase {
  readonly id: string;
  readonly title: string;
  readonly a: readonly number[];
  readonly b: readonly number[];
  readonly transposeA?: boolean;
  readonly transposeB?: boolean;
  /** Values of a/b: normal draws unless given. */
  readonly seed: number;
}

const FLAGS = [
  ['nn', false, false],
  ['nt', false, true],
  ['tn', true, false],
  ['tt', true, true],
] as const;

/** Stored shape of an operand that is used as rows×cols, transposed or not. */
const stored = (rows: number, cols: number, t: boolean, batch: readonly number[] = []) => [...batch, ...(t ? [cols, rows] : [rows, cols])];

function allFlags(
  id: string,
  title: string,
  m: number,
  k: number,
  n: number,
  seed: number,
  batchA: number[] = [],
  batchB: number[] = [],
): MatmulCase[] {
  return FLAGS.map(([flag, ta, tb], i) => ({
    id: `${id}.${flag}`,
    title: `${title} (${flag === 'nn' ? 'no transposes' : flag === 'nt' ? 'bᵀ' : flag === 'tn' ? 'aᵀ' : 'aᵀ and bᵀ'})`,
    a: stored(m, k, ta, batchA),
    b: stored(k, n, tb, batchB),
    transposeA: ta,
    transposeB: tb,
    seed: seed + i,
  }));
}

/** Tier 1: checked against a float64 host matmul. */
export const MATMUL_CASES: readonly MatmulCase[] = [
  ...allFlags('matmul.odd', '5×7 · 7×3, sizes that are not multiples of 4', 5, 7, 3, 10),
  ...allFlags('matmul.gemv', 'M = 1 (a row vector times a matrix), K = 300', 1, 300, 37, 20),
  ...allFlags('matmul.n1', 'N = 1 (a matrix times a column)', 29, 13, 1, 30),
  ...allFlags('matmul.k-over-tile', 'K = 300, larger than a 256 tile', 17, 300, 13, 40),
  ...allFlags('matmul.blocks', '130×261 · 261×67, crossing register and cache block edges', 130, 261, 67, 50),
  { id: 'matmul.wide', title: '3×40 · 40×1100: N larger than an N block', a: [3, 40], b: [40, 1100], seed: 60 },
  { id: 'matmul.square-1', title: '1×1 · 1×1', a: [1, 1], b: [1, 1], seed: 61 },
  ...allFlags('matmul.batch-broadcast', '[2,1,5,7] · [3,7,6] → [2,3,5,6]: leading axes broadcast both ways', 5, 7, 6, 70, [2, 1], [3]),
  {
    id: 'matmul.batch-shared-b',
    title: '[2,3,5,7] · [7,4]: one b for every batch (a Linear weight)',
    a: [2, 3, 5, 7],
    b: [7, 4],
    seed: 80,
  },
  { id: 'matmul.batch-shared-a', title: '[5,7] · [4,7,3]: one a for every batch', a: [5, 7], b: [4, 7, 3], seed: 81 },
  { id: 'matmul.batch-same', title: '[3,4,9] · [3,9,2]: equal batches', a: [3, 4, 9], b: [3, 9, 2], seed: 82 },
];

/** Tier 2: random inputs against the reference backend. */
export const MATMUL_REFERENCE_CASES: readonly MatmulCase[] = [
  ...allFlags('matmul', '33×70 · 70×47', 33, 70, 47, 100),
  ...allFlags('matmul.gemv', '1×500 · 500×64', 1, 500, 64, 110),
  ...allFlags('matmul.batched', '[2,3,17,19] · [3,19,9]', 17, 19, 9, 120, [2, 3], [3]),
];
