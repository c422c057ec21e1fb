// Activation checkpointing per decoder layer: the gradients equal those of the plain graph (fp32,
// within 1e-6), and a training step's peak memory, measured as the bench's getrusage high-water
// mark in fresh processes, is lower.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type LlamaConfig, Model } from '../src/index.js';
import { pkgRoot, randomTokens, tinyConfig, tinyGemma2 } from './helpers.js';

const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});

const gemma2 = tinyGemma2({ attnLogitSoftcapping: 2, finalLogitSoftcapping: 4 });
const qwen2 = tinyConfig({ architecture: 'Qwen2ForCausalLM', attentionBias: true, tieWordEmbeddings: true });

// One backward of every output score() has (log-probs, KL to a reference, the three poolings,
// meanUnmasked bringing the padding mask into the checkpointed layers).
async function gradsOf(cfg: LlamaConfig, checkpointing: boolean, threads: number): Promise<Float32Array> {
  const m = Model.init(cfg, { seed: 12, std: 0.2, threads, activationCheckpointing: checkpointing });
  const ref = Model.init(cfg, { seed: 13, std: 0.2, threads });
  models.push(m, ref);
  const seqs = [9, 14, 5, 12, 7].map((L, i) => randomTokens(40 + i, L, cfg.vocabSize));
  const n = seqs.length;
  const D = cfg.hiddenSize;
  const r = await m.score(
    { sequences: seqs, promptLengths: [3, 4, 1, 6, 2] },
    { grad: true, reference: ref, pooling: ['last', 'mean', 'meanUnmasked'] },
  );
  const h = (k: number) => Float32Array.from({ length: n * D }, (_, i) => Math.sin(0.7 * i + k));
  await m.backward(r.handle!, {
    sumLogp: Array.from({ length: n }, (_, i) => 1 + i / 10),
    kl: Array.from({ length: n }, (_, i) => 0.5 - i / 10),
    lastHidden: h(1),
    meanHidden: h(2),
    meanUnmaskedHidden: h(3),
  });
  return Float32Array.from(m.gradBuffer());
}

describe('activation checkpointing', () => {
  it.each([
    ['Llama (GQA)', tinyConfig(), 2],
    ['Qwen2 (bias, tied)', qwen2, 1],
    ['Gemma-2 (sliding window, soft-capping)', gemma2, 2],
  ])('%s: gradients equal the non-checkpointed ones within 1e-6 (fp32)', async (_n, cfg, threads) => {
    const plain = await gradsOf(cfg, false, threads);
    const ckpt = await gradsOf(cfg, true, threads);
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < plain.length; i++) {
      worst = Math.max(worst, Math.abs(plain[i]! - ckpt[i]!));
      scale = Math.max(scale, Math.abs(plain[i]!));
    }
    expect(scale).toBeGreaterThan(0.1); // the gradients are not trivially zero
    expect(worst).toBeLessThanOrEqual(1e-6 * Math.max(1, scale));
  });

  it('can be switched per model and leaves no-grad scoring unchanged', async () => {
    const m = Model.init(tinyConfig(), { seed: 3, threads: 2 });
    models.push(m);
    const batch = { sequences: [randomTokens(1, 20, 64)], promptLengths: [5] };
    const a = await m.score(batch);
    m.setActivationCheckpointing(true);
    const b = await m.score(batch);
    const c = await m.score(batch, { grad: true });
    m.release(c.handle!);
    expect(b.sumLogp[0]).toBe(a.sumLogp[0]);
    expect(c.sumLogp[0]).toBe(a.sumLogp[0]);
  });

  // The bench (dist/bench-cli.js, built by `npm run build`) in two fresh processes, config S with 4
  // pairs: the step's memory is the rise of the process's peak RSS over the steps.
  const cli = join(pkgRoot, 'dist/bench-cli.js');
  it.skipIf(!existsSync(cli))('a config-S training step peaks lower with checkpointing', () => {
    const run = (extra: string[]) => {
      const r = spawnSync(
        process.execPath,
        [cli, '--pairs', '4', '--threads', '2', '--steps', '1', '--json', ...extra],
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
      const last = r.stdout.trim().split('\n').pop()!;
      return JSON.parse(last) as { stepMemoryBytes: number; activationCheckpointing: boolean };
    };
    const plain = run([]);
    const ckpt = run(['--checkpointing']);
    expect(ckpt.activationCheckpointing).toBe(true);
    console.log(
      `step memory: plain ${(plain.stepMemoryBytes / 2 ** 20).toFixed(0)} MiB, checkpointed ${(ckpt.stepMemoryBytes / 2 ** 20).toFixed(0)} MiB`,
    );
    expect(ckpt.stepMemoryBytes).toBeLessThan(0.85 * plain.stepMemoryBytes);
  });
});
