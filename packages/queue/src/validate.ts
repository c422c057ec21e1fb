// Run spec validation: the schema's problems plus every check a schema cannot
// express, all collected in one pass, then the normalized spec (defaults
// filled, paths root-relative) and its planned trials.
import {
  isMethodName,
  type MethodName,
  methodNames,
  PRESETS,
  type PresetName,
  presetConflict,
  validateHyperparameters,
} from '@mpo/objectives';
import { isObject } from '@mpo/util';
import { ashaRungs } from './asha.js';
import { confinePath, PathError } from './paths.js';
import { type Problem, ProblemsError } from './problems.js';
import { schemaProblems, show } from './schema-problems.js';
import {
  type AshaParams,
  BUILTIN_PREFIX,
  type DataFormat,
  type DataRef,
  DEPRECATED_TRAINING_NAMES,
  type Device,
  MAX_KEY_LENGTH,
  MAX_TRIALS,
  type ModelRef,
  type RunSpec,
  type RunSpecInput,
  RunSpecSchema,
  type SpaceDistribution,
  type SpaceEntryInput,
  type Strategy,
  type TrainingParams,
  TrainingSpec,
  TUNABLE_TRAINING_FIELDS,
} from './spec.js';
import { expandTrials, gridSize, TRAINING_KEY_PREFIX, type TrialPlan } from './sweep.js';

export interface SpecContext {
  /** Absolute directory model paths must stay inside. */
  modelRoot: string;
  /** Absolute directory data paths must stay inside. */
  dataRoot: string;
  /** Reject paths that do not exist (default true; the worker hosts are assumed to share the roots). */
  mustExist?: boolean;
  /** Known builtin model ids (without "builtin:"); undefined accepts any well-formed id. */
  builtinModels?: readonly string[];
  /** Known builtin data ids; undefined accepts any well-formed id. */
  builtinData?: readonly string[];
}

// The ids the trainer resolves (packages/trainer/src/builtins.ts); a test keeps the two lists equal.
export const DEFAULT_BUILTIN_MODELS = [
  'tiny-multilingual',
  'golden-llama',
  'tiny-multilingual-transfer',
] as const;
export const DEFAULT_BUILTIN_DATA = [
  'mpo-llama',
  'mpo-gemma',
  'mpo-qwen',
  'alpaca-en',
  'alpaca-zh',
  'golden-pairs',
  'mpo-transfer',
] as const;

export const TRAINING_DEFAULTS = {
  batchSize: 8,
  microBatch: 2,
  cutoff: 1024,
  // A periodic checkpoint bounds what a crash costs: transformers' TrainingArguments.save_steps
  // defaults to 500. A trial shorter than that checkpoints at its last step (see normalizeTraining).
  checkpointEvery: 500,
  seed: 42,
  learningRate: 1e-5,
  warmupRatio: 0.1,
} as const;

const BUILTIN_ID = /^[a-z0-9][a-z0-9._-]{0,99}$/;

export type SpecResult =
  /** warnings: deprecated names the spec used (still honoured). */
  { ok: true; spec: RunSpec; trials: TrialPlan[]; warnings: string[] } | { ok: false; problems: Problem[] };

/** Validates `input` and plans its trials; throws ProblemsError with every problem. */
export function parseRunSpec(
  input: unknown,
  ctx: SpecContext,
): { spec: RunSpec; trials: TrialPlan[]; warnings: string[] } {
  const r = validateRunSpec(input, ctx);
  if (!r.ok) throw new ProblemsError(r.problems, 'run spec');
  return { spec: r.spec, trials: r.trials, warnings: r.warnings };
}

/** What the section checks share: the input, the problems found so far, and the warnings. */
interface Check {
  raw: Partial<RunSpecInput>;
  ctx: SpecContext;
  problems: Problem[];
  warnings: string[];
  /** Adds a problem at `path`, unless one is there already. */
  bad: (path: string, reason: string) => void;
  /** Whether the schema left `path` (and everything under it) without a problem: a rejected field is not checked again. */
  clean: (path: string) => boolean;
}

