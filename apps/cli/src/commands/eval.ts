import { dirname, isAbsolute, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { GenerationRecord } from '@mpo/eval';
import type { EvalMessage } from '@mpo/queue';
import { errorMessage, isObject } from '@mpo/util';
import { CliError, ExitCode } from '../exit-codes.js';
import { numberFlag } from '../flags.js';
import { createProgress, createReporter } from '../progress.js';
import { readConfigFile } from '../read-json.js';
import { register } from '../registry.js';

const usage = `mpo eval (--config FILE.json | --model DIR|builtin:ID) [--benchmarks reward-gap,multijail,csrt,utility]
         [--languages en,zh,...] [--max-prompts N] [--max-new-tokens N] [--judge detector|llm] [--json]
         [--save-responses FILE.jsonl] [--responses] [--csrt FILE.csv]

Evaluates one checkpoint. JSON lines on --json or when not on a terminal:
  {"type":"result","benchmark","language","metric","value","n"} ... {"type":"done","results":N}
The LLM judge reads MPO_JUDGE_URL, MPO_JUDGE_MODEL and MPO_JUDGE_API_KEY.
--save-responses FILE writes every MultiJail/CSRT generation with its verdict, one JSON line each:
  {"benchmark","language","promptId","prompt","response","verdict","reason","judge"}
(written whole at the end; verdict safe | unsafe | irrelevant, the last two count as attack success).
--responses prints the same lines to stderr as {"type":"generation", ...} while evaluating.
CSRT is not shipped (no licence upstream): the csrt benchmark reads --csrt, the config's csrt.path or
MPO_CSRT_PATH (get data/csrt.csv from github.com/haneul-yoo/csrt @ 574574a).`;

register({
  name: 'eval',
  summary: 'evaluate a checkpoint: reward gap, MultiJail/CSRT attack success, utility perplexity',
  usage,
  async run(argv) {
    // Long: a CLI command: its flags, then the benchmarks and the result lines it prints, in order.
    const { values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        model: { type: 'string' },
        benchmarks: { type: 'string' },
        languages: { type: 'string' },
        'max-prompts': { type: 'string' },
        'max-new-tokens': { type: 'string' },
        judge: { type: 'string' },
        threads: { type: 'string' },
        csrt: { type: 'string' },
        json: { type: 'boolean', default: false },
        responses: { type: 'boolean', default: false },
        'save-responses': { type: 'string' },
      },
    });
    let raw: Record<string, unknown> = {};
    let base = process.cwd();
    if (values.config) {
      const path = resolve(values.config);
      raw = readConfigFile(path, 'config') as Record<string, unknown>;
      base = dirname(path);
    } else if (!values.model) {
      throw new CliError(`--config or --model is required\n\nusage: ${usage}`, ExitCode.usage);
    }
    if (values.model) raw.model = values.model;
    if (typeof raw.model === 'string' && !raw.model.startsWith('builtin:') && !isAbsolute(raw.model)) {
      raw.model = resolve(base, raw.model);
    }
    if (values.csrt) raw.csrt = { path: resolve(values.csrt) };
    else if (isObject(raw.csrt) && typeof raw.csrt.path === 'string' && !isAbsolute(raw.csrt.path)) {
      raw.csrt = { ...raw.csrt, path: resolve(base, raw.csrt.path) };
    }
    if (values.benchmarks) raw.benchmarks = values.benchmarks.split(',');
    if (values.languages) raw.languages = values.languages.split(',');
    // A number is checked here; its range by parseEvalConfig, with every other problem.
    const positive = { integer: true };
    if (values['max-prompts']) raw.maxPrompts = numberFlag('max-prompts', values['max-prompts'], positive);
    if (values['max-new-tokens'])
      raw.maxNewTokens = numberFlag('max-new-tokens', values['max-new-tokens'], positive);
    if (values.judge) raw.judge = values.judge;
    if (values.threads) raw.threads = numberFlag('threads', values.threads, positive);
    const { EvalConfigError, parseEvalConfig, runEvaluation, writeGenerations } = await import('@mpo/eval');
    const saveTo = values['save-responses'] ? resolve(values['save-responses']) : undefined;
    let cfg: ReturnType<typeof parseEvalConfig>;
    try {
      cfg = parseEvalConfig(raw);
    } catch (err) {
      if (err instanceof EvalConfigError) throw new CliError(err.message, ExitCode.invalidInput);
      throw err;
    }
    const rep = createReporter(values.json);
    // Every stdout line is an EvalMessage: the worker parses them with the same types.
    const emit = (m: EvalMessage) => rep.event(m);
    const progress = createProgress({ label: 'eval', total: 0, json: values.json });
    let phase = '';
    const rows: string[] = [];
    const generations: GenerationRecord[] = [];
    let n = 0;
    try {
      await runEvaluation(
        cfg,
        (r) => {
          n++;
          emit({ type: 'result', ...r });
          rows.push(
            `${r.benchmark.padEnd(11)} ${r.language.padEnd(5)} ${r.metric.padEnd(4)} ${r.value.toFixed(4).padStart(9)}  n=${r.n}`,
          );
        },
        {
          onGeneration: (g) => {
            if (saveTo) generations.push(g);
            if (values.responses) process.stderr.write(`${JSON.stringify({ type: 'generation', ...g })}\n`);
          },
          onProgress: (p) => {
            if (p.benchmark !== phase) {
              phase = p.benchmark;
              progress.phase(phase, p.total);
            }
            progress.update(p.done);
          },
        },
      );
      if (saveTo) writeGenerations(saveTo, generations);
    } catch (err) {
      emit({ type: 'error', message: errorMessage(err) });
      throw err;
    }
    progress.finish();
    rep.done();
    emit({ type: 'done', results: n });
    if (rep.tty) process.stdout.write(`${rows.join('\n')}\n`);
    return ExitCode.ok;
  },
});
