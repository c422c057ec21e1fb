// An independent float64 forward pass of transformers' LlamaForCausalLM / Qwen2ForCausalLM written
// from the Hugging Face modelling code, straight loops, no batching: the yardstick for the engine's
// Qwen2 (q/k/v bias, tied embeddings), GQA and llama3 rope_scaling paths.
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

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]!);
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
  return referenceHidden(cfg, w, ids).map((h) => linear(head, h, cfg.vocabSize));
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
  let x = ids.map((id) => emb.slice(id * D, (id + 1) * D));
  for (let l = 0; l < cfg.numHiddenLayers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (n: string) => (cfg.attentionBias ? g(`${p}self_attn.${n}_proj.bias`) : undefined);
    const h = x.map((v) => rmsNorm(v, g(`${p}input_layernorm.weight`), cfg.rmsNormEps));
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
        const s: number[] = [];
        for (let j = 0; j <= t && j < validLen; j++) {
          let d = 0;
          for (let i = 0; i < hd; i++) d += qr[t]![hh]![i]! * kr[j]![kvh]![i]!;
          s.push(d / Math.sqrt(hd));
        }
        const mx = Math.max(...s);
        const e = s.map((z) => Math.exp(z - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < s.length; j++) {
          for (let i = 0; i < hd; i++) attn[t]![hh * hd + i]! += (e[j]! / z) * vv[j]![kvh * hd + i]!;
        }
      }
    }
    x = x.map((v, t) => {
      const o = linear(g(`${p}self_attn.o_proj.weight`), attn[t]!, D);
      return v.map((a, i) => a + o[i]!);
    });
    x = x.map((v) => {
      const hn = rmsNorm(v, g(`${p}post_attention_layernorm.weight`), cfg.rmsNormEps);
      const gate = linear(g(`${p}mlp.gate_proj.weight`), hn, I);
      const up = linear(g(`${p}mlp.up_proj.weight`), hn, I);
      const act = gate.map((a, i) => (a / (1 + Math.exp(-a))) * up[i]!);
      const dn = linear(g(`${p}mlp.down_proj.weight`), act, D);
      return v.map((a, i) => a + dn[i]!);
    });
  }
  return x.map((v) => rmsNorm(v, g('model.norm.weight'), cfg.rmsNormEps));
}
