import { CliError, ExitCode } from '../exit-codes.js';
import { register } from '../registry.js';

register({
  name: 'allreduce',
  summary: 'shared-memory all-reduce tools: `mpo allreduce bench --ranks N --json`',
  usage: 'mpo allreduce bench [--ranks N] [--json] [--sizes 4K,64M] [--iters N] [--transport f32|bf16]',
  async run(args) {
    const [sub, ...rest] = args;
    if (sub !== 'bench')
      throw new CliError(`unknown subcommand '${sub ?? ''}' (expected: bench)`, ExitCode.usage);
    const { allreduceBenchMain } = await import('@mpo/allreduce');
    return allreduceBenchMain(rest);
  },
});
