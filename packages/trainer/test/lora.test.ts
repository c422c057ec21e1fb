// Training with LoRA adapters: config, reference = base, adapter-only optimizer state and
// checkpoints, bit-identical resume with seeded dropout, merged and PEFT exports.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LORA_TARGET_MODULES, Model, toHfConfig } from '@mpo/engine';
import { LORA_TARGET_MODULES as SPEC_TARGETS } from '@mpo/queue';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  latestCheckpoint,
  loraParameterCount,
  modelShape,
  parseTrainConfig,
  runTraining,
} from '../src/index.js';
import { byteEncoders, tinyMpoConfig, tmp } from './helpers.js';

const LORA = {
  rank: 4,
  alpha: 8,
  dropout: 0.1,
  targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
};
const config = (out: string, extra: Record<string, unknown> = {}) =>
  tinyMpoConfig(out, {
    referenceCache: join(out, 'refcache'),
    training: {
      batchSize: 4,
      microBatchSize: 2,
      learningRate: 1e-2,
      maxSteps: 4,
      checkpointEvery: 2,
      seed: 5,
    },
    lora: LORA,
    ...extra,
  });

describe('lora config', () => {
  it("fills PEFT's LoraConfig defaults (r 8, lora_alpha 8, lora_dropout 0; q_proj/v_proj for llama and qwen2)", () => {
    // peft/tuners/lora/config.py (r=8, lora_alpha=8, lora_dropout=0.0) and peft/utils/constants.py
    // TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["llama"] = ["q_proj", "v_proj"].
    const c = parseTrainConfig(config('/tmp/x', { lora: {} }));
    expect(c.lora).toEqual({ rank: 8, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] });
    expect(parseTrainConfig(config('/tmp/x', { lora: undefined })).lora).toBeUndefined();
  });

  it('lists every bad field', () => {
    let err: ConfigError | undefined;
    try {
      parseTrainConfig(
        config('/tmp/x', {
          lora: { rank: 0, alpha: -1, dropout: 1, targetModules: ['q_proj', 'qkv'], r: 3 },
        }),
      );
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.problems.map((p) => p.path).sort()).toEqual(
      ['lora.alpha', 'lora.dropout', 'lora.r', 'lora.rank', 'lora.targetModules[1]'].sort(),
    );
  });

  it("mpo plan's LoRA parameter count is the engine's adapter count", () => {
    const init = parseTrainConfig(config('/tmp/x')).model as { init: Record<string, unknown> };
    const engineCfg = init.init as never;
    for (const targets of [['q_proj', 'v_proj'], [...LORA_TARGET_MODULES], ['o_proj', 'down_proj']]) {
      const m = Model.init(engineCfg, { seed: 1, threads: 1 });
      m.enableLora({ rank: 3, alpha: 3, targetModules: targets });
      const shape = modelShape(toHfConfig(engineCfg));
      expect(loraParameterCount(shape, 3, targets), targets.join()).toBe(m.numParameters);
      m.dispose();
    }
    expect(() => loraParameterCount(modelShape(toHfConfig(engineCfg)), 3, ['qkv'])).toThrow(
      /unknown LoRA target/,
    );
  });

  it('run specs accept the same target module names as the engine', () => {
    expect([...SPEC_TARGETS]).toEqual([...LORA_TARGET_MODULES]);
  });
});

