// Checkpoints: weights in the Hugging Face layout, optimizer state, and the
// trainer state needed for a bit-identical resume (step, data cursor, RNG).
// A checkpoint is written durably (durable.ts: temporary folder, manifest of
// hashes, fsync, rename, then older ones removed), and resume takes the newest
// checkpoint whose files match its manifest: a torn newest one (a truncated
// file after a crash or a full disk) falls back to the previous one.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { manifestOf, newestIntact, writeDurableDir } from './durable.js';
import type { TrainableModel } from './model.js';
import type { CheckpointRecord } from './types.js';

export interface TrainerState {
  version: 1;
  /** Optimizer steps completed. */
  step: number;
  totalSteps: number;
  /** Epoch of the next batch, and the position of its first example in that epoch's order. */
  epoch: number;
  cursor: number;
  seed: number;
  /** Hash of the config fields that must not change across a resume. */
  configHash: string;
  weightsHash: string;
  savedAt: string;
  /** Dynamic loss scaler state, when the run scales its loss (so a resume continues it exactly). */
  lossScaler?: LossScalerState;
}

export interface LossScalerState {
  scale: number;
  goodSteps: number;
  skipped: number;
}

const STATE_FILE = 'trainer-state.json';
const OPTIMIZER_FILE = 'optimizer.bin';
const stepDir = (step: number) => `step-${String(step).padStart(8, '0')}`;
const STEP_DIR = /^step-\d{8}$/;

export function checkpointsDir(output: string): string {
  return join(output, 'checkpoints');
}

export async function saveCheckpoint(
  model: TrainableModel,
  output: string,
  state: Omit<TrainerState, 'version' | 'savedAt' | 'weightsHash'>,
  keep: number,
  opts: { writeOptimizer?: (tmpDir: string) => Promise<unknown> } = {},
): Promise<CheckpointRecord> {
  const { dir, manifest } = await writeDurableDir(
    checkpointsDir(output),
    stepDir(state.step),
    async (tmp) => {
      await model.save(tmp);
      // ZeRO runs write sharded moments and their manifest instead (zero.ts).
      if (opts.writeOptimizer) await opts.writeOptimizer(tmp);
      else await model.saveOptimizer(join(tmp, OPTIMIZER_FILE));
      const full: TrainerState = {
        ...state,
        version: 1,
        weightsHash: model.weightsHash(),
        savedAt: new Date().toISOString(),
      };
      writeFileSync(join(tmp, STATE_FILE), `${JSON.stringify(full, null, 2)}\n`);
    },
    { keep, older: STEP_DIR },
  );
  return { step: state.step, dir, bytes: manifest.bytes, sha256: manifest.sha256 };
}

/**
 * The newest intact checkpoint under `output` (its files match its manifest),
 * or null. Torn ones are skipped and reported through `onTorn`.
 */
export function latestCheckpoint(
  output: string,
  onTorn?: (dir: string, reason: string) => void,
): { dir: string; state: TrainerState } | null {
  const dir = newestIntact(checkpointsDir(output), STEP_DIR, (d) => existsSync(join(d, STATE_FILE)), onTorn);
  if (!dir) return null;
  return { dir, state: JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as TrainerState };
}

export const optimizerPath = (dir: string) => join(dir, OPTIMIZER_FILE);
/** Where ranks leave their ZeRO optimizer shards until rank 0 moves them into the checkpoint. */
export const zeroStagingDir = (output: string, step: number) =>
  join(checkpointsDir(output), `${stepDir(step)}.tmp-zero-shards`);

/** Total bytes and a sha256 over (name, content) of every file, in name order (streamed). */
export function digestDir(dir: string): { bytes: number; sha256: string } {
  const { bytes, sha256 } = manifestOf(dir);
  return { bytes, sha256 };
}