/** The method, its preset and the fixed hyperparameters (preset's β under the spec's own). */
interface MethodPart {
  method: MethodName | undefined;
  preset: PresetName | undefined;
  fixed: Record<string, unknown>;
}

/** The resources of one trial. */
interface ResourcesPart {
  ranks: number;
  ranksPerHost: number | undefined;
  device: Device;
}

/** The training block: as given (under the current names) and normalized (undefined when it has problems). */
interface TrainingPart {
  given: NonNullable<RunSpecInput['training']> | undefined;
  training: TrainingParams | undefined;
}

interface SearchPart {
  strategy: Strategy | undefined;
  space: Record<string, SpaceDistribution>;
  asha: AshaParams | undefined;
}

export function validateRunSpec(input: unknown, ctx: SpecContext): SpecResult {
  const problems = schemaProblems(RunSpecSchema, input);
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return { ok: false, problems };
  const c: Check = {
    raw: input as Partial<RunSpecInput>,
    ctx,
    problems,
    warnings: [],
    bad: (path, reason) => {
      if (!problems.some((p) => p.path === path)) problems.push({ path, reason });
    },
    clean: (path) =>
      !problems.some(
        (p) => p.path === path || p.path.startsWith(`${path}.`) || p.path.startsWith(`${path}[`),
      ),
  };
  // Sections in the order their problems are reported.
  const model = checkModel(c);
  const data = checkData(c);
  checkLanguages(c);
  const m = checkMethod(c);
  const resources = checkResources(c);
  const t = checkTrainingNames(c, m.preset);
  const search = checkSearch(c, m, t);
  if (t.training && c.raw.training) checkTraining(c, t.training, resources, search);

  const { method } = m;
  if (problems.length > 0 || !model || !t.training || !c.raw.search || !search.strategy || !method) {
    if (problems.length === 0) problems.push({ path: '(root)', reason: 'incomplete spec' });
    return { ok: false, problems };
  }
  if (search.strategy === 'grid') checkGridCut(search.space, c.raw.search.maxTrials, c.bad);
  if (problems.length > 0) return { ok: false, problems };
  const spec = normalizedSpec(c.raw, {
    model,
    data,
    method,
    fixed: m.fixed,
    preset: m.preset,
    resources,
    training: t.training,
    strategy: search.strategy,
    space: search.space,
    asha: search.asha,
  });
  const trials = expandTrials(spec);
  checkTrials(c, spec, trials);
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, spec, trials, warnings: c.warnings };
}

function checkModel(c: Check): ModelRef | undefined {
  return c.clean('model') && c.raw.model ? resolveRef(c.raw.model, 'model', c.ctx, c.bad) : undefined;
}

function checkData(c: Check): DataRef[] {
  const { raw } = c;
  const data: DataRef[] = [];
  if (!c.clean('data') || raw.data === undefined) return data;
  const items = Array.isArray(raw.data) ? raw.data : [raw.data];
  items.forEach((item, i) => {
    const path = Array.isArray(raw.data) ? `data[${i}]` : 'data';
    const ref = typeof item === 'string' ? item : item.path;
    const format = typeof item === 'string' ? undefined : item.format;
    const report = (p: string, reason: string) => c.bad(typeof item === 'string' ? p : `${p}.path`, reason);
    const r = resolveRef(ref, 'data', c.ctx, report, path);
    if (r) data.push({ ...r, ...(format ? { format: format as DataFormat } : {}) });
  });
  return data;
}

function checkLanguages({ raw, clean, bad }: Check): void {
  if (clean('targetLanguages') && clean('dominantLanguage') && raw.targetLanguages && raw.dominantLanguage) {
    const i = raw.targetLanguages.indexOf(raw.dominantLanguage);
    if (i >= 0)
      bad(`targetLanguages[${i}]`, `must not include the dominant language "${raw.dominantLanguage}"`);
  }
}