describe('training with LoRA', () => {
  it('reference = base, optimizer over adapters only, checkpoints hold adapters, exports merged + PEFT', async () => {
    // A full fine-tuning run of the same base fills the reference cache: the LoRA run must hit it,
    // i.e. its RG_d and retain hidden states come from the base weights.
    const out = tmp('lora');
    const full = await runTraining(
      parseTrainConfig(
        config(join(out, 'full'), {
          lora: undefined,
          referenceCache: join(out, 'ref'),
          training: { batchSize: 4, microBatchSize: 2, maxSteps: 1, seed: 5 },
        }),
      ),
      { encoders: byteEncoders },
    );
    expect(full.referenceCacheHit).toBe(false);
    const dir = join(out, 'lora');
    const r = await runTraining(parseTrainConfig(config(dir, { referenceCache: join(out, 'ref') })), {
      encoders: byteEncoders,
    });
    expect(r.referenceCacheHit).toBe(true);
    const m = r.model as unknown as Model;
    const layers = 2;
    const perLayer = 4 * (32 + 32) * 2 + 4 * (32 + 16) * 2 + 4 * (32 + 64) * 3; // r·(in+out): q,o ; k,v ; gate,up,down
    expect(m.numParameters).toBe(layers * perLayer);
    const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4]);
    for (const l of lines) expect(Number.isFinite(l.loss) && l.gradNorm > 0).toBe(true);

    // Checkpoint: the PEFT adapter files and AdamW moments of the adapters only (2 x fp32 each).
    const ck = latestCheckpoint(dir)!;
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'optimizer.bin'])
      expect(existsSync(join(ck.dir, f)), f).toBe(true);
    expect(existsSync(join(ck.dir, 'model.safetensors'))).toBe(false);
    const opt = statSync(join(ck.dir, 'optimizer.bin')).size;
    expect(opt).toBeGreaterThanOrEqual(8 * m.numParameters);
    expect(opt).toBeLessThan(8 * m.numParameters + 1024);

    // final/: merged weights, an ordinary HF folder that scores as base + adapters.
    const merged = await Model.load(r.finalDir!, { threads: 1 });
    const batch = {
      sequences: [
        [256, 72, 105, 10, 79, 107, 257],
        [256, 65, 10, 66, 67, 68, 69, 257],
      ],
      promptLengths: [4, 3],
    };
    const want = await m.score(batch, { pooling: ['last'] });
    const got = await merged.score(batch, { pooling: ['last'] });
    for (let i = 0; i < 2; i++) expect(Math.abs(got.sumLogp[i]! - want.sumLogp[i]!)).toBeLessThan(1e-4);
    // adapter/: PEFT files that, on the base, give the same model again.
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter', 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.1,
      target_modules: LORA.targetModules,
    });
    const base = Model.init(parseTrainConfig(config(dir)).model.init as never, { seed: 3, threads: 1 });
    await base.loadAdapter(join(dir, 'adapter'));
    expect(base.weightsHash()).toBe(m.weightsHash());
    expect(Array.from((await base.score(batch)).sumLogp)).toEqual(Array.from(want.sumLogp));
    // The base itself never moved: adapters off = the run's initial model.
    const init = Model.init(parseTrainConfig(config(dir)).model.init as never, { seed: 3, threads: 1 });
    expect(Array.from((await m.score(batch, { adapters: false })).sumLogp)).toEqual(
      Array.from((await init.score(batch)).sumLogp),
    );
    for (const x of [merged, base, init]) x.dispose();
  });

  it('resumes bit-identically (seeded dropout) from an adapter checkpoint', async () => {
    const out = tmp('lora-resume');
    const straight = await runTraining(parseTrainConfig(config(join(out, 'a'))), { encoders: byteEncoders });
    let steps = 0;
    const cut = await runTraining(parseTrainConfig(config(join(out, 'b'))), {
      encoders: byteEncoders,
      // Polled during a step, after the previous step's onStep: stops after step 3 of 4.
      hooks: { onStep: () => void steps++, shouldStop: () => steps >= 2 },
    });
    expect(cut.stopped).toBe(true);
    const resumed = await runTraining(parseTrainConfig(config(join(out, 'b'))), { encoders: byteEncoders });
    expect(resumed.resumedFrom).toBe(3);
    expect(resumed.model.weightsHash()).toBe(straight.model.weightsHash());
  });

  it('a different lora config cannot resume the run', async () => {
    const out = tmp('lora-hash');
    let steps = 0;
    await runTraining(parseTrainConfig(config(out)), {
      encoders: byteEncoders,
      hooks: { onStep: () => void steps++, shouldStop: () => steps >= 2 },
    });
    await expect(
      runTraining(parseTrainConfig(config(out, { lora: { ...LORA, rank: 2 } })), { encoders: byteEncoders }),
    ).rejects.toThrow(/different training config/);
  });
});
