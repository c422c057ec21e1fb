// The full payload of a train or eval job. Jobs published since issue 16 carry
// only their trial's own fields (@mpo/queue `TrialJobRef`); the run-level
// fields come from the run's spec in Postgres, read once per run and kept
// while the agent works on that run's trials. Older jobs carry everything and
// are used as they are.

import type { Db } from '@mpo/db';
import {
  type EvalJobData,
  evalJobFromRef,
  ProblemsError,
  parseEvalJobData,
  parseEvalJobPayload,
  parseTrainJobData,
  parseTrainJobPayload,
  type RunSpec,
  TRIAL_REF_VERSION,
  type TrainJobData,
  type TrialJobRef,
  trainJobFromRef,
} from '@mpo/queue';
import { errorMessage } from '@mpo/util';

/** Specs of this many runs are kept (an agent rarely works on more at once). */
const KEEP = 32;

export class RunSpecs {
  private readonly specs = new Map<string, Promise<RunSpec>>();

  constructor(private readonly db: Db) {}

  /** The run's spec; a failed read is not kept (the caller retries). */
  get(runId: string): Promise<RunSpec> {
    let spec = this.specs.get(runId);
    if (spec) {
      // Most recently used last: the oldest entry is the one dropped.
      this.specs.delete(runId);
      this.specs.set(runId, spec);
      return spec;
    }
    spec = this.db.runs.spec(runId).then((s) => s as unknown as RunSpec);
    spec.catch(() => this.specs.get(runId) === spec && this.specs.delete(runId));
    this.specs.set(runId, spec);
    if (this.specs.size > KEEP) this.specs.delete(this.specs.keys().next().value!);
    return spec;
  }
}

const isRef = (d: TrialJobRef | { v: number }): d is TrialJobRef => d.v === TRIAL_REF_VERSION;

/**
 * A trial job rebuilt from its run's spec, checked like a payload. A spec it cannot be rebuilt from (not a
 * run spec, or one the contract no longer accepts) fails the job at once, naming the run: retrying reads
 * the same spec.
 */
function rebuild<T>(
  ref: TrialJobRef,
  spec: RunSpec,
  build: (s: RunSpec, r: TrialJobRef) => unknown,
  parse: (d: unknown) => T,
): T {
  let data: unknown;
  try {
    data = build(spec, ref);
  } catch (err) {
    throw new ProblemsError([{ path: 'spec', reason: errorMessage(err) }], `spec of run ${ref.runId}`);
  }
  return parse(data);
}

/** A train job's full payload: a reference rebuilt from its run's spec, or an older job's own payload. */
export async function trainJob(
  data: unknown,
  read: (runId: string) => Promise<RunSpec>,
): Promise<TrainJobData> {
  const d = parseTrainJobPayload(data);
  return isRef(d) ? rebuild(d, await read(d.runId), trainJobFromRef, parseTrainJobData) : d;
}

export async function evalJob(
  data: unknown,
  read: (runId: string) => Promise<RunSpec>,
): Promise<EvalJobData> {
  const d = parseEvalJobPayload(data);
  return isRef(d) ? rebuild(d, await read(d.runId), evalJobFromRef, parseEvalJobData) : d;
}
