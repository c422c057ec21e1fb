// Numerically stable scalar helpers, all in float64.

/** log σ(x) = −log(1 + e^{−x}), without overflow for large |x|. */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/** σ(x) = 1 / (1 + e^{−x}), without overflow for large |x|. Also d/dx log σ(x) = σ(−x). */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/**
 * log(1 − e^x) for x < 0 (Mächler 2012): log(−expm1(x)) near 0 where 1 − e^x loses digits,
 * log1p(−e^x) further out where e^x is small.
 */
export function log1mexp(x: number): number {
  return x > -Math.LN2 ? Math.log(-Math.expm1(x)) : Math.log1p(-Math.exp(x));
}

/** d/dx log(1 − e^x) = −e^x / (1 − e^x) = −1 / expm1(−x). */
export function dlog1mexp(x: number): number {
  return -1 / Math.expm1(-x);
}

export function mean(xs: ArrayLike<number>): number {
  if (xs.length === 0) return 0;
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s / xs.length;
}
