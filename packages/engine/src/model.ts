// The Model: a Llama-family checkpoint in libtorch behind the addon. Long calls return Promises
// and run off the JS thread.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fromHfConfig, type LlamaConfig, toHfConfig, toNativeConfig, validateConfig } from './config.js';
import { errorMessage } from './errors.js';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  fromPeftAdapterConfig,
  type LoraOptions,
  peftAdapterConfig,
  validateLora,
} from './lora.js';
import { type NativeModel, type NativeTensorInfo, native } from './native.js';
import {
  buildHeader,
  DEFAULT_MAX_SHARD_BYTES,
  planShards,
  readCheckpointTensors,
  readSafetensorsHeader,
  type StDtype,
  type StTensor,
  shardIndex,
} from './safetensors.js';

export type Device = 'cpu' | `cuda:${number}`;
export type Dtype = 'float32' | 'bfloat16' | 'float16';
/** 'float64' is accepted for gradient checks on tiny models (CPU). */
type AnyDtype = Dtype | 'float64';
export type Pooling = 'last' | 'mean' | 'meanUnmasked';

/**
 * Where the weights live: 'float32' (default) keeps every weight as an fp32 master in the engine;
 * 'bfloat16' (dtype bfloat16 on the CPU only) stores weights and gradients in bf16, 2 bytes per
 * parameter each, with no fp32 copy: the fp32 master and AdamW state are then the trainer's
 * (sharded by ZeRO), step()/gradNorm()/paramBuffer()/gradBuffer() refuse and paramBits()/gradBits()
 * expose the bf16 bits.
 */
export type WeightStorage = 'float32' | 'bfloat16';

export interface LoadOptions {
  device?: Device;
  /** Compute dtype (default float32). Parameters are fp32 master weights unless weightStorage says bf16. */
  dtype?: Dtype;
  weightStorage?: WeightStorage;
  threads?: number;
  /** Activation checkpointing per decoder layer (see setActivationCheckpointing). Default false. */
  activationCheckpointing?: boolean;
}

export interface InitOptions {
  seed: number;
  device?: Device;
  dtype?: AnyDtype;
  weightStorage?: WeightStorage;
  threads?: number;
  activationCheckpointing?: boolean;
  /** Standard deviation of the normal init of matrices (default 0.02, as initializer_range). */
  std?: number;
}

export interface ScoreBatch {
  /** Each sequence is prompt ids followed by response ids. */
  sequences: ArrayLike<number>[];
  /** Response = positions >= promptLength. */
  promptLengths: number[];
}

export interface ScoreOptions {
  /** Keep the graph for backward() (the result carries a handle). */
  grad?: boolean;
  /** false: hidden states only, no logits and no sumLogp. Default true. */
  lmHead?: boolean;
  pooling?: Pooling[];
  /** Reference model: adds kl = sum over response positions of KL(ref || policy). */
  reference?: Model;
  /** false: score the base model (LoRA adapters off). Reference forwards always run adapters off. */
  adapters?: boolean;
}

export interface ScoreResult {
  handle?: number;
  n: number;
  hiddenSize: number;
  /** Sum of log p(response token | prefix) over response tokens (zeros with lmHead: false). */
  sumLogp: Float64Array;
  /** Number of scored response tokens. */
  tokens: Int32Array;
  lastHidden?: Float32Array;
  meanHidden?: Float32Array;
  meanUnmaskedHidden?: Float32Array;
  kl?: Float64Array;
}

export interface ScoreGrads {
  sumLogp?: ArrayLike<number>;
  lastHidden?: Float32Array;
  meanHidden?: Float32Array;
  meanUnmaskedHidden?: Float32Array;
  kl?: ArrayLike<number>;
}

