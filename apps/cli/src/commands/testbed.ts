import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILTIN_MODELS } from '@mpo/trainer';
import { CliError, ExitCode } from '../exit-codes.js';
import { numberFlag, optionalNumberFlag } from '../flags.js';
import { createProgress, createReporter, type Progress } from '../progress.js';
import { register } from '../registry.js';

const TESTBEDS = ['tiny-multilingual', 'tiny-multilingual-transfer'] as const;
type TestbedName = (typeof TESTBEDS)[number];

const usage = `mpo testbed build [--testbed NAME] [--seed N] [--init-seed N] [--out DIR] [--threads N] [--epochs N] [--scale X] [--max-steps N]
                  [--safety-shares A,B,C] [--alignments A,B,C]
                  [--unsafe-shares A,B,C] [--safety-by prompt|category] [--json]
mpo testbed measure [--testbed NAME] [--model DIR] [--items N] [--threads N] [--json]
                    [--transfer [--method dpo|mpo] [--target qac] [--learning-rate 5e-5] [--epochs 3]
                                [--harmless-pairs N] [--step-seed N]]

NAME is tiny-multilingual (default) or tiny-multilingual-transfer (docs/testbed.md).
build trains the testbed from its recipe: tiny-multilingual is a byte-level config-S Llama that refuses
harmful prompts in English and complies in the target languages; tiny-multilingual-transfer is a
word-level Llama over English and three synthetic sister languages with safety taught in English only.
Default --out is where the builtin id resolves (models/NAME). The same seed and thread count rebuild
the same bytes. --scale shrinks every row count of the transfer recipe (prototypes and tests).
--max-steps stops early (a smoke build: the model is not the committed testbed).
--init-seed (transfer testbed only) seeds the model's init and training order apart from --seed, which
keeps seeding the lexicon and the data: it varies the training run alone over the same languages.
--safety-shares and --alignments (transfer testbed only) override, per sister language (qaa,qab,qac), the
recipe's share of English harmful prompts also taught with their refusal in that language (0..1) and the
init cosine of its word embeddings to English (0..1): variants of the recipe, recorded in testbed.json.
--unsafe-shares likewise overrides the share of the MPO training prompt groups also given with their
harmful (compliant) answer in that language (0..1; never a prompt it is taught to refuse).
--safety-by category draws each language's safety prompts as whole MultiJail harm categories (a seeded
order of the categories) instead of single prompts (prompt, the default).
measure prints, per language of the transfer testbed, the held-out reward gap on harmful prompts and the
same gap on harmless ones, attack success, refusals of harmless prompts, perplexity and translation
accuracy. --transfer also runs the two transfer checks from the testbed (a --method step, default DPO, on
the English pairs only, and one on the --target sister language's pairs only, default the low-resource
qac; each --epochs over the 90 training prompt groups at --learning-rate) and prints each language's
change. With --method mpo only the target step runs: MPO's English-only step is its dominant side alone.
--harmless-pairs N adds N harmless English pairs to the English-only step (alpaca training prompts, their
answer chosen over a refusal): a safety step that teaches when to refuse, not only a refusal.
--step-seed seeds the steps' data order (default 1).`;

const intOption = (name: string, raw: string | undefined, min: number) =>
  numberFlag(name, raw ?? '', { integer: true, min });

/** A comma list of one number in [0, 1] per sister language, or undefined when the flag is absent. */
function perLanguage(name: string, raw: string | undefined): number[] | undefined {
  if (raw === undefined) return undefined;
  const xs = raw.split(',').map((x) => Number(x.trim()));
  if (xs.length !== 3 || xs.some((x) => !(x >= 0 && x <= 1)))
    throw new CliError(
      `--${name} must be three numbers in [0, 1], one per sister language (qaa,qab,qac), got '${raw}'`,
      ExitCode.usage,
    );
  return xs;
}

async function recipeOverrides(name: TestbedName, values: Record<string, unknown>) {
  const { SAFETY_DRAWS } = await import('@mpo/eval');
  const safetyShares = perLanguage('safety-shares', values['safety-shares'] as string | undefined);
  const alignments = perLanguage('alignments', values.alignments as string | undefined);
  const unsafeShares = perLanguage('unsafe-shares', values['unsafe-shares'] as string | undefined);
  const safetyBy = values['safety-by'] as string | undefined;
  if (safetyBy !== undefined && !(SAFETY_DRAWS as readonly string[]).includes(safetyBy))
    throw new CliError(
      `--safety-by must be one of ${SAFETY_DRAWS.join(', ')}, got '${safetyBy}'`,
      ExitCode.usage,
    );
  if ((safetyShares || alignments || unsafeShares || safetyBy) && name !== 'tiny-multilingual-transfer')
    throw new CliError(
      '--safety-shares, --alignments, --unsafe-shares and --safety-by apply to --testbed tiny-multilingual-transfer only',
      ExitCode.usage,
    );
  return {
    ...(safetyBy ? { safetyBy: safetyBy as (typeof SAFETY_DRAWS)[number] } : {}),
    ...(safetyShares ? { safetyShares } : {}),
    ...(alignments ? { alignments } : {}),
    ...(unsafeShares ? { unsafeShares } : {}),
  };
}

