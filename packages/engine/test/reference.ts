// An independent float64 forward pass of transformers' LlamaForCausalLM / Qwen2ForCausalLM /
// Gemma2ForCausalLM written from the Hugging Face modelling code, straight loops, no batching: the
// yardstick for the engine's Qwen2 (q/k/v bias, tied embeddings), GQA, llama3 rope_scaling and Gemma-2
// paths. Gemma-2 (modeling_gemma2.py): Gemma2RMSNorm multiplies by (1 + weight); embeddings times
// sqrt(hidden_size); h = x + post_attention_layernorm(attn(input_layernorm(x))), then
// x' = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h))); MLP act gelu_pytorch_tanh;
// scores scaled by query_pre_attn_scalar^-1/2, soft-capped cap * tanh(s / cap) before the mask;
// layers with even index see only keys j > i - sliding_window; logits soft-capped the same way.
import type { LlamaConfig } from '../src/config.js';

export type Weights = Map<string, Float64Array>;

export function weightsOf(
  layout: { name: string; offset: number; numel: number }[],
  flat: Float32Array,
): Weights {
  const w: Weights = new Map();
  for (const t of layout) w.set(t.name, Float64Array.from(flat.subarray(t.offset, t.offset + t.numel)));
  return w;
}

function invFreq(cfg: LlamaConfig, hd: number): number[] {
  const inv: number[] = [];
  for (let i = 0; i < hd; i += 2) inv.push(1 / cfg.ropeTheta ** (i / hd));
  const rs = cfg.ropeScaling;
  if (!rs) return inv;
  // transformers.modeling_rope_utils._compute_llama3_parameters
  const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
  const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    const llama = wavelen > lowWavelen ? f / rs.factor : f;
    const smooth =
      (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) /
      (rs.highFreqFactor - rs.lowFreqFactor);
    const smoothed = ((1 - smooth) * llama) / rs.factor + smooth * llama;
    const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
    return medium ? smoothed : llama;
  });
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number, plusOne = false): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * (plusOne ? 1 + w[i]! : w[i]!));
}

const softcap = (v: number, cap: number | null) => (cap === null ? v : cap * Math.tanh(v / cap));

// transformers' gelu_pytorch_tanh
function geluTanh(a: number): number {
  return 0.5 * a * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (a + 0.044715 * a ** 3)));
}

// y = W x (+ b), W [out, in] row-major
function linear(W: Float64Array, x: Float64Array, out: number, b?: Float64Array): Float64Array {
  const n = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < n; i++) s += W[o * n + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/** Logits [T][V] for one sequence. */
export function referenceLogits(cfg: LlamaConfig, w: Weights, ids: number[]): Float64Array[] {
  const head = cfg.tieWordEmbeddings ? w.get('model.embed_tokens.weight')! : w.get('lm_head.weight')!;
  const cap = cfg.gemma2?.finalLogitSoftcapping ?? null;
  return referenceHidden(cfg, w, ids).map((h) => linear(head, h, cfg.vocabSize).map((z) => softcap(z, cap)));
}

/** Σ log-softmax(logits[t − 1])[ids[t]] over the response positions t ≥ promptLength: the score's sumLogp. */
export function referenceSumLogp(logits: Float64Array[], ids: number[], promptLength: number): number {
  let sum = 0;
  for (let t = promptLength; t < ids.length; t++) {
    const row = logits[t - 1]!;
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((a, b) => a + Math.exp(b - mx), 0));
    sum += row[ids[t]!]! - lse;
  }
  return sum;
}

/**
 * Final-norm hidden states [T][D]. With validLen < ids.length the sequence is right padded: keys at
 * positions >= validLen are masked for every query (transformers' attention_mask), positions stay 0..T-1.
 */
