// Checkpoints: weights in the Hugging Face layout, optimizer state, and the
// trainer state needed for a bit-identical resume (step, data cursor, RNG).
// A checkpoint is written into a temporary folder and renamed into place, so
// a process killed mid-write never leaves a half checkpoint that looks whole.
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
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
  const root = checkpointsDir(output);
  mkdirSync(root, { recursive: true });
  const final = join(root, stepDir(state.step));
  const tmp = `${final}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
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
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  prune(root, keep);
  const { bytes, sha256 } = digestDir(final);
  return { step: state.step, dir: final, bytes, sha256 };
}

/** The newest complete checkpoint under `output`, or null. */
export function latestCheckpoint(output: string): { dir: string; state: TrainerState } | null {
  const root = checkpointsDir(output);
  if (!existsSync(root)) return null;
  const dirs = readdirSync(root)
    .filter((d) => /^step-\d{8}$/.test(d) && existsSync(join(root, d, STATE_FILE)))
    .sort();
  const last = dirs.at(-1);
  if (!last) return null;
  const dir = join(root, last);
  return { dir, state: JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as TrainerState };
}

export const optimizerPath = (dir: string) => join(dir, OPTIMIZER_FILE);
/** Where ranks leave their ZeRO optimizer shards until rank 0 moves them into the checkpoint. */
export const zeroStagingDir = (output: string, step: number) =>
  join(checkpointsDir(output), `${stepDir(step)}.tmp-zero-shards`);

/** Keeps the newest `keep` checkpoints (0 = keep all) and removes stray temporaries. */
function prune(root: string, keep: number): void {
  const entries = readdirSync(root);
  for (const d of entries) if (d.includes('.tmp-')) rmSync(join(root, d), { recursive: true, force: true });
  if (keep <= 0) return;
  const complete = entries.filter((d) => /^step-\d{8}$/.test(d)).sort();
  for (const d of complete.slice(0, Math.max(0, complete.length - keep))) {
    rmSync(join(root, d), { recursive: true, force: true });
  }
}

/** Total bytes and a sha256 over (name, content) of every file, in name order. */
export function digestDir(dir: string): { bytes: number; sha256: string } {
  const h = createHash('sha256');
  let bytes = 0;
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (!statSync(p).isFile()) continue;
    const data = readFileSync(p);
    bytes += data.length;
    h.update(f).update('\0').update(data);
  }
  return { bytes, sha256: h.digest('hex') };
}