function testbedName(raw: string | undefined): TestbedName {
  const name = (raw ?? 'tiny-multilingual').replace(/^builtin:/, '');
  if (!(TESTBEDS as readonly string[]).includes(name))
    throw new CliError(`--testbed must be one of ${TESTBEDS.join(', ')}`, ExitCode.usage);
  return name as TestbedName;
}

/** Step events for --json and a progress bar for a terminal, as the build's training reports steps. */
function stepProgress(rep: ReturnType<typeof createReporter>, json: boolean | undefined) {
  let progress: Progress | null = null;
  const onStep = (s: {
    step: number;
    totalSteps: number;
    loss: number;
    lr: number;
    tokensPerSec: number;
  }) => {
    progress ??= createProgress({ label: 'testbed', total: s.totalSteps, unit: 'steps/s', json });
    rep.event({
      type: 'step',
      step: s.step,
      totalSteps: s.totalSteps,
      loss: s.loss,
      metrics: { lr: s.lr, tokensPerSec: s.tokensPerSec },
    });
    progress.update(s.step, `loss ${s.loss.toFixed(4)}  ${Math.round(s.tokensPerSec)} tok/s`);
  };
  return { onStep, finish: () => (progress as Progress | null)?.finish() };
}

async function build(rest: string[]): Promise<number> {
  const { values } = parseArgs({
    args: rest,
    options: {
      testbed: { type: 'string' },
      seed: { type: 'string', default: '1' },
      'init-seed': { type: 'string' },
      out: { type: 'string' },
      threads: { type: 'string', default: '2' },
      epochs: { type: 'string' },
      scale: { type: 'string', default: '1' },
      'max-steps': { type: 'string' },
      'safety-shares': { type: 'string' },
      alignments: { type: 'string' },
      'unsafe-shares': { type: 'string' },
      'safety-by': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const name = testbedName(values.testbed);
  const overrides = await recipeOverrides(name, values);
  const seed = intOption('seed', values.seed, 0);
  const initSeed =
    values['init-seed'] === undefined ? undefined : intOption('init-seed', values['init-seed'], 0);
  if (initSeed !== undefined && name !== 'tiny-multilingual-transfer')
    throw new CliError('--init-seed applies to --testbed tiny-multilingual-transfer only', ExitCode.usage);
  const threads = intOption('threads', values.threads, 1);
  const epochs = optionalNumberFlag('epochs', values.epochs, { integer: true, min: 1 });
  const maxSteps =
    values['max-steps'] === undefined ? undefined : intOption('max-steps', values['max-steps'], 1);
  const scale = Number(values.scale);
  if (!(scale > 0 && scale <= 1)) throw new CliError('--scale must be in (0, 1]', ExitCode.usage);
  const out = values.out ? resolve(values.out) : BUILTIN_MODELS[`builtin:${name}`]!();
  const { buildTestbed, buildTransferTestbed } = await import('@mpo/eval');
  const rep = createReporter(values.json);
  const { onStep, finish } = stepProgress(rep, values.json);
  const common = {
    seed,
    out,
    threads,
    onStep,
    ...(epochs ? { epochs } : {}),
    ...(maxSteps ? { training: { maxSteps } } : {}),
  };
  const r =
    name === 'tiny-multilingual'
      ? await buildTestbed(common)
      : await buildTransferTestbed({
          ...common,
          ...overrides,
          scale,
          ...(initSeed === undefined ? {} : { initSeed }),
        });
  finish();
  rep.done();
  const examples = 'examples' in r ? r.examples : r.counts;
  rep.event({ type: 'done', dir: r.dir, steps: r.steps, examples, weightsHash: r.weightsHash });
  if (rep.tty)
    process.stdout.write(
      `testbed written to ${r.dir} (${r.steps} steps, weights ${r.weightsHash.slice(0, 12)})\n`,
    );
  return ExitCode.ok;
}

const pct = (x: number) => (100 * x).toFixed(1);

async function measure(rest: string[]): Promise<number> {
  const { values } = parseArgs({
    args: rest,
    options: {
      testbed: { type: 'string', default: 'tiny-multilingual-transfer' },
      model: { type: 'string' },
      items: { type: 'string', default: '40' },
      threads: { type: 'string', default: '2' },
      transfer: { type: 'boolean', default: false },
      method: { type: 'string', default: 'dpo' },
      'learning-rate': { type: 'string', default: '5e-5' },
      epochs: { type: 'string', default: '3' },
      target: { type: 'string', default: 'qac' },
      'harmless-pairs': { type: 'string', default: '0' },
      'step-seed': { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
    },
  });
  if (testbedName(values.testbed) !== 'tiny-multilingual-transfer')
    throw new CliError('measure applies to --testbed tiny-multilingual-transfer', ExitCode.usage);
  const items = intOption('items', values.items, 1);
  const threads = intOption('threads', values.threads, 1);
  const testbedDir = BUILTIN_MODELS['builtin:tiny-multilingual-transfer']!();
  const model = values.model ? resolve(values.model) : testbedDir;
  const { measureTransfer, testbedFilesFor } = await import('@mpo/eval');
  if (values.transfer) return transferChecks(model, values, items, threads);
  for (const flag of ['harmless-pairs', 'step-seed'] as const)
    if (rest.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`)))
      throw new CliError(`--${flag} applies to --transfer`, ExitCode.usage);
  const rows = await measureTransfer(model, testbedFilesFor(model, testbedDir), {
    items,
    threads,
    translation: true,
  });
  if (values.json) process.stdout.write(`${JSON.stringify({ model, items, languages: rows })}\n`);
  else process.stdout.write(`${measuresTable(rows)}\n`);
  return ExitCode.ok;
}

/** The two transfer checks (an English-only step and a step on one sister language), printed as tables. */
async function transferChecks(
  model: string,
  values: Record<string, string | boolean | undefined>,
  items: number,
  threads: number,
): Promise<number> {
  const { SISTER_LANGUAGES, transferSteps } = await import('@mpo/eval');
  const target = values.target as string;
  const codes = SISTER_LANGUAGES.map((l) => l.code);
  if (!codes.includes(target))
    throw new CliError(`--target must be one of ${codes.join(', ')}, got '${target}'`, ExitCode.usage);
  const learningRate = numberFlag('learning-rate', values['learning-rate'] as string, { min: 1e-9, max: 1 });
  const epochs = intOption('epochs', values.epochs as string, 1);
  const harmlessPairs = intOption('harmless-pairs', values['harmless-pairs'] as string, 0);
  const stepSeed = intOption('step-seed', values['step-seed'] as string, 0);
  const method = values.method as string;
  const work = mkdtempSync(join(tmpdir(), 'mpo-transfer-steps-'));
  try {
    // An English-only MPO step has target pairs equal to its dominant pairs: every other method runs it.
    const r = await transferSteps(model, {
      items,
      threads,
      work,
      method,
      target,
      learningRate,
      epochs,
      englishStep: method !== 'mpo',
      harmlessPairs,
      stepSeed,
    });
    if (values.json)
      process.stdout.write(
        `${JSON.stringify({ model, items, learningRate, epochs, harmlessPairs, stepSeed, ...r })}\n`,
      );
    else {
      const sections = [`### Base\n\n${measuresTable(r.base)}`];
      for (const st of r.steps)
        sections.push(
          `### After ${st.method} on ${st.trainedOn.join(', ')} pairs only (${st.steps} steps)\n\n${measuresTable(st.measures)}\n\nChange from the base:\n\n${deltaTable(r.base, st.measures)}`,
        );
      process.stdout.write(`${sections.join('\n\n')}\n`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return ExitCode.ok;
}

type Measures = Awaited<ReturnType<typeof import('@mpo/eval').measureTransfer>>;

function measuresTable(rows: Measures): string {
  return [
    '| lang | RG harmful | RG harmful, data labels | RG harmless | RG same chosen, harmless | ASR % | harmless refused % | PPL | translation % |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.lang} | ${r.rg.toFixed(3)} | ${r.rgData.toFixed(3)} | ${r.rgHarmless.toFixed(3)} | ${r.rgSameChosen.toFixed(3)} | ${pct(r.asr)} | ${pct(r.refusalHarmless)} | ${r.ppl.toFixed(2)} | ${r.translation === undefined ? '–' : pct(r.translation)} |`,
    ),
  ].join('\n');
}

/** Per language: the change of each measure, harmful beside harmless. */
function deltaTable(base: Measures, after: Measures): string {
  const sign = (x: number, digits: number) => `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`;
  return [
    '| lang | Δ RG harmful | Δ RG same chosen, harmless | Δ RG harmful, data labels | Δ RG harmless | Δ logp chosen, harmful | Δ logp chosen, harmless | Δ ASR (pts) | Δ harmless refused (pts) | Δ PPL |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...after.map((a) => {
      const b = base.find((x) => x.lang === a.lang)!;
      // A gap's change split: how much rg's chosen texts gained after harmful and after harmless prompts.
      const refusal = `${sign(a.logp.chosen - b.logp.chosen, 3)} | ${sign(a.logp.chosenHarmless - b.logp.chosenHarmless, 3)}`;
      const d = (k: 'rg' | 'rgSameChosen' | 'rgData' | 'rgHarmless') => sign(a[k] - b[k], 3);
      return `| ${a.lang} | ${d('rg')} | ${d('rgSameChosen')} | ${d('rgData')} | ${d('rgHarmless')} | ${refusal} | ${sign(100 * (a.asr - b.asr), 1)} | ${sign(100 * (a.refusalHarmless - b.refusalHarmless), 1)} | ${sign(a.ppl - b.ppl, 2)} |`;
    }),
  ].join('\n');
}

register({
  name: 'testbed',
  summary: 'build or measure the synthetic testbeds (builtin:tiny-multilingual, …-transfer)',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === 'build') return build(rest);
    if (sub === 'measure') return measure(rest);
    throw new CliError(`unknown subcommand '${sub ?? ''}'\n\nusage: ${usage}`, ExitCode.usage);
  },
});
