/**
 * Learning rate at `step` (0-based) of `totalSteps`: linear warmup over the
 * first ceil(warmupRatio·total) steps, then cosine decay to zero — the
 * schedule of transformers' get_cosine_schedule_with_warmup, which the MPO
 * paper's LLaMA-Factory runs use with warmup_ratio 0.1.
 *
 *   warmup:  lr · (step+1)/W             (step < W; +1 so the first update is not a no-op)
 *   decay:   lr · ½(1 + cos(π · p)),     p = (step − W)/(total − W)
 */
export function cosineWithWarmup(
  step: number,
  totalSteps: number,
  baseLr: number,
  warmupRatio = 0.1,
): number {
  const warmup = Math.ceil(warmupRatio * totalSteps);
  if (step < warmup) return (baseLr * (step + 1)) / warmup;
  const span = Math.max(1, totalSteps - warmup);
  const progress = Math.min(1, (step - warmup) / span);
  return baseLr * 0.5 * (1 + Math.cos(Math.PI * progress));
}
