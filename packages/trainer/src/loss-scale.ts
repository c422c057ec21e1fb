// Dynamic loss scaling for fp16 training (the arithmetic of torch.cuda.amp.GradScaler): the upstream
// gradients handed to backward() are multiplied by `scale` so that small fp16 gradients do not flush
// to zero; the optimizer step divides by it again (engine step's gradScale). A step whose gradients
// overflowed (inf/NaN anywhere after the all-reduce, so every rank agrees) is skipped and the scale
// multiplied by backoffFactor; after growthInterval finite steps in a row it is multiplied by
// growthFactor. Defaults are GradScaler's: init_scale 2^16, growth_factor 2, backoff_factor 0.5,
// growth_interval 2000.
import type { LossScalerState } from './checkpoint.js';

export interface LossScaling {
  initScale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
}

export const LOSS_SCALING_DEFAULTS: LossScaling = {
  initScale: 2 ** 16,
  growthFactor: 2,
  backoffFactor: 0.5,
  growthInterval: 2000,
};

export class DynamicLossScaler {
  /** The scale the next step's gradients are multiplied by. */
  scale: number;
  /** Finite steps since the last overflow or growth. */
  goodSteps = 0;
  /** Steps skipped for overflow so far. */
  skipped = 0;

  constructor(
    readonly settings: LossScaling = LOSS_SCALING_DEFAULTS,
    resumed?: LossScalerState,
  ) {
    this.scale = resumed?.scale ?? settings.initScale;
    this.goodSteps = resumed?.goodSteps ?? 0;
    this.skipped = resumed?.skipped ?? 0;
  }

  /** What a checkpoint keeps (trainer-state.json). */
  state(): LossScalerState {
    return { scale: this.scale, goodSteps: this.goodSteps, skipped: this.skipped };
  }

  /** After a step: `finite` = the gradient norm was finite (the update happened). */
  update(finite: boolean): void {
    const s = this.settings;
    if (!finite) {
      this.scale *= s.backoffFactor;
      this.goodSteps = 0;
      this.skipped += 1;
      return;
    }
    this.goodSteps += 1;
    if (this.goodSteps >= s.growthInterval) {
      this.scale *= s.growthFactor;
      this.goodSteps = 0;
    }
  }
}
