import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { presetNames } from '@mpo/objectives';
import { isLlamaFactoryConfig, locateProblems, type TrainerMessage, type TrainerMetrics } from '@mpo/queue';
import { ConfigError, parseTrainConfig, runTraining } from '@mpo/trainer';
import { errorMessage } from '@mpo/util';
import { communicatorFromEnv } from '../comm.js';
import { CliError, ExitCode } from '../exit-codes.js';
import { optionalNumberFlag } from '../flags.js';
import { fromLlamaFactoryFile } from '../llamafactory-file.js';
import { bar, createReporter, Eta, formatDuration } from '../progress.js';
import { readConfigDocument } from '../read-json.js';
import { register } from '../registry.js';

const usage = `mpo train --config FILE.json|FILE.yaml [--json] [--output DIR] [--max-steps N] [--preset NAME]
          [--dtype fp32|bf16|fp16] [--activation-checkpointing]

The config is ours (JSON or YAML), or a LLaMA-Factory training YAML as it is (the official MPO
repository's examples/train_mpo/*.yaml): its fields are mapped, every ignored one is listed on stderr,
and any we cannot honour is an error naming its line.

Trains one model with one method. A progress bar on a terminal, JSON lines otherwise:
  {"type":"start"|"step"|"eval"|"checkpoint"|"done"|"error", ...}
(the protocol of packages/queue/src/trainer-protocol.ts).
Writes <output>/metrics.jsonl, checkpoints under <output>/checkpoints and final
weights in <output>/final. Re-running with the same output resumes from the
latest checkpoint. SIGTERM/SIGINT: finish the current step, checkpoint, print
a "done" line with "stopped": true and exit 130.

--preset NAME (or "preset" in the config): MPO's values for a backbone from the
paper (Table 8, Appendix G): ${presetNames.join(', ')}. Fields the config states win.

--dtype and --activation-checkpointing override the config's "dtype" and
"activationCheckpointing" (bf16: mixed precision with fp32 master weights;
fp16: CUDA only, with dynamic loss scaling).`;

register({
  name: 'train',
  summary: 'train a model with MPO or a baseline from a JSON config',
  usage,
  async run(argv) {
    // Long: a CLI command: its flags, the config and the protocol lines it prints, in the order they happen.
    const { values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean', default: false },
        output: { type: 'string' },
        'max-steps': { type: 'string' },
        preset: { type: 'string' },
        dtype: { type: 'string' },
        'activation-checkpointing': { type: 'boolean' },
      },
    });
    if (!values.config) throw new CliError(`--config is required\n\nusage: ${usage}`, ExitCode.usage);
    const path = resolve(values.config);
    const maxSteps = optionalNumberFlag('max-steps', values['max-steps'], { integer: true, min: 1 });
    const doc = readConfigDocument(path, 'config');
    const raw = fromLlamaFactoryFile(doc, path) ?? (doc.value as Record<string, unknown>);
    if (values.output && raw && typeof raw === 'object') raw.output = resolve(values.output);
    if (values.preset && raw && typeof raw === 'object') raw.preset = values.preset;
    if (maxSteps !== undefined && raw && typeof raw === 'object') {
      raw.training = { ...(raw.training as object), maxSteps };
    }
    if (values.dtype && raw && typeof raw === 'object') raw.dtype = values.dtype;
    if (values['activation-checkpointing'] && raw && typeof raw === 'object')
      raw.activationCheckpointing = true;
    let config: ReturnType<typeof parseTrainConfig>;
    try {
      config = parseTrainConfig(raw, dirname(path));
    } catch (err) {
      if (err instanceof ConfigError) {
        // Our own configs: each problem with its line; a mapped LLaMA-Factory config has no lines for our names.
        const lines = isLlamaFactoryConfig(doc.value)
          ? err.problems.map((p) => `${path}: after mapping from LLaMA-Factory: ${p.path}: ${p.reason}`)
          : locateProblems(doc, err.problems);
        throw new CliError(`invalid training config:\n  ${lines.join('\n  ')}`, ExitCode.invalidInput);
      }
      throw err;
    }

    const comm = await communicatorFromEnv();
    const rank = comm?.rank ?? 0;
    const out = createReporter(values.json || rank !== 0);
    // Every line is a TrainerMessage: the worker parses them with the same types.
    const emit = (m: TrainerMessage): void => {
      if (rank === 0) out.event(m);
    };
    let stopRequested = false;
    const onSignal = () => {
      stopRequested = true;
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    let eta: Eta | null = null;
    try {
      const result = await runTraining(config, {
        ...(comm ? { comm } : {}),
        // Informational events are not part of the trainer protocol: stderr.
        log: (e) => rank === 0 && process.stderr.write(`${JSON.stringify(e)}\n`),
        hooks: {
          onStart: (s) => emit({ type: 'start', totalSteps: s.totalSteps, resumedFrom: s.resumedFrom }),
          onEval: (step, metrics) => emit({ type: 'eval', step, metrics }),
          shouldStop: () => stopRequested,
          onStep: (r) => {
            eta ??= new Eta(r.step - 1);
            const metrics: TrainerMetrics = {
              ...r.metrics,
              lr: r.lr,
              gradNorm: r.gradNorm,
              tokensPerSec: r.tokensPerSec,
            };
            if (r.rgTarget !== undefined) metrics['rg/target'] = r.rgTarget;
            if (Object.keys(r.rgByLanguage).length) metrics.rg = r.rgByLanguage;
            emit({
              type: 'step',
              step: r.step,
              totalSteps: r.totalSteps,
              epoch: r.epoch,
              loss: r.loss,
              seconds: r.seconds,
              metrics,
              timing: r.timing,
            });
            if (rank === 0) {
              out.line(
                `${bar(r.step / r.totalSteps)} step ${r.step}/${r.totalSteps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  ${Math.round(r.tokensPerSec)} tok/s  ETA ${formatDuration(eta.seconds(r.step, r.totalSteps))}`,
              );
            }
          },
          onCheckpoint: (c) =>
            emit({ type: 'checkpoint', step: c.step, path: c.dir, bytes: c.bytes, sha256: c.sha256 }),
        },
      });
      out.done();
      const c = result.lastCheckpoint as { step: number; dir: string; bytes: number; sha256: string } | null;
      emit({
        type: 'done',
        step: result.step,
        totalSteps: result.totalSteps,
        stopped: result.stopped,
        checkpoint: c ? { step: c.step, path: c.dir, bytes: c.bytes, sha256: c.sha256 } : null,
        weightsHash: result.model.weightsHash(),
        finalDir: result.finalDir,
        resumedFrom: result.resumedFrom,
      });
      if (result.stopped) return ExitCode.interrupted;
      if (out.tty && rank === 0) {
        process.stdout.write(`done: ${result.step} steps, final weights in ${result.finalDir}\n`);
      }
      return ExitCode.ok;
    } catch (err) {
      emit({ type: 'error', message: errorMessage(err) });
      throw err;
    } finally {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      await comm?.close();
    }
  },
});