export function referenceHidden(
  cfg: LlamaConfig,
  w: Weights,
  ids: number[],
  validLen = ids.length,
): Float64Array[] {
  const D = cfg.hiddenSize;
  const H = cfg.numAttentionHeads;
  const KV = cfg.numKeyValueHeads;
  const hd = cfg.headDim ?? D / H;
  const I = cfg.intermediateSize;
  const T = ids.length;
  const g = (name: string) => {
    const t = w.get(name);
    if (!t) throw new Error(`reference: no ${name}`);
    return t;
  };
  const g2 = cfg.gemma2;
  const norm = (v: Float64Array, name: string) => rmsNorm(v, g(name), cfg.rmsNormEps, g2 !== undefined);
  const scale = 1 / Math.sqrt(g2 ? g2.queryPreAttnScalar : hd);
  const inv = invFreq(cfg, hd);
  const rope = (v: Float64Array, pos: number) => {
    const half = hd / 2;
    const out = new Float64Array(hd);
    for (let i = 0; i < hd; i++) {
      const a = pos * inv[i % half]!;
      const rot = i < half ? -v[i + half]! : v[i - half]!;
      out[i] = v[i]! * Math.cos(a) + rot * Math.sin(a);
    }
    return out;
  };
  const emb = g('model.embed_tokens.weight');
  let x = ids.map((id) => emb.slice(id * D, (id + 1) * D).map((v) => (g2 ? v * Math.sqrt(D) : v)));
  for (let l = 0; l < cfg.numHiddenLayers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (n: string) => (cfg.attentionBias ? g(`${p}self_attn.${n}_proj.bias`) : undefined);
    const h = x.map((v) => norm(v, `${p}input_layernorm.weight`));
    const window = g2?.slidingWindow && l % 2 === 0 ? g2.slidingWindow : Number.POSITIVE_INFINITY;
    const q = h.map((v) => linear(g(`${p}self_attn.q_proj.weight`), v, H * hd, bias('q')));
    const k = h.map((v) => linear(g(`${p}self_attn.k_proj.weight`), v, KV * hd, bias('k')));
    const vv = h.map((v) => linear(g(`${p}self_attn.v_proj.weight`), v, KV * hd, bias('v')));
    const qr = q.map((v, t) =>
      Array.from({ length: H }, (_, hh) => rope(v.slice(hh * hd, (hh + 1) * hd), t)),
    );
    const kr = k.map((v, t) =>
      Array.from({ length: KV }, (_, hh) => rope(v.slice(hh * hd, (hh + 1) * hd), t)),
    );
    const attn = Array.from({ length: T }, () => new Float64Array(H * hd));
    for (let hh = 0; hh < H; hh++) {
      const kvh = Math.floor(hh / (H / KV)); // repeat_kv: head hh uses KV head hh / n_rep
      for (let t = 0; t < T; t++) {
        const visible = (j: number) => j <= t && j < validLen && t - j < window;
        let keys = Array.from({ length: T }, (_, j) => j).filter(visible);
        // No visible key (a padded query outside the window): the row attends to every key, as
        // transformers' SDPA path unmasks fully masked rows (AttentionMaskConverter._unmask_unattended).
        if (keys.length === 0) keys = Array.from({ length: T }, (_, j) => j);
        const s = keys.map((j) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += qr[t]![hh]![i]! * kr[j]![kvh]![i]!;
          return softcap(d * scale, g2?.attnLogitSoftcapping ?? null);
        });
        const mx = Math.max(...s);
        const e = s.map((z) => Math.exp(z - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let n = 0; n < s.length; n++) {
          const j = keys[n]!;
          for (let i = 0; i < hd; i++) attn[t]![hh * hd + i]! += (e[n]! / z) * vv[j]![kvh * hd + i]!;
        }
      }
    }
    x = x.map((v, t) => {
      let o = linear(g(`${p}self_attn.o_proj.weight`), attn[t]!, D);
      if (g2) o = norm(o, `${p}post_attention_layernorm.weight`);
      return v.map((a, i) => a + o[i]!);
    });
    x = x.map((v) => {
      const hn = norm(v, g2 ? `${p}pre_feedforward_layernorm.weight` : `${p}post_attention_layernorm.weight`);
      const gate = linear(g(`${p}mlp.gate_proj.weight`), hn, I);
      const up = linear(g(`${p}mlp.up_proj.weight`), hn, I);
      const act = gate.map((a, i) => (g2 ? geluTanh(a) : a / (1 + Math.exp(-a))) * up[i]!);
      let dn = linear(g(`${p}mlp.down_proj.weight`), act, D);
      if (g2) dn = norm(dn, `${p}post_feedforward_layernorm.weight`);
      return v.map((a, i) => a + dn[i]!);
    });
  }
  return x.map((v) => norm(v, 'model.norm.weight'));
}