function checkMethod({ raw, clean, bad }: Check): MethodPart {
  const methodOk = clean('method') && isMethodName(raw.method);
  if (clean('method') && !isMethodName(raw.method))
    bad('method', `must be one of ${methodNames.join(', ')}, got ${show(raw.method)}`);
  const preset = clean('preset') ? presetOf(raw, bad) : undefined;
  const fixed = { ...presetHyperparameters(preset, raw), ...(raw.hyperparameters ?? {}) };
  checkKeys(raw.hyperparameters, 'hyperparameters', bad);
  checkKeys(raw.search?.space, 'search.space', bad);
  const method = methodOk ? (raw.method as MethodName) : undefined;
  if (method && clean('hyperparameters')) {
    for (const p of validateHyperparameters(method, fixed, 'hyperparameters')) bad(p.path, p.reason);
  }
  return { method, preset, fixed };
}

function checkResources({ raw, bad }: Check): ResourcesPart {
  const ranks = raw.resources?.ranks ?? raw.resources?.ranksPerTrial ?? 1;
  const ranksPerHost = checkRanksPerHost(raw.resources, ranks, bad);
  return { ranks, ranksPerHost, device: raw.resources?.device ?? 'cpu' };
}

/** Names first (a field under both names is a problem), then the values, when the block has no problem. */
function checkTrainingNames(c: Check, preset: PresetName | undefined): TrainingPart {
  const { raw } = c;
  const given = isObject(raw.training) ? canonicalTraining(raw.training, c.bad, c.warnings) : undefined;
  const training = c.clean('training')
    ? normalizeTraining(withPreset(given ?? {}, preset, raw.search?.strategy))
    : undefined;
  return { given, training };
}

function checkSearch(c: Check, m: MethodPart, t: TrainingPart): SearchPart {
  const search = c.raw.search;
  const strategy = search?.strategy as Strategy | undefined;
  const space: Record<string, SpaceDistribution> = {};
  if (!search || !c.clean('search.strategy')) return { strategy, space, asha: undefined };
  for (const [key, entry] of Object.entries(
    search.space && typeof search.space === 'object' ? search.space : {},
  )) {
    const path = `search.space.${key}`;
    if (!c.clean(path)) continue;
    const d = toDistribution(entry);
    space[key] = d;
    checkDistribution(key, d, entry, path, strategy!, m.method, m.fixed, c.bad, c.warnings);
  }
  if ((strategy === 'random' || strategy === 'asha') && search.maxTrials === undefined)
    c.bad('search.maxTrials', `required for strategy "${strategy}"`);
  return { strategy, space, asha: checkAsha(c, strategy, t) };
}

/** search.asha: required by strategy "asha" and only used by it; its maxSteps is the trials' length. */
function checkAsha({ raw, clean, bad }: Check, strategy: Strategy | undefined, t: TrainingPart) {
  const search = raw.search!;
  if (strategy !== 'asha') {
    if (search.asha !== undefined) bad('search.asha', 'only used with strategy "asha"');
    return undefined;
  }
  if (!search.asha) {
    bad('search.asha', 'required for strategy "asha": {"minSteps", "maxSteps"}');
    return undefined;
  }
  if (!clean('search.asha')) return undefined;
  const asha: AshaParams = { ...search.asha, reductionFactor: search.asha.reductionFactor ?? 3 };
  if (asha.maxSteps <= asha.minSteps)
    bad('search.asha.maxSteps', `must be greater than minSteps (${asha.minSteps}), got ${asha.maxSteps}`);
  else if (ashaRungs(asha).length < 1) bad('search.asha', 'leaves no rung below maxSteps');
  if (raw.training?.epochs !== undefined)
    bad('training.epochs', 'not used with ASHA: trials run for search.asha.maxSteps steps');
  if (t.given?.maxSteps !== undefined && t.given.maxSteps !== asha.maxSteps)
    bad(
      `training.${stepsName(raw.training)}`,
      `must equal search.asha.maxSteps (${asha.maxSteps}) or be left out`,
    );
  return asha;
}

