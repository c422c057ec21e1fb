import { parseArgs } from 'node:util';
import { CliError, ExitCode } from '../exit-codes.js';
import { register } from '../registry.js';

const usage = `mpo bench engine [--pairs 8] [--threads 2] [--steps 5] [--dtype float32|bfloat16] [--device cpu|cuda:N] [--json]

The engine issue's "config S" MPO step (2 target sequences through the LM head and 2 dominant
sequences to the final hidden state per pair, sequence 256). The last line is
{"tokensPerSec":..,"mfu":..,"secondsPerStep":..} (MFU against 440 GFLOP/s).`;

register({
  name: 'bench',
  summary: 'benchmarks: `mpo bench engine` (config-S MPO step tokens/s and MFU)',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub !== 'engine')
      throw new CliError(`unknown benchmark '${sub ?? ''}'\n\nusage: ${usage}`, ExitCode.usage);
    // Importing the engine does not load its addon: that happens at the first model.
    const { BENCH_ARG_OPTIONS, benchEngine } = await import('@mpo/engine');
    const { values } = parseArgs({ args: rest, options: BENCH_ARG_OPTIONS });
    const num = (k: 'pairs' | 'threads' | 'steps') => {
      const n = Number(values[k]);
      if (!Number.isInteger(n) || n < 1)
        throw new CliError(`--${k} must be a positive integer`, ExitCode.usage);
      return n;
    };
    if (!['float32', 'bfloat16', 'float16'].includes(values.dtype!))
      throw new CliError('--dtype must be float32, bfloat16 or float16', ExitCode.usage);
    const r = await benchEngine({
      pairs: num('pairs'),
      threads: num('threads'),
      steps: num('steps'),
      dtype: values.dtype as 'float32',
      device: values.device as 'cpu',
    });
    const out = {
      tokensPerSec: Math.round(r.tokensPerSec),
      mfu: Number(r.mfu.toFixed(4)),
      secondsPerStep: Number(r.secondsPerStep.toFixed(4)),
    };
    if (!values.json)
      process.stdout.write(`config S, ${r.pairs} pairs, ${r.threads} threads, ${r.dtype} on ${r.device}:\n`);
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return ExitCode.ok;
  },
});
