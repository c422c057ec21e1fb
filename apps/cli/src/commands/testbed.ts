import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILTIN_MODELS } from '@mpo/trainer';
import { CliError, ExitCode } from '../exit-codes.js';
import { numberFlag } from '../flags.js';
import { createProgress, createReporter, type Progress } from '../progress.js';
import { register } from '../registry.js';

const usage = `mpo testbed build [--seed N] [--out DIR] [--threads N] [--epochs N] [--max-steps N] [--json]

Trains builtin:tiny-multilingual, the synthetic testbed (a byte-level config-S Llama that refuses
harmful prompts in English and complies in the target languages). Default --out is where the
builtin id resolves (models/tiny-multilingual). The same seed and thread count rebuild the same bytes.
--max-steps stops early (a smoke build: the model is not the committed testbed).`;

register({
  name: 'testbed',
  summary: 'build the synthetic multilingual testbed model (builtin:tiny-multilingual)',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub !== 'build')
      throw new CliError(`unknown subcommand '${sub ?? ''}'\n\nusage: ${usage}`, ExitCode.usage);
    const { values } = parseArgs({
      args: rest,
      options: {
        seed: { type: 'string', default: '1' },
        out: { type: 'string' },
        threads: { type: 'string', default: '2' },
        epochs: { type: 'string', default: '3' },
        'max-steps': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    const seed = numberFlag('seed', values.seed, { integer: true, min: 0 });
    const threads = numberFlag('threads', values.threads, { integer: true, min: 1 });
    const epochs = numberFlag('epochs', values.epochs, { integer: true, min: 1 });
    const maxSteps =
      values['max-steps'] === undefined
        ? undefined
        : numberFlag('max-steps', values['max-steps'], { integer: true, min: 1 });
    const out = values.out ? resolve(values.out) : BUILTIN_MODELS['builtin:tiny-multilingual']!();
    const { buildTestbed } = await import('@mpo/eval');
    const rep = createReporter(values.json);
    let progress: Progress | null = null;
    const r = await buildTestbed({
      seed,
      out,
      threads,
      epochs,
      ...(maxSteps ? { training: { maxSteps } } : {}),
      onStep: (s) => {
        progress ??= createProgress({
          label: 'testbed',
          total: s.totalSteps,
          unit: 'steps/s',
          json: values.json,
        });
        rep.event({
          type: 'step',
          step: s.step,
          totalSteps: s.totalSteps,
          loss: s.loss,
          metrics: { lr: s.lr, tokensPerSec: s.tokensPerSec },
        });
        progress.update(s.step, `loss ${s.loss.toFixed(4)}  ${Math.round(s.tokensPerSec)} tok/s`);
      },
    });
    (progress as Progress | null)?.finish();
    rep.done();
    rep.event({ type: 'done', dir: r.dir, steps: r.steps, examples: r.examples, weightsHash: r.weightsHash });
    if (rep.tty)
      process.stdout.write(
        `testbed written to ${r.dir} (${r.steps} steps, weights ${r.weightsHash.slice(0, 12)})\n`,
      );
    return ExitCode.ok;
  },
});