/** The training block's values against each other, the resources and the search (fills checkpointEvery). */
function checkTraining(c: Check, training: TrainingParams, r: ResourcesPart, s: SearchPart): void {
  const { bad } = c;
  const given = c.raw.training!;
  if (s.strategy !== 'asha') {
    if (training.steps === undefined && training.epochs === undefined)
      bad('training', 'needs "maxSteps" or "epochs"');
    if (training.steps !== undefined && training.epochs !== undefined)
      bad('training.epochs', `give "${stepsName(given)}" or "epochs", not both`);
  }
  checkBatch(training, r.ranks, 'training', bad, given.microBatch !== undefined ? 'microBatch' : undefined);
  if (training.dtype === 'fp16' && r.device !== 'gpu')
    bad('training.dtype', 'fp16 needs resources.device "gpu" (the CPU has no fp16 GEMM; use bf16 or fp32)');
  const total = s.strategy === 'asha' ? s.asha?.maxSteps : training.steps;
  if (given.checkpointEvery === undefined && total !== undefined)
    training.checkpointEvery = Math.min(training.checkpointEvery, total);
  if (total !== undefined && training.checkpointEvery > total)
    bad('training.checkpointEvery', `must not exceed the trial's ${total} steps`);
}

/** The spec with every default filled, from a problem-free input. */
function normalizedSpec(
  raw: Partial<RunSpecInput>,
  v: Omit<MethodPart, 'method'> &
    SearchPart & {
      model: ModelRef;
      data: DataRef[];
      method: MethodName;
      resources: ResourcesPart;
      training: TrainingParams;
      strategy: Strategy;
    },
): RunSpec {
  const search = raw.search!;
  const targets = raw.targetLanguages!;
  const { ranks, ranksPerHost, device } = v.resources;
  return {
    name: raw.name!,
    model: v.model,
    data: v.data,
    dominantLanguage: raw.dominantLanguage!,
    targetLanguages: targets,
    method: v.method,
    hyperparameters: v.fixed,
    search: {
      strategy: v.strategy,
      space: v.space,
      maxTrials: search.maxTrials ?? Math.min(gridSize(v.space), MAX_TRIALS),
      metric: search.metric,
      mode: search.mode,
      seed: search.seed ?? 0,
      ...(v.asha ? { asha: v.asha } : {}),
    },
    resources: { ranksPerTrial: ranks, device, ...(ranksPerHost !== undefined ? { ranksPerHost } : {}) },
    eval: {
      benchmarks: raw.eval!.benchmarks,
      languages: raw.eval!.languages ?? [raw.dominantLanguage!, ...targets],
      maxPrompts: raw.eval!.maxPrompts ?? 100,
      judge: raw.eval!.judge ?? 'builtin',
    },
    training: v.asha ? { ...v.training, steps: v.asha.maxSteps } : v.training,
    ...(v.preset ? { preset: v.preset } : {}),
  };
}

/** Each planned trial as a whole: combinations can break what single values did not (20 problems at most). */
function checkTrials({ problems, bad }: Check, spec: RunSpec, trials: TrialPlan[]): void {
  for (const t of trials) {
    for (const p of validateHyperparameters(spec.method, t.hyperparameters, 'hyperparameters'))
      bad(`search.space`, `trial ${t.index}: ${p.path}: ${p.reason}`);
    checkBatch(t.training, spec.resources.ranksPerTrial, `search.space (trial ${t.index}) training`, bad);
    if (problems.length >= 20) break;
  }
}

/** Keys of a record the schema cannot bound (TypeBox records have no key length). */
function checkKeys(
  record: Record<string, unknown> | undefined,
  path: string,
  bad: (path: string, reason: string) => void,
): void {
  if (!record || typeof record !== 'object') return;
  for (const key of Object.keys(record)) {
    if (key.length > MAX_KEY_LENGTH)
      bad(path, `key ${show(key)} has ${key.length} characters; at most ${MAX_KEY_LENGTH}`);
  }
}

/**
 * A grid larger than the trial cap is refused with its size unless maxTrials
 * says how to cut it; the cut keeps the first maxTrials points (so raising
 * maxTrials only appends) and is refused when it would drop every trial of
 * some value: a value listed in the space is never left out silently.
 */