export interface StepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay, applied to every parameter (as torch.optim.AdamW). Default 0.01. */
  weightDecay?: number;
  /** Clip by global norm before the update; 0 or undefined: no clipping. */
  maxGradNorm?: number;
  /**
   * Loss scaling: the gradient buffer holds gradScale x the gradients (the upstream gradients given
   * to backward() were scaled). The step divides by it; the norm returned is the unscaled one, and a
   * non-finite norm (overflow) skips the update. Default 1.
   */
  gradScale?: number;
}

export interface GenerateOptions {
  maxNewTokens: number;
  eosTokenIds: number[];
  /** 0 (default): greedy. */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Default true; false recomputes the whole sequence every step (for tests). */
  kvCache?: boolean;
}

const FILE_DTYPE: Record<AnyDtype, StDtype> = {
  float32: 'F32',
  bfloat16: 'BF16',
  float16: 'F16',
  float64: 'F32',
};
const FROM_FILE_DTYPE: Record<string, Dtype> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

function defaultThreads(n?: number): number {
  if (n === undefined) return Math.max(1, availableParallelism());
  if (!Number.isInteger(n) || n < 1) throw new Error(`threads must be a positive integer (got ${n})`);
  return n;
}

function checkDevice(device: string): void {
  if (device !== 'cpu' && !/^cuda:\d+$/.test(device))
    throw new Error(`unknown device '${device}' (expected cpu or cuda:N)`);
}

export class Model {
  readonly config: LlamaConfig;
  readonly device: Device;
  readonly dtype: AnyDtype;
  readonly weightStorage: WeightStorage;
  /** dtype save() writes by default: the checkpoint's own dtype when loaded, else the compute dtype. */
  saveDtype: Dtype;
  private nm: NativeModel | null;
  /** The trainable tensors (the adapters once enableLora() ran). */
  private table: NativeTensorInfo[];
  private nParams: number;
  private loraOpts: Required<LoraOptions> | null = null;
  private readonly threads: number;

  private constructor(
    config: LlamaConfig,
    device: Device,
    dtype: AnyDtype,
    threads: number,
    weightStorage: WeightStorage = 'float32',
  ) {
    validateConfig(config);
    checkDevice(device);
    if (weightStorage === 'bfloat16' && (dtype !== 'bfloat16' || device !== 'cpu'))
      throw new Error('weightStorage bfloat16 needs dtype bfloat16 on the CPU');
    if (dtype === 'float16' && device === 'cpu') {
      throw new Error(
        'float16 compute needs a CUDA device (libtorch has no CPU float16 GEMM); on the CPU use float32 ' +
          '(float16 checkpoints load into float32) or bfloat16',
      );
    }
    this.config = config;
    this.device = device;
    this.dtype = dtype;
    this.saveDtype = dtype === 'float64' ? 'float32' : dtype;
    this.weightStorage = weightStorage;
    this.nm = new (native().NativeModel)(
      toNativeConfig(config),
      device,
      dtype,
      threads,
      weightStorage === 'bfloat16',
    );
    this.table = this.nm.tensorTable();
    this.nParams = this.nm.numParameters();
    this.threads = threads;
  }

  /** Trainable parameters: every weight, or only the adapters after enableLora(). */
  get numParameters(): number {
    return this.nParams;
  }

  /** The LoRA options in effect, or null (full fine-tuning). */
  get lora(): Readonly<Required<LoraOptions>> | null {
    return this.loraOpts;
  }

  /**
   * Freeze the current weights as the base and train LoRA adapters on `opts.targetModules`
   * (csrc/lora.h): from here on paramBuffer/gradBuffer/step/optimizer state/weightsHash/save cover
   * the adapters only (PEFT tensor names in tensorLayout()). With dtype bfloat16 the frozen base is
   * kept in bf16 only (its fp32 master copy is freed). Graphs kept for backward are released.
   */
  enableLora(opts: LoraOptions): void {
    const o = validateLora(opts);
    this.n.enableLora({
      rank: o.rank,
      alpha: o.alpha,
      dropout: o.dropout,
      targets: [...o.targetModules],
      seed: o.seed,
    });
    this.loraOpts = o;
    this.table = this.n.tensorTable();
    this.nParams = this.n.numParameters();
  }

