// Aggregation over seeds for `mpo reproduce`: mean, sample standard deviation and Pearson's correlation.

export interface Summary {
  mean: number;
  /** Sample standard deviation (n − 1 in the denominator); null for fewer than two values. */
  sd: number | null;
  n: number;
}

/** mean = Σx / n;  sd = sqrt(Σ(x − mean)² / (n − 1)). Non-finite values are left out (and not counted). */
export function summarize(values: readonly number[]): Summary | null {
  const xs = values.filter(Number.isFinite);
  const n = xs.length;
  if (n === 0) return null;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const sd = n < 2 ? null : Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  return { mean, sd, n };
}

/**
 * Pearson's r = Σ(x − x̄)(y − ȳ) / sqrt(Σ(x − x̄)² · Σ(y − ȳ)²) over paired values; null when fewer than
 * three pairs or when either side is constant (r is undefined then).
 */
export function pearson(xs: readonly number[], ys: readonly number[]): number | null {
  if (xs.length !== ys.length)
    throw new Error(`pearson: ${xs.length} x values against ${ys.length} y values`);
  if (xs.length < 3) return null;
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < xs.length; i++) {
    const dx = xs[i]! - mx;
    const dy = ys[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return null;
  return sxy / Math.sqrt(sxx * syy);
}

/** "1.234 ± 0.056" (or "1.234" for one value, "–" for none); `scale` multiplies both (100 for percentages). */
export function formatSummary(s: Summary | null, digits: number, scale = 1): string {
  if (!s) return '–';
  const m = (s.mean * scale).toFixed(digits);
  return s.sd === null ? m : `${m} ± ${(s.sd * scale).toFixed(digits)}`;
}