function checkGridCut(
  space: Record<string, SpaceDistribution>,
  maxTrials: number | undefined,
  bad: (path: string, reason: string) => void,
): void {
  const size = gridSize(space);
  if (!Number.isFinite(size)) return; // a non-list entry: reported by checkDistribution
  if (maxTrials === undefined) {
    if (size > MAX_TRIALS)
      bad(
        'search.space',
        `the grid has ${describeGrid(space)} = ${size} points, more than the ${MAX_TRIALS} trials a run may have; shrink it or set search.maxTrials to cut it`,
      );
    return;
  }
  if (maxTrials >= size) return;
  // Last key varies fastest: the first maxTrials points cover a key's values
  // only when maxTrials reaches a full cycle of that key.
  // Value index of key k at point i is floor(i / inner) mod n, inner being the
  // product of the later keys' sizes: the first m points show ceil(m / inner) values.
  let inner = 1;
  const keys = Object.keys(space);
  for (let k = keys.length - 1; k >= 0; k--) {
    const key = keys[k]!;
    const d = space[key]!;
    if (d.type !== 'choice') continue;
    const n = d.values.length;
    const kept = Math.min(n, Math.ceil(maxTrials / inner));
    if (kept < n) {
      bad(
        'search.maxTrials',
        `${maxTrials} cuts the ${size}-point grid (${describeGrid(space)}) and would drop ${n - kept} of the ${n} values of "${key}" (${show(d.values.slice(kept))}); raise maxTrials to at least ${(n - 1) * inner + 1}, shrink the space, or use strategy "random"`,
      );
      return;
    }
    inner *= n;
  }
}

const describeGrid = (space: Record<string, SpaceDistribution>) =>
  Object.entries(space)
    .map(([k, d]) => `${d.type === 'choice' ? d.values.length : '∞'} ${k}`)
    .join(' × ') || 'one point';

function resolveRef(
  ref: string,
  kind: 'model' | 'data',
  ctx: SpecContext,
  bad: (path: string, reason: string) => void,
  path: string = kind,
): ModelRef | undefined {
  if (ref.startsWith(BUILTIN_PREFIX)) {
    const id = ref.slice(BUILTIN_PREFIX.length);
    const known = kind === 'model' ? ctx.builtinModels : ctx.builtinData;
    if (!BUILTIN_ID.test(id)) bad(path, `malformed builtin id ${show(ref)}`);
    else if (known && !known.includes(id))
      bad(
        path,
        `unknown builtin ${kind} ${show(ref)}; known: ${known.map((k) => BUILTIN_PREFIX + k).join(', ')}`,
      );
    else return { kind: 'builtin', id };
    return undefined;
  }
  const root = kind === 'model' ? ctx.modelRoot : ctx.dataRoot;
  try {
    return { kind: 'path', path: confinePath(root, ref, { mustExist: ctx.mustExist ?? true }) };
  } catch (err) {
    if (!(err instanceof PathError)) throw err;
    bad(path, `${show(ref)} ${err.message.replace('the root', `the ${kind} root`)}`);
    return undefined;
  }
}

function toDistribution(entry: SpaceEntryInput): SpaceDistribution {
  if (Array.isArray(entry)) return { type: 'choice', values: entry };
  return entry as SpaceDistribution;
}