  /** The training step that keys LoRA dropout masks (set by the trainer; makes resumes identical). */
  setAdapterStep(step: number): void {
    if (!Number.isSafeInteger(step) || step < 0)
      throw new Error('setAdapterStep: step must be a non-negative integer');
    this.n.setAdapterStep(step);
  }

  /**
   * A plain model holding base + (alpha/r)·B·A for every adapter (PEFT's merge_and_unload()),
   * in float32 on the same device; its save() writes the merged Hugging Face folder.
   */
  mergedModel(): Model {
    if (!this.loraOpts) throw new Error('mergedModel: the model has no LoRA adapters');
    const dtype = this.dtype === 'float64' ? 'float32' : this.dtype;
    const merged = new Model(this.config, this.device, dtype, this.threads);
    try {
      this.n.loraMergeInto(merged.n);
    } catch (e) {
      merged.dispose();
      throw e;
    }
    merged.saveDtype = this.saveDtype;
    return merged;
  }

  /**
   * PEFT's adapter folder: adapter_config.json + adapter_model.safetensors (tensor names
   * base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight, ...), loadable with
   * `PeftModel.from_pretrained(base, dir)`.
   */
  async saveAdapter(dir: string, opts: { dtype?: Dtype; baseModel?: string | null } = {}): Promise<void> {
    const o = this.loraOpts;
    if (!o) throw new Error('saveAdapter: the model has no LoRA adapters');
    const st = FILE_DTYPE[opts.dtype ?? 'float32'];
    await mkdir(dir, { recursive: true });
    const header = buildHeader(
      this.table.map((t) => ({ name: t.name, dtype: st, shape: t.shape })),
      { format: 'pt' },
    );
    await this.n.writeSafetensors(
      join(dir, ADAPTER_WEIGHTS_FILE),
      header,
      this.table.map((t) => ({ source: 'param' as const, offset: t.offset, numel: t.numel, dtype: st })),
    );
    const cfg = peftAdapterConfig(o, opts.baseModel ?? null);
    await writeFile(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(cfg, null, 2)}\n`);
  }

  /**
   * Load a PEFT adapter folder into this model's adapters (enabling them from its
   * adapter_config.json when not enabled yet; an enabled model must have the same rank, alpha and
   * targets).
   */
  async loadAdapter(dir: string, opts: { seed?: number } = {}): Promise<void> {
    const cfgPath = join(dir, ADAPTER_CONFIG_FILE);
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`${cfgPath}: ${errorMessage(e)}`);
    }
    const found = fromPeftAdapterConfig(raw, cfgPath);
    if (!this.loraOpts) this.enableLora({ ...found, seed: opts.seed ?? 0 });
    const have = this.loraOpts!;
    const same =
      have.rank === found.rank &&
      have.alpha === found.alpha &&
      [...have.targetModules].sort().join() === [...found.targetModules].sort().join();
    if (!same)
      throw new Error(
        `${cfgPath}: adapter (r=${found.rank}, alpha=${found.alpha}, ${found.targetModules}) differs from the model's (r=${have.rank}, alpha=${have.alpha}, ${have.targetModules})`,
      );
    const file = join(dir, ADAPTER_WEIGHTS_FILE);
    const st = await readSafetensorsHeader(file);
    const entries = this.table.map((t) => {
      const e = st.tensors.get(t.name);
      if (!e) throw new Error(`${file}: missing tensor ${t.name}`);
      checkTensor(file, t, e);
      const entry = {
        file,
        dtype: e.dtype,
        fileOffset: e.fileOffset,
        nbytes: e.nbytes,
        target: 'param' as const,
        offset: t.offset,
        numel: t.numel,
      };
      return entry;
    });
    await this.n.readTensors(entries);
  }

  private get n(): NativeModel {
    if (!this.nm) throw new Error('model was disposed');
    return this.nm;
  }

  /** An empty model with the options' defaults filled in (cpu, float32, the default thread count). */
  private static withDefaults(config: LlamaConfig, opts: InitOptions | LoadOptions): Model {
    return new Model(
      config,
      opts.device ?? 'cpu',
      opts.dtype ?? 'float32',
      defaultThreads(opts.threads),
      opts.weightStorage,
    );
  }

  /** Random init (normal(0, std) matrices, unit norms, zero biases), deterministic in the seed. */
  static init(config: LlamaConfig, opts: InitOptions): Model {
    const m = Model.withDefaults(config, opts);
    m.n.initRandom(opts.seed, opts.std ?? 0.02);
    if (opts.activationCheckpointing) m.setActivationCheckpointing(true);
    return m;
  }

  /** Load config.json + model.safetensors (or sharded model.safetensors.index.json) from `dir`. */
  static async load(dir: string, opts: LoadOptions = {}): Promise<Model> {
    let hf: Record<string, unknown>;
    const cfgPath = join(dir, 'config.json');
    try {
      hf = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new Error(err.code === 'ENOENT' ? `${cfgPath}: not found` : `${cfgPath}: ${err.message}`);
    }
    const config = fromHfConfig(hf);
    const tensors = await readCheckpointTensors(dir);
    const m = Model.withDefaults(config, opts);
    try {
      const entries = m.table.map((t) => {
        const st = tensors.get(t.name);
        if (!st) throw new Error(`${dir}: missing tensor ${t.name}`);
        checkTensor(dir, t, st);
        return {
          file: st.file,
          dtype: st.dtype,
          fileOffset: st.fileOffset,
          nbytes: st.nbytes,
          target: 'param' as const,
          offset: t.offset,
          numel: t.numel,
        };
      });
      await m.n.readTensors(entries);
      const embedDtype = tensors.get('model.embed_tokens.weight')?.dtype ?? 'F32';
      m.saveDtype = FROM_FILE_DTYPE[embedDtype] ?? 'float32';
      if (opts.activationCheckpointing) m.setActivationCheckpointing(true);
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  /**
   * config.json + model.safetensors with Hugging Face tensor names; above `maxShardBytes` (default
   * 5 GB, as transformers) the weights are split into numbered shards listed by
   * model.safetensors.index.json. Weight files of an earlier save in `dir` are removed first, so a
   * reader never mixes the two.
   */
  async save(dir: string, opts: { dtype?: Dtype; maxShardBytes?: number } = {}): Promise<void> {
    // With adapters the trainable state is the adapter folder (mergedModel().save() for weights).
    if (this.loraOpts) return this.saveAdapter(dir, opts.dtype ? { dtype: opts.dtype } : {});
    const dtype = opts.dtype ?? this.saveDtype;
    const st = FILE_DTYPE[dtype];
    await mkdir(dir, { recursive: true });
    for (const f of await readdir(dir)) {
      if (/^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$/.test(f)) await rm(join(dir, f));
    }
    const entries = this.table.map((t) => ({ name: t.name, dtype: st, shape: t.shape, t }));
    const plans = planShards(entries, opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
    for (const p of plans) {
      const header = buildHeader(
        p.entries.map(({ name, shape }) => ({ name, dtype: st, shape })),
        { format: 'pt' },
      );
      await this.n.writeSafetensors(
        join(dir, p.file),
        header,
        p.entries.map(({ t }) => ({ source: 'param' as const, offset: t.offset, numel: t.numel, dtype: st })),
      );
    }
    if (plans.length > 1) {
      await writeFile(
        join(dir, 'model.safetensors.index.json'),
        `${JSON.stringify(shardIndex(plans), null, 2)}\n`,
      );
    }
    await writeFile(join(dir, 'config.json'), `${JSON.stringify(toHfConfig(this.config, dtype), null, 2)}\n`);
  }

  /** AdamW moments and step count, as a safetensors file (exp_avg, exp_avg_sq; step in the metadata). */
  async saveOptimizer(path: string): Promise<void> {
    const P = this.numParameters;
    const header = buildHeader(
      [
        { name: 'exp_avg', dtype: 'F32', shape: [P] },
        { name: 'exp_avg_sq', dtype: 'F32', shape: [P] },
      ],
      { format: 'mpo-adamw', step: String(this.n.optimizerStep()), numParameters: String(P) },
    );
    await this.n.writeSafetensors(path, header, [
      { source: 'exp_avg', offset: 0, numel: P, dtype: 'F32' },
      { source: 'exp_avg_sq', offset: 0, numel: P, dtype: 'F32' },
    ]);
  }

  async loadOptimizer(path: string): Promise<void> {
    const st = await readSafetensorsHeader(path);
    if (st.metadata.format !== 'mpo-adamw')
      throw new Error(`${path}: not an optimizer state file (format ${st.metadata.format})`);
    const P = this.numParameters;
    const entries = (['exp_avg', 'exp_avg_sq'] as const).map((name) => {
      const t = st.tensors.get(name);
      if (!t) throw new Error(`${path}: missing tensor ${name}`);
      if (t.dtype !== 'F32' || t.shape.length !== 1 || t.shape[0] !== P) {
        throw new Error(
          `${path}: ${name} has shape [${t.shape}] ${t.dtype}, expected [${P}] F32 (different model?)`,
        );
      }
      return {
        file: path,
        dtype: 'F32',
        fileOffset: t.fileOffset,
        nbytes: t.nbytes,
        target: name,
        offset: 0,
        numel: P,
      };
    });
    const step = Number(st.metadata.step);
    if (!Number.isInteger(step) || step < 0) throw new Error(`${path}: bad step count ${st.metadata.step}`);
    await this.n.readTensors(entries);
    this.n.setOptimizerStep(step);
  }

  /** Number of AdamW steps taken (or loaded). */
  get optimizerStep(): number {
    return this.n.optimizerStep();
  }

  async score(batch: ScoreBatch, opts: ScoreOptions = {}): Promise<ScoreResult> {
    const { tokens, offsets, promptLens } = this.flatten(batch.sequences, batch.promptLengths);
    const pooling = new Set(opts.pooling ?? []);
    for (const p of pooling) {
      if (p !== 'last' && p !== 'mean' && p !== 'meanUnmasked')
        throw new Error(`unknown pooling '${String(p)}'`);
    }
    const lmHead = opts.lmHead ?? true;
    const ref = opts.reference;
    if (ref && ref.config.vocabSize !== this.config.vocabSize)
      throw new Error('reference model has a different vocabulary');
    const r = await this.n.score(tokens, offsets, promptLens, {
      grad: opts.grad ?? false,
      lmHead,
      last: pooling.has('last'),
      mean: pooling.has('mean'),
      meanUnmasked: pooling.has('meanUnmasked'),
      ...(ref ? { reference: ref.n } : {}),
      adapters: opts.adapters ?? true,
    });
    const out: ScoreResult = {
      n: r.n,
      hiddenSize: r.hiddenSize,
      sumLogp: r.sumLogp ?? new Float64Array(r.n),
      tokens: r.tokens,
    };
    if (r.handle !== undefined) out.handle = r.handle;
    if (r.lastHidden) out.lastHidden = r.lastHidden;
    if (r.meanHidden) out.meanHidden = r.meanHidden;
    if (r.meanUnmaskedHidden) out.meanUnmaskedHidden = r.meanUnmaskedHidden;
    if (r.kl) out.kl = r.kl;
    return out;
  }

  /** Accumulate parameter gradients from upstream gradients of a score(grad: true) result; frees its graph. */
  async backward(handle: number, grads: ScoreGrads): Promise<void> {
    const f64 = (a?: ArrayLike<number>) => (a === undefined ? undefined : Float64Array.from(a));
    const g: Parameters<NativeModel['backward']>[1] = {};
    const s = f64(grads.sumLogp);
    if (s) g.sumLogp = s;
    const k = f64(grads.kl);
    if (k) g.kl = k;
    if (grads.lastHidden) g.lastHidden = grads.lastHidden;
    if (grads.meanHidden) g.meanHidden = grads.meanHidden;
    if (grads.meanUnmaskedHidden) g.meanUnmaskedHidden = grads.meanUnmaskedHidden;
    await this.n.backward(handle, g);
  }

  /** Drop a graph kept by score(grad: true) without back-propagating. */
  release(handle: number): void {
    this.nm?.release(handle);
  }

  zeroGrad(): void {
    this.n.zeroGrad();
  }

  /**
   * The flat fp32 gradient buffer every parameter's gradient is a view of (CPU: zero-copy; writing
   * into it changes the gradients). Layout: parameters in tensorLayout() order.
   */
  gradBuffer(): Float32Array {
    return this.n.gradBuffer();
  }

  /** The flat fp32 (master) parameters, same layout. After writing into it call syncParams(). */
  paramBuffer(): Float32Array {
    return this.n.paramBuffer();
  }

  /** weightStorage 'bfloat16': the bf16 bits of the weights (zero-copy; call syncParams() after writing). */
  paramBits(): Uint16Array {
    return this.n.paramBits();
  }

  /** weightStorage 'bfloat16': the bf16 bits of the gradients (zero-copy), layout as gradBuffer(). */
  gradBits(): Uint16Array {
    return this.n.gradBits();
  }

  /** Propagate writes into paramBuffer() to the compute copies (needed for non-fp32 compute or CUDA). */
  syncParams(): void {
    this.n.syncParams();
  }

  /** Hugging Face tensor names, shapes and offsets (in elements) in the flat buffers. */
  tensorLayout(): { name: string; shape: number[]; offset: number; numel: number }[] {
    return this.table.map((t) => ({ ...t, shape: [...t.shape] }));
  }

  /** Global L2 norm of the current gradients. */
  gradNorm(): number {
    return this.n.gradNorm();
  }

  /** AdamW step (decoupled weight decay; clip by global norm first). Returns the pre-clip norm. */
  async step(opts: StepOptions): Promise<{ gradNorm: number }> {
    if (!(typeof opts.lr === 'number' && Number.isFinite(opts.lr)))
      throw new Error('step: lr must be a finite number');
    const o: Parameters<NativeModel['step']>[0] = { lr: opts.lr };
    if (opts.beta1 !== undefined) o.beta1 = opts.beta1;
    if (opts.beta2 !== undefined) o.beta2 = opts.beta2;
    if (opts.eps !== undefined) o.eps = opts.eps;
    if (opts.weightDecay !== undefined) o.weightDecay = opts.weightDecay;
    if (opts.maxGradNorm !== undefined) o.maxGradNorm = opts.maxGradNorm;
    if (opts.gradScale !== undefined) o.gradScale = opts.gradScale;
    return { gradNorm: await this.n.step(o) };
  }

  /** sha256 (hex) over all fp32 master parameters in layout order. */
  weightsHash(): string {
    if (this.weightStorage === 'bfloat16') {
      // The fp32 words of the bf16 values (bits << 16), in slices: the same hash as an fp32-stored
      // model holding the same values, without a full fp32 copy.
      const bits = this.n.paramBits();
      const h = createHash('sha256');
      const word = new Uint32Array(Math.min(bits.length, 1 << 20));
      for (let i = 0; i < bits.length; i += word.length) {
        const n = Math.min(word.length, bits.length - i);
        for (let j = 0; j < n; j++) word[j] = bits[i + j]! << 16;
        h.update(new Uint8Array(word.buffer, 0, n * 4));
      }
      return h.digest('hex');
    }
    const p = this.n.paramBuffer();
    return createHash('sha256')
      .update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength))
      .digest('hex');
  }

  /**
   * Generated token ids per prompt (without the prompt), stopping after an EOS id (which is
   * included) or maxNewTokens.
   */
  async generate(prompts: number[][], opts: GenerateOptions): Promise<number[][]> {
    const { tokens, offsets } = this.flatten(prompts, null);
    if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0)
      throw new Error('generate: maxNewTokens must be >= 0');
    const out = await this.n.generate(tokens, offsets, {
      maxNewTokens: opts.maxNewTokens,
      eos: Int32Array.from(opts.eosTokenIds),
      temperature: opts.temperature ?? 0,
      topP: opts.topP ?? 1,
      seed: opts.seed ?? 0,
      kvCache: opts.kvCache ?? true,
    });
    return out.map((a) => Array.from(a));
  }

  /** fp32 logits at the last position of one sequence. */
  async logits(sequence: ArrayLike<number>): Promise<Float32Array> {
    const { tokens } = this.flatten([sequence], null);
    return this.n.logits(tokens);
  }

  /**
   * Activation checkpointing: score({ grad: true }) keeps only each decoder layer's input and
   * backward() recomputes the layer's activations (less memory, about one more forward of compute).
   * Gradients are those of the plain graph.
   */
  setActivationCheckpointing(on: boolean): void {
    this.n.setCheckpointing(on);
  }

  setThreads(n: number): void {
    this.n.setThreads(defaultThreads(n));
  }

  dispose(): void {
    this.nm?.dispose();
    this.nm = null;
  }

  private flatten(
    seqs: ArrayLike<number>[],
    promptLengths: number[] | null,
  ): { tokens: Int32Array; offsets: Float64Array; promptLens: Float64Array } {
    if (promptLengths && promptLengths.length !== seqs.length) {
      throw new Error(`score: ${seqs.length} sequences but ${promptLengths.length} promptLengths`);
    }
    const V = this.config.vocabSize;
    let total = 0;
    for (const s of seqs) total += s.length;
    const tokens = new Int32Array(total);
    const offsets = new Float64Array(seqs.length + 1);
    const promptLens = new Float64Array(seqs.length);
    let o = 0;
    for (let i = 0; i < seqs.length; i++) {
      const s = seqs[i]!;
      if (s.length === 0) throw new Error(`sequence ${i} is empty`);
      for (let t = 0; t < s.length; t++) {
        const id = s[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new Error(
            `token id ${id} at position ${t} of sequence ${i} is outside the vocabulary (size ${V})`,
          );
        }
        tokens[o++] = id;
      }
      offsets[i + 1] = o;
      if (promptLengths) {
        const p = promptLengths[i]!;
        if (!Number.isInteger(p) || p < 0 || p > s.length) {
          throw new Error(`promptLength ${p} of sequence ${i} is outside 0..${s.length}`);
        }
        promptLens[i] = p;
      }
    }
    return { tokens, offsets, promptLens };
  }
}

function checkTensor(dir: string, t: NativeTensorInfo, st: StTensor): void {
  const shapeOk = st.shape.length === t.shape.length && st.shape.every((d, i) => d === t.shape[i]);
  if (!shapeOk) {
    throw new Error(
      `${dir}: tensor ${t.name} has shape [${st.shape.join(', ')}], expected [${t.shape.join(', ')}]`,
    );
  }
  if (!(st.dtype in FROM_FILE_DTYPE)) {
    throw new Error(`${dir}: tensor ${t.name} has dtype ${st.dtype} (supported: F32, F16, BF16)`);
  }
}

export { fromHfConfig, toHfConfig };
