import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAlpacaJson, loadMpoJson, splitByGroup, tokenizeSft } from '@mpo/data';
import { ByteTokenizer, CONFIG_S, type LlamaConfig, Model } from '@mpo/engine';
import {
  chatEncoders,
  resolveBuiltinData,
  type StepRecord,
  type TrainExample,
  type TrainingParams,
} from '@mpo/trainer';
import { safetensorsSha256, testbedTraining, trainTestbedSft } from './testbed-train.js';
import { ALPACA_HELDOUT, alpacaHeldOut } from './utility.js';

/** Engine "config S" with the byte vocabulary, a 1e-5 norm epsilon and 256 positions. */
export const TESTBED_CONFIG: LlamaConfig = {
  ...CONFIG_S,
  vocabSize: 264,
  rmsNormEps: 1e-5,
  maxPositionEmbeddings: 256,
  bosTokenId: 256,
  eosTokenId: 257,
  padTokenId: 258,
};

export interface TestbedOptions {
  seed: number;
  out: string;
  threads?: number;
  epochs?: number;
  cutoff?: number;
  /** Alpaca examples per language (en, zh) from the training side of the split. */
  alpacaPerLanguage?: number;
  /** MPO data file (English-dominant). */
  mpoPath?: string;
  /** Held-out share of MPO prompt groups: the same split training runs use by default (0.1, seed 0). */
  heldOut?: number;
  splitSeed?: number;
  training?: Partial<TrainingParams>;
  onStep?(r: StepRecord): void;
}

export interface TestbedResult {
  dir: string;
  examples: { english: number; target: number; alpaca: number };
  weightsHash: string;
  steps: number;
}

const sftExample = (id: string, lang: string, prompt: number[], response: number[]): TrainExample => ({
  id,
  lang,
  target: { prompt, chosen: response, rejected: response },
});

export function testbedExamples(opts: TestbedOptions): {
  examples: TrainExample[];
  counts: TestbedResult['examples'];
  heldOutGroups: string[];
} {
  const mpoPath = opts.mpoPath ?? resolveBuiltinData('builtin:mpo-llama').path;
  const cutoff = opts.cutoff ?? 192;
  const enc = chatEncoders(new ByteTokenizer(264), 'byte');
  const mpo = loadMpoJson(mpoPath);
  const split = splitByGroup(mpo.rows, { heldOutFraction: opts.heldOut ?? 0.1, seed: opts.splitSeed ?? 0 });
  // Each row's source pair is the same English prompt for all six target
  // languages of its group, so English appears as often as the targets together.
  const asSft = split.train.flatMap((r) => [
    {
      id: `${r.id}:en`,
      lang: r.dominantLang,
      group: r.group,
      prompt: r.source.prompt,
      response: r.source.chosen,
      history: [],
    },
    {
      id: `${r.id}:${r.lang}`,
      lang: r.lang,
      group: r.group,
      prompt: r.target.prompt,
      response: r.target.rejected,
      history: [],
    },
  ]);
  const mpoTok = tokenizeSft(asSft, { ...enc, cutoffLen: cutoff });
  const english = mpoTok.rows.filter((r) => r.lang === mpo.dominantLanguage);
  const target = mpoTok.rows.filter((r) => r.lang !== mpo.dominantLanguage);

  const alpaca = ['en', 'zh'].flatMap((lang) => {
    const path = resolveBuiltinData(`builtin:alpaca-${lang}`).path;
    const held = new Set(alpacaHeldOut(path, ALPACA_HELDOUT).heldOutIds);
    const rows = loadAlpacaJson(path).rows.filter((r) => !held.has(r.id));
    return tokenizeSft(rows.slice(0, opts.alpacaPerLanguage ?? 600), { ...enc, cutoffLen: cutoff }).rows;
  });
  const examples = [...english, ...target, ...alpaca].map((r) =>
    sftExample(r.id, r.lang, r.promptIds, r.responseIds),
  );
  return {
    examples,
    counts: { english: english.length, target: target.length, alpaca: alpaca.length },
    heldOutGroups: split.heldOutGroups,
  };
}

export async function buildTestbed(opts: TestbedOptions): Promise<TestbedResult> {
  const threads = opts.threads ?? 2;
  const { examples, counts, heldOutGroups } = testbedExamples(opts);
  const training = testbedTraining(
    opts.seed,
    { epochs: opts.epochs ?? 3, batchSize: 16, microBatchSize: 8, warmupRatio: 0.1 },
    opts.training,
  );
  const model = Model.init(TESTBED_CONFIG, { seed: opts.seed, threads });
  const work = join(opts.out, '.build');
  const run = { work, threads, identity: { seed: opts.seed, training, counts }, onStep: opts.onStep };
  const result = await trainTestbedSft(model, examples, training, run);
  mkdirSync(opts.out, { recursive: true });
  await result.model.save(opts.out);
  writeFileSync(
    join(opts.out, 'tokenizer_config.json'),
    `${JSON.stringify({ tokenizer_class: 'ByteTokenizer', chat_template: 'byte' }, null, 2)}\n`,
  );
  rmSync(work, { recursive: true, force: true });
  const weightsHash = result.model.weightsHash();
  const fileHash = safetensorsSha256(opts.out);
  writeFileSync(
    join(opts.out, 'testbed.json'),
    `${JSON.stringify(
      {
        id: 'builtin:tiny-multilingual',
        synthetic: true,
        rebuild: `mpo testbed build --seed ${opts.seed} --threads ${threads}`,
        seed: opts.seed,
        threads,
        training,
        examples: counts,
        heldOutGroups,
        weightsHash,
        modelSafetensorsSha256: fileHash,
      },
      null,
      2,
    )}\n`,
  );
  return { dir: opts.out, examples: counts, weightsHash, steps: result.step };
}