function checkDistribution(
  key: string,
  d: SpaceDistribution,
  entry: SpaceEntryInput,
  path: string,
  strategy: Strategy,
  method: string | undefined,
  fixed: Record<string, unknown>,
  bad: (path: string, reason: string) => void,
  warnings: string[],
): void {
  if (strategy === 'grid' && d.type !== 'choice') {
    bad(
      path,
      `grid search needs a list of values, got a ${d.type} distribution (use strategy "random" or "asha")`,
    );
    return;
  }
  if ((d.type === 'uniform' || d.type === 'loguniform') && !(d.min < d.max))
    bad(`${path}.max`, `must be greater than min (${d.min}), got ${d.max}`);
  if (d.type === 'int' && !(d.min <= d.max)) bad(`${path}.max`, `must be ≥ min (${d.min}), got ${d.max}`);
  // Candidate values to check against the target's own rules: every choice, or a range's ends.
  const candidates: Array<[string, unknown]> =
    d.type === 'choice'
      ? d.values.map((v, i) => [Array.isArray(entry) ? `${path}[${i}]` : `${path}.values[${i}]`, v])
      : [
          [`${path}.min`, d.min],
          [`${path}.max`, d.max],
        ];
  if (key.startsWith(TRAINING_KEY_PREFIX)) {
    const field = key.slice(TRAINING_KEY_PREFIX.length);
    if (!(TUNABLE_TRAINING_FIELDS as readonly string[]).includes(field)) {
      bad(
        path,
        `unknown training field; a space may vary ${TUNABLE_TRAINING_FIELDS.map((f) => TRAINING_KEY_PREFIX + f).join(', ')}`,
      );
      return;
    }
    if (field in DEPRECATED_TRAINING_NAMES)
      warnings.push(
        `${path}: deprecated, use ${TRAINING_KEY_PREFIX}${DEPRECATED_TRAINING_NAMES[field as keyof typeof DEPRECATED_TRAINING_NAMES]}`,
      );
    if (strategy === 'asha' && field === 'epochs') {
      bad(path, 'ASHA trials run by steps, not epochs');
      return;
    }
    const fieldSchema = TrainingSpec.properties[field as keyof typeof TrainingSpec.properties];
    for (const [p, v] of candidates) {
      const inner = schemaProblems(fieldSchema, v);
      if (inner[0]) bad(p, inner[0].reason);
    }
    return;
  }
  if (!method) return;
  for (const [p, v] of candidates) {
    for (const problem of validateHyperparameters(method, { ...fixed, [key]: v }, '')) {
      if (problem.path === key || problem.path.startsWith(`${key}.`)) {
        bad(problem.reason.startsWith('unknown hyperparameter') ? path : p, problem.reason);
      }
    }
  }
}

/** The spec's preset, when it names one that fits its method (else a problem at "preset"). */
function presetOf(
  raw: Partial<RunSpecInput>,
  bad: (path: string, reason: string) => void,
): PresetName | undefined {
  if (raw.preset === undefined) return undefined;
  const conflict = presetConflict(raw.preset, raw.method);
  if (conflict) bad('preset', conflict);
  return conflict ? undefined : raw.preset;
}

/** The preset's β, unless the search space varies it. */
function presetHyperparameters(preset: PresetName | undefined, raw: Partial<RunSpecInput>) {
  if (!preset) return {};
  const space = raw.search?.space ?? {};
  const h: Record<string, unknown> = { ...PRESETS[preset].hyperparameters };
  for (const k of Object.keys(h)) if (k in space) delete h[k];
  return h;
}

/** Training fields the spec left out, from the preset; epochs only when the spec sets neither steps nor epochs. */
function withPreset(
  t: NonNullable<RunSpecInput['training']>,
  preset: PresetName | undefined,
  strategy: unknown,
): NonNullable<RunSpecInput['training']> {
  if (!preset) return t;
  const { epochs, ...rest } = PRESETS[preset].training;
  const byLength = t.maxSteps === undefined && t.epochs === undefined && strategy !== 'asha';
  return { ...rest, cutoff: PRESETS[preset].cutoff, ...(byLength ? { epochs } : {}), ...t };
}

/** The name the spec gave the step count under (the deprecated "steps" or "maxSteps"), for messages. */
const stepsName = (t: RunSpecInput['training'] | undefined) =>
  t?.steps !== undefined ? 'steps' : 'maxSteps';

/**
 * The training block under the training config's names: each deprecated name (DEPRECATED_TRAINING_NAMES) is
 * moved to its new one with a warning; giving both is a problem.
 */
