import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '@mpo/util';
import { CliError, ExitCode } from '../exit-codes.js';
import { numberFlag, optionalNumberFlag } from '../flags.js';
import { createProgress } from '../progress.js';
import { register } from '../registry.js';

const usage = `mpo score --model DIR|builtin:ID --data FILE [--format pretokenized|mpo|pairwise] [--template T]
          [--cutoff N] [--batch N] [--limit N] [--threads N] [--json]

Scores preference pairs: per example the summed and average log-prob of each response and the reward gap
RG = avgLogp(chosen) − avgLogp(rejected), and RG per language. Pre-tokenized JSONL is scored as is; MPO JSON
(target pairs, plus each prompt's dominant-language pair once) and pairwise JSONL are tokenized with the
model's tokenizer and chat template. Prints
{"examples":[{"id","lang","chosen":{"sumLogp","tokens","avgLogp"},"rejected":{...},"rg"}],"perLanguage":{"<lang>":{"rg","n"}}}`;

const guessFormat = (path: string) => (path.endsWith('.json') ? 'mpo' : 'pretokenized');

register({
  name: 'score',
  summary: 'score preference pairs with a model: log-probs, reward gaps, RG per language',
  usage,
  async run(argv) {
    // Long: a CLI command: its flags, then the scoring steps in the order the user sees their output.
    const { values } = parseArgs({
      args: argv,
      options: {
        model: { type: 'string' },
        data: { type: 'string' },
        format: { type: 'string' },
        template: { type: 'string' },
        cutoff: { type: 'string', default: '4096' },
        batch: { type: 'string', default: '8' },
        limit: { type: 'string' },
        threads: { type: 'string', default: '2' },
        json: { type: 'boolean', default: false },
      },
    });
    if (!values.model || !values.data)
      throw new CliError(`--model and --data are required\n\nusage: ${usage}`, ExitCode.usage);
    const positive = { integer: true, min: 1 };
    const cutoff = numberFlag('cutoff', values.cutoff, { integer: true, min: 2 });
    const batch = numberFlag('batch', values.batch, positive);
    const threads = numberFlag('threads', values.threads, positive);
    const limit = optionalNumberFlag('limit', values.limit, positive);
    const data = values.data.startsWith('builtin:') ? values.data : resolve(values.data);
    if (!data.startsWith('builtin:') && !existsSync(data))
      throw new CliError(`--data ${data}: no such file`, ExitCode.notFound);
    const model = values.model.startsWith('builtin:') ? values.model : resolve(values.model);
    if (!model.startsWith('builtin:') && !existsSync(resolve(model, 'config.json'))) {
      throw new CliError(`--model ${model}: no config.json there`, ExitCode.notFound);
    }
    const {
      buildDataset,
      loadInitialModel,
      parseTrainConfig,
      resolveModelDir,
      resolveTokenization,
      ConfigError,
    } = await import('@mpo/trainer');
    let cfg: ReturnType<typeof parseTrainConfig>;
    try {
      cfg = parseTrainConfig({
        model,
        data: {
          path: data,
          heldOut: 0,
          split: 'all',
          ...(limit !== undefined ? { limit } : {}),
          ...(values.format || !data.startsWith('builtin:')
            ? { format: values.format ?? guessFormat(data) }
            : {}),
        },
        method: 'sft',
        output: '/tmp/unused',
        cutoff,
        threads,
        ...(values.template ? { template: values.template } : {}),
      });
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(err.message, ExitCode.invalidInput);
      throw err;
    }
    const m = await loadInitialModel(cfg);
    const tok =
      cfg.data.format === 'pretokenized'
        ? null
        : await resolveTokenization({
            modelDir: resolveModelDir(cfg.model),
            architecture: m.config.architecture,
            vocabSize: m.config.vocabSize,
            ...(cfg.template ? { template: cfg.template } : {}),
          });
    let ds: ReturnType<typeof buildDataset>;
    try {
      ds = buildDataset(
        cfg.data,
        tok?.encoders ?? { encodePrompt: () => [], encodeResponse: () => [] },
        cfg.cutoff,
        { vocabSize: m.config.vocabSize },
      );
    } catch (err) {
      // Data errors already say file:line and what is wrong.
      throw new CliError(errorMessage(err), ExitCode.invalidInput);
    }
    // MPO rows: the target pair of each row, and the dominant pair once per prompt.
    const pairs = ds.examples.map((e) => ({ id: e.id, lang: e.lang, pair: e.target }));
    if (cfg.data.format === 'mpo' && ds.dominantLanguage) {
      const seen = new Set<string>();
      for (const e of ds.examples) {
        const key = JSON.stringify(e.dominant?.prompt);
        if (e.dominant && !seen.has(key)) {
          seen.add(key);
          pairs.push({ id: `${e.id}:source`, lang: ds.dominantLanguage, pair: e.dominant });
        }
      }
    }
    const progress = createProgress({
      label: 'score',
      total: pairs.length,
      unit: 'pairs/s',
      json: values.json,
    });
    progress.update(0);
    const examples: unknown[] = [];
    const per: Record<string, { sum: number; n: number }> = {};
    for (let i = 0; i < pairs.length; i += batch) {
      const chunk = pairs.slice(i, i + batch);
      const side = async (k: 'chosen' | 'rejected') =>
        m.score({
          sequences: chunk.map((p) => [...p.pair.prompt, ...p.pair[k]]),
          promptLengths: chunk.map((p) => p.pair.prompt.length),
        });
      const [c, r] = [await side('chosen'), await side('rejected')];
      chunk.forEach((p, k) => {
        const cs = { sumLogp: c.sumLogp[k]!, tokens: c.tokens[k]!, avgLogp: c.sumLogp[k]! / c.tokens[k]! };
        const rs = { sumLogp: r.sumLogp[k]!, tokens: r.tokens[k]!, avgLogp: r.sumLogp[k]! / r.tokens[k]! };
        const rg = cs.avgLogp - rs.avgLogp;
        examples.push({ id: p.id, lang: p.lang, chosen: cs, rejected: rs, rg });
        per[p.lang] = { sum: (per[p.lang]?.sum ?? 0) + rg, n: (per[p.lang]?.n ?? 0) + 1 };
      });
      progress.update(examples.length);
    }
    progress.finish();
    const perLanguage = Object.fromEntries(
      Object.keys(per)
        .sort()
        .map((l) => [l, { rg: per[l]!.sum / per[l]!.n, n: per[l]!.n }]),
    );
    if (values.json || !process.stdout.isTTY)
      process.stdout.write(`${JSON.stringify({ examples, perLanguage })}\n`);
    else {
      process.stdout.write(
        `${examples.length} pairs scored${ds.dropped.length ? `, ${ds.dropped.length} dropped` : ''}\n`,
      );
      for (const [l, v] of Object.entries(perLanguage))
        process.stdout.write(`  ${l.padEnd(4)} RG ${v.rg.toFixed(4)}  (n=${v.n})\n`);
    }
    m.dispose();
    return ExitCode.ok;
  },
});
