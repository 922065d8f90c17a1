/** max|a − b| / max|b| (max|a − b| when b is all zeros; Infinity on a length mismatch or NaN). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den === 0 ? num : num / den;
}