function canonicalTraining(
  t: NonNullable<RunSpecInput['training']>,
  bad: (path: string, reason: string) => void,
  warnings: string[],
): NonNullable<RunSpecInput['training']> {
  const out: Record<string, unknown> = { ...t };
  for (const [old, name] of Object.entries(DEPRECATED_TRAINING_NAMES)) {
    if (out[old] === undefined) continue;
    if (out[name] !== undefined)
      bad(`training.${old}`, `deprecated name of training.${name}: give one of them`);
    else {
      warnings.push(`training.${old}: deprecated, use training.${name}`);
      out[name] = out[old];
    }
    delete out[old];
  }
  return out as NonNullable<RunSpecInput['training']>;
}

/**
 * Optimizer fields a spec may set beyond the defaults below: stored in the normalized spec and passed on
 * to the trainer's config only when given (apps/worker trainer-config.ts reads the same list).
 */
export const PASSED_THROUGH_TRAINING = [
  'weightDecay',
  'maxGradNorm',
  'adamBeta1',
  'adamBeta2',
  'adamEps',
  'keepCheckpoints',
  'zeroStage',
] as const;

function normalizeTraining(t: NonNullable<RunSpecInput['training']>): TrainingParams {
  const extra: Partial<TrainingParams> = {};
  for (const k of PASSED_THROUGH_TRAINING) if (t[k] !== undefined) extra[k] = t[k];
  return {
    ...(t.maxSteps !== undefined ? { steps: t.maxSteps } : {}),
    ...(t.epochs !== undefined ? { epochs: t.epochs } : {}),
    batchSize: t.batchSize ?? TRAINING_DEFAULTS.batchSize,
    microBatch: t.microBatchSize ?? TRAINING_DEFAULTS.microBatch,
    cutoff: t.cutoff ?? TRAINING_DEFAULTS.cutoff,
    checkpointEvery: t.checkpointEvery ?? TRAINING_DEFAULTS.checkpointEvery,
    seed: t.seed ?? TRAINING_DEFAULTS.seed,
    learningRate: t.learningRate ?? TRAINING_DEFAULTS.learningRate,
    warmupRatio: t.warmupRatio ?? TRAINING_DEFAULTS.warmupRatio,
    ...(t.dtype !== undefined ? { dtype: t.dtype } : {}),
    ...(t.activationCheckpointing !== undefined
      ? { activationCheckpointing: t.activationCheckpointing }
      : {}),
    ...(t.lora !== undefined ? { lora: t.lora } : {}),
    ...extra,
  };
}

/** `microName`: the name the spec gave the micro-batch under (default the training config's, microBatchSize). */
function checkBatch(
  t: TrainingParams,
  ranks: number,
  prefix: string,
  bad: (path: string, reason: string) => void,
  microName = 'microBatchSize',
): void {
  if (t.batchSize % ranks !== 0)
    bad(`${prefix}.batchSize`, `must be divisible by resources.ranksPerTrial (${ranks}), got ${t.batchSize}`);
  else if (t.microBatch > t.batchSize / ranks)
    bad(
      `${prefix}.${microName}`,
      `must not exceed the per-rank batch (batchSize ${t.batchSize} / ${ranks} ranks = ${t.batchSize / ranks}), got ${t.microBatch}`,
    );
}

/**
 * resources.ranks (alias of ranksPerTrial: both given must agree) and ranksPerHost, which must divide
 * the ranks. Returns ranksPerHost when the trial spans more than one host, else undefined.
 */
function checkRanksPerHost(
  r: RunSpecInput['resources'],
  ranks: number,
  bad: (path: string, reason: string) => void,
): number | undefined {
  if (r?.ranks !== undefined && r.ranksPerTrial !== undefined && r.ranks !== r.ranksPerTrial)
    bad(
      'resources.ranks',
      `must equal resources.ranksPerTrial (${r.ranksPerTrial}) when both are given, got ${r.ranks}`,
    );
  const perHost = r?.ranksPerHost;
  if (perHost === undefined) return undefined;
  if (ranks % perHost !== 0)
    bad('resources.ranksPerHost', `must divide resources.ranks (${ranks}), got ${perHost}`);
  return perHost < ranks ? perHost : undefined;
}
