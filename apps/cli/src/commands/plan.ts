import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errorMessage } from '@mpo/util';
import { CliError, ExitCode } from '../exit-codes.js';
import { register } from '../registry.js';

const usage = `mpo plan --model DIR|config.json --ranks N --dtype fp32|bf16|fp16 --zero 0|1|2 --batch B --cutoff T
          [--lora R [--lora-targets q_proj,v_proj,...]] [--checkpointing] [--device-memory GB] [--reserve GB] [--layout engine|deepspeed] [--json]

Per-rank memory of a training configuration before anything is allocated: weights, gradients, optimizer
state, activations and workspace, and whether they fit in --device-memory GB (default 80). --batch is the
sequences of one forward/backward on a rank, --cutoff their length. --reserve GB (default 0) is set aside
for the runtime (CUDA context, allocator slack). --layout engine (default) models this project's engine
(fp32 flat parameters and gradients whole on every rank, ZeRO sharding AdamW's moments); --layout deepspeed
the ZeRO paper's accounting (2-byte weights and gradients, 12 bytes of optimizer state per parameter for
mixed precision, gradients sharded from stage 2). --lora R trains rank-R adapters on a frozen base, on
--lora-targets (default: all of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; a training
config's lora.targetModules defaults to q_proj,v_proj). --json prints the same with byte counts and "fits".`;

function int(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min)
    throw new CliError(
      `--${name} must be an integer >= ${min} (got ${v ?? 'nothing'})\n\nusage: ${usage}`,
      ExitCode.usage,
    );
  return n;
}

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0)
    throw new CliError(`--${name} must be a number >= 0 (got ${v})`, ExitCode.usage);
  return n;
}

register({
  name: 'plan',
  summary: 'per-rank memory plan (weights, gradients, optimizer, activations) and whether it fits',
  usage,
  async run(argv) {
    let values: Record<string, string | boolean | undefined>;
    try {
      ({ values } = parseArgs({
        args: argv,
        options: {
          model: { type: 'string' },
          ranks: { type: 'string', default: '1' },
          dtype: { type: 'string', default: 'fp32' },
          zero: { type: 'string', default: '0' },
          lora: { type: 'string' },
          'lora-targets': { type: 'string' },
          checkpointing: { type: 'boolean', default: false },
          batch: { type: 'string' },
          cutoff: { type: 'string' },
          'device-memory': { type: 'string', default: '80' },
          reserve: { type: 'string', default: '0' },
          layout: { type: 'string', default: 'engine' },
          json: { type: 'boolean', default: false },
        },
      }));
    } catch (e) {
      throw new CliError(`${errorMessage(e)}\n\nusage: ${usage}`, ExitCode.usage);
    }
    const { planMemory, readModelConfig, formatPlan, PLAN_DTYPES, PLAN_LAYOUTS } = await import(
      '@mpo/trainer'
    );
    const model = values.model as string | undefined;
    if (!model) throw new CliError(`--model is required\n\nusage: ${usage}`, ExitCode.usage);
    if (!existsSync(model)) throw new CliError(`--model ${model}: no such file or folder`, ExitCode.notFound);
    const dtype = values.dtype as string;
    if (!(PLAN_DTYPES as readonly string[]).includes(dtype))
      throw new CliError(`--dtype must be one of ${PLAN_DTYPES.join(', ')} (got ${dtype})`, ExitCode.usage);
    const layout = values.layout as string;
    if (!(PLAN_LAYOUTS as readonly string[]).includes(layout))
      throw new CliError(
        `--layout must be one of ${PLAN_LAYOUTS.join(', ')} (got ${layout})`,
        ExitCode.usage,
      );
    const zero = int('zero', values.zero as string, 0);
    if (zero > 2) throw new CliError(`--zero must be 0, 1 or 2 (got ${zero})`, ExitCode.usage);
    let config: Record<string, unknown>;
    try {
      config = readModelConfig(model);
    } catch (e) {
      throw new CliError(`--model: ${errorMessage(e)}`, ExitCode.invalidInput);
    }
    let plan: ReturnType<typeof planMemory>;
    try {
      plan = planMemory({
        config,
        ranks: int('ranks', values.ranks as string, 1),
        dtype: dtype as 'fp32',
        zero: zero as 0,
        ...(values.lora !== undefined ? { lora: int('lora', values.lora as string, 1) } : {}),
        ...(values['lora-targets'] !== undefined
          ? { loraTargets: (values['lora-targets'] as string).split(',').map((t) => t.trim()) }
          : {}),
        checkpointing: values.checkpointing === true,
        batch: int('batch', values.batch as string | undefined, 1),
        cutoff: int('cutoff', values.cutoff as string | undefined, 1),
        deviceMemoryGB: positive('device-memory', values['device-memory'] as string),
        reserveGB: positive('reserve', values.reserve as string),
        layout: layout as 'engine',
      });
    } catch (e) {
      if (e instanceof CliError) throw e;
      throw new CliError(`${errorMessage(e)}`, ExitCode.invalidInput);
    }
    process.stdout.write(values.json ? `${JSON.stringify(plan)}\n` : `${formatPlan(plan)}\n`);
    return 0;
  },
});
