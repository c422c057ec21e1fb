// Model construction (parameter layout), RoPE tables and the decoder forward pass.
#include "model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/version.h>

#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>
#include <thread>

#include "kernels.h"
#include "lora.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpo {

at::ScalarType parseDtype(const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16") return at::kHalf;
  if (s == "float64") return at::kDouble;  // for gradient checks
  throw std::invalid_argument("unknown dtype '" + s + "' (expected float32, bfloat16 or float16)");
}

at::Device parseDevice(const std::string& s) {
  if (s == "cpu") return at::Device(at::kCPU);
  if (s.rfind("cuda:", 0) == 0) {
    int idx = std::stoi(s.substr(5));
#ifdef MPO_WITH_CUDA
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(idx));
#else
    (void)idx;
    throw std::invalid_argument("device '" + s +
                                "' requested but the engine was built against a CPU-only libtorch "
                                "(rebuild with LIBTORCH pointing at a CUDA libtorch)");
#endif
  }
  throw std::invalid_argument("unknown device '" + s + "' (expected cpu or cuda:N)");
}

void setIntraOpThreads(int n) {
  // The OpenMP thread count is a per-thread setting, and ATen initialises it lazily per thread
  // from the last global value: initialise first, then set, so ours wins on this thread.
  at::init_num_threads();
  at::set_num_threads(n < 1 ? 1 : n);
}

void runParallel(int workers, int64_t tasks, int intraThreads, bool gradMode,
                 const std::function<void(int, int64_t)>& fn) {
  if (tasks <= 0) return;
  if (workers > tasks) workers = static_cast<int>(tasks);
  if (workers <= 1) {
    setIntraOpThreads(intraThreads);
    at::AutoGradMode g(gradMode);
    for (int64_t t = 0; t < tasks; ++t) fn(0, t);
    return;
  }
  std::vector<std::exception_ptr> errors(tasks);
  auto body = [&](int w) {
    at::AutoGradMode g(gradMode);
    for (int64_t t = w; t < tasks; t += workers) {
      try {
        fn(w, t);
      } catch (...) {
        errors[t] = std::current_exception();
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int w = 1; w < workers; ++w) {
    pool.emplace_back([&, w] {
      setIntraOpThreads(1);
      body(w);
    });
  }
  setIntraOpThreads(1);
  body(0);
  for (auto& t : pool) t.join();
  setIntraOpThreads(intraThreads);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// ---------------------------------------------------------------------------------------------

Model::Model(const Config& c, at::Device dev, at::ScalarType dt, int nthreads)
    : cfg(c), device(dev), dtype(dt), threads(nthreads) {
  if (cfg.heads % cfg.kvHeads != 0)
    throw std::invalid_argument("num_attention_heads must be a multiple of num_key_value_heads");
  if (cfg.headDim % 2 != 0) throw std::invalid_argument("head_dim must be even for rotary embeddings");
  const int64_t V = cfg.vocab, D = cfg.hidden, I = cfg.inter, hd = cfg.headDim;
  const int64_t q = cfg.heads * hd, kv = cfg.kvHeads * hd;

  // 1. The Hugging Face tensors, in flat-buffer order. Fused groups are adjacent.
  int64_t off = 0;
  auto hf = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    hfTensors.push_back({name, std::move(shape), off, n});
    off += n;
    return hfTensors.back().offset;
  };
  struct Pending {
    std::string name;
    std::vector<int64_t> shape;
    int64_t offset;
  };
  std::vector<Pending> pend;
  pend.push_back({"embed", {V, D}, hf("model.embed_tokens.weight", {V, D})});
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const int64_t oq = hf(p + "self_attn.q_proj.weight", {q, D});
    hf(p + "self_attn.k_proj.weight", {kv, D});
    hf(p + "self_attn.v_proj.weight", {kv, D});
    pend.push_back({p + "qkv", {q + 2 * kv, D}, oq});
    if (cfg.bias) {
      const int64_t ob = hf(p + "self_attn.q_proj.bias", {q});
      hf(p + "self_attn.k_proj.bias", {kv});
      hf(p + "self_attn.v_proj.bias", {kv});
      pend.push_back({p + "qkv_bias", {q + 2 * kv}, ob});
    }
    pend.push_back({p + "o", {D, q}, hf(p + "self_attn.o_proj.weight", {D, q})});
    const int64_t og = hf(p + "mlp.gate_proj.weight", {I, D});
    hf(p + "mlp.up_proj.weight", {I, D});
    pend.push_back({p + "gate_up", {2 * I, D}, og});
    pend.push_back({p + "down", {D, I}, hf(p + "mlp.down_proj.weight", {D, I})});
    pend.push_back({p + "ln1", {D}, hf(p + "input_layernorm.weight", {D})});
    pend.push_back({p + "ln2", {D}, hf(p + "post_attention_layernorm.weight", {D})});
  }
  pend.push_back({"norm", {D}, hf("model.norm.weight", {D})});
  if (!cfg.tie) pend.push_back({"lm_head", {V, D}, hf("lm_head.weight", {V, D})});

  // 2. Flat master buffers and the parameter views.
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  flatParam = at::zeros({off}, f32);
  flatGrad = at::zeros({off}, f32);
  for (auto& pd : pend) {
    Param prm;
    prm.name = pd.name;
    prm.shape = pd.shape;
    prm.offset = pd.offset;
    prm.numel = 1;
    for (auto s : pd.shape) prm.numel *= s;
    prm.master = flatParam.narrow(0, prm.offset, prm.numel).view(prm.shape);
    if (computeIsMaster()) {
      // from_blob: an alias of the flat storage with its own autograd identity, so that the
      // optimizer's raw in-place updates of flatParam do not touch autograd metadata.
      prm.compute = at::from_blob(flatParam.data_ptr<float>() + prm.offset, prm.shape, f32);
    } else {
      prm.compute = at::empty(prm.shape, f32.dtype(dtype));
    }
    prm.compute.requires_grad_(true);
    params.push_back(std::move(prm));
  }

  // 3. Named handles for the forward pass.
  size_t i = 0;
  embed = params[i++].compute;
  layers.resize(cfg.layers);
  for (auto& L : layers) {
    L.wqkv = params[i++].compute;
    if (cfg.bias) L.bqkv = params[i++].compute;
    L.wo = params[i++].compute;
    L.wgu = params[i++].compute;
    L.wdown = params[i++].compute;
    L.ln1 = params[i++].compute;
    L.ln2 = params[i++].compute;
  }
  norm = params[i++].compute;
  lmHead = cfg.tie ? embed : params[i++].compute;
  if (fusedCpu(embed) && !directGemm(dtype)) {  // W^T copies only for ATen's mm (kernels.h)
    auto tOf = [](const at::Tensor& w) { return at::empty({w.size(1), w.size(0)}, w.options().requires_grad(false)); };
    for (auto& L : layers) {
      L.wqkvT = tOf(L.wqkv);
      L.woT = tOf(L.wo);
      L.wguT = tOf(L.wgu);
      L.wdownT = tOf(L.wdown);
    }
    lmHeadT = tOf(lmHead);
  }
  weightsChanged();
}

void Model::weightsChanged() {
  refreshCompute();
  refreshTransposed();
}

void Model::refreshTransposed() {
  if (!lmHeadT.defined()) return;
  // One (W, W^T) pair per task, spread over the worker threads: a strided copy of every weight.
  std::vector<std::pair<at::Tensor, at::Tensor>> pairs;
  for (auto& L : layers) {
    pairs.emplace_back(L.wqkv, L.wqkvT);
    pairs.emplace_back(L.wo, L.woT);
    pairs.emplace_back(L.wgu, L.wguT);
    pairs.emplace_back(L.wdown, L.wdownT);
  }
  pairs.emplace_back(lmHead, lmHeadT);
  runParallel(std::max(1, threads), static_cast<int64_t>(pairs.size()), 1, false, [&](int, int64_t i) {
    at::NoGradGuard g;
    pairs[i].second.copy_(pairs[i].first.t());
  });
}

void Model::refreshCompute() {
  if (computeIsMaster()) return;
  at::NoGradGuard g;
  for (auto& p : params) p.compute.copy_(p.master);
}

void Model::syncGradFromHost() {
  if (!hostGradDirty) return;
  flatGrad.copy_(hostGrad);
  hostGradDirty = false;
}

void Model::initRandom(uint64_t seed, double stdev) {
  // Hugging Face's _init_weights: Linear and Embedding ~ N(0, initializer_range), biases 0,
  // RMSNorm weights 1. Drawn on the CPU in flat-buffer order so every device gets the same weights.
  auto gen = at::detail::createCPUGenerator(seed);
  at::Tensor host = at::empty({flatParam.numel()}, at::kFloat);
  for (auto& t : hfTensors) {
    auto v = host.narrow(0, t.offset, t.numel);
    const bool isNorm = t.name.size() >= 11 && t.name.compare(t.name.size() - 11, 11, "norm.weight") == 0;
    const bool isBias = t.name.size() >= 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    if (isNorm)
      v.fill_(1.0);
    else if (isBias)
      v.zero_();
    else
      v.normal_(0.0, stdev, gen);
  }
  flatParam.copy_(host);
  weightsChanged();
}

int64_t Model::addHandle(std::shared_ptr<GraphHandle> h) {
  std::lock_guard<std::mutex> g(handleMu);
  const int64_t id = nextHandle++;
  handles[id] = std::move(h);
  return id;
}

std::shared_ptr<GraphHandle> Model::takeHandle(int64_t id) {
  std::lock_guard<std::mutex> g(handleMu);
  auto it = handles.find(id);
  if (it == handles.end()) return nullptr;
  auto h = std::move(it->second);
  handles.erase(it);
  return h;
}

void Model::releaseAll() {
  std::map<int64_t, std::shared_ptr<GraphHandle>> old;
  {
    std::lock_guard<std::mutex> g(handleMu);
    old.swap(handles);
  }
}

// --- RoPE ------------------------------------------------------------------------------------

void Model::ensureRope(int64_t n) {
  if (ropeCos.defined() && ropeCos.size(0) >= n) return;
  int64_t cap = ((n + 255) / 256) * 256;
  const int64_t hd = cfg.headDim, half = hd / 2;
  // inv_freq as in transformers' _compute_default_rope_parameters / _compute_llama3_parameters,
  // in double precision (the tables are then rounded once to the compute dtype).
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(cfg.theta, (2.0 * i) / hd);
  if (cfg.rope.llama3) {
    const auto& r = cfg.rope;
    const double lowWavelen = r.originalMaxPositions / r.lowFreqFactor;
    const double highWavelen = r.originalMaxPositions / r.highFreqFactor;
    for (auto& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      double scaled = wavelen > lowWavelen ? f / r.factor : f;  // low frequencies: divided by factor
      const bool medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      if (medium) {  // smooth interpolation between the two regimes
        const double smooth =
            (r.originalMaxPositions / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
        scaled = (1.0 - smooth) * scaled / r.factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  at::Tensor c = at::empty({cap, hd}, at::kDouble), s = at::empty({cap, hd}, at::kDouble);
  auto ca = c.accessor<double, 2>();
  auto sa = s.accessor<double, 2>();
  for (int64_t p = 0; p < cap; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(p) * inv[i];
      ca[p][i] = ca[p][i + half] = std::cos(a);
      sa[p][i] = sa[p][i + half] = std::sin(a);
    }
  auto opt = at::TensorOptions().dtype(dtype).device(device);
  ropeCos = c.to(opt);
  ropeSin = s.to(opt);
  // Causal mask of the same capacity.
  causal_ = at::full({cap, cap}, -std::numeric_limits<double>::infinity(), opt).triu(1);
}

at::Tensor Model::causalMask(int64_t T) const {
  if (!causal_.defined() || causal_.size(0) < T) throw std::logic_error("internal: ensureRope not called");
  return causal_.narrow(0, 0, T).narrow(1, 0, T);
}

KvCache Model::newCache(int64_t batch, int64_t capacity) const {
  KvCache c;
  auto opt = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t l = 0; l < cfg.layers; ++l) {
    c.k.push_back(at::zeros({batch, cfg.kvHeads, capacity, cfg.headDim}, opt));
    c.v.push_back(at::zeros({batch, cfg.kvHeads, capacity, cfg.headDim}, opt));
  }
  return c;
}

// --- forward -----------------------------------------------------------------------------------

namespace {

// Scaled dot-product attention with grouped KV heads. q [B,Hq,T,hd], k/v [B,Hkv,Tk,hd].
// mask: undefined (no mask), [T,Tk] or [B,T,Tk], additive. Returns [B,T,Hq*hd].
// causal: `mask` is the plain causal mask (lets torch 2.x pick its fused causal kernels).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     bool causal) {
  const int64_t B = q.size(0), Hq = q.size(1), T = q.size(2), hd = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), G = Hq / Hkv;
#if TORCH_VERSION_MAJOR >= 2
  // torch 2.x: fused attention kernels (flash/memory-efficient on CUDA, flash on CPU).
  at::Tensor kx = G > 1 ? k.repeat_interleave(G, 1) : k;
  at::Tensor vx = G > 1 ? v.repeat_interleave(G, 1) : v;
  c10::optional<at::Tensor> am;
  if (mask.defined() && !causal) am = mask.dim() == 2 ? mask : mask.unsqueeze(1);
  at::Tensor o = at::scaled_dot_product_attention(q, kx, vx, am, 0.0, causal);
  return o.transpose(1, 2).reshape({B, T, Hq * hd});
#else
  (void)causal;
  // Query heads that share a KV head are stacked along the row dimension, so one batched GEMM
  // per KV head covers the whole group without copying K and V G times (head h uses KV head h/G,
  // as transformers' repeat_kv).
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  at::Tensor qg = q.reshape({B * Hkv, G * T, hd});
  at::Tensor kt = k.reshape({B * Hkv, Tk, hd}).transpose(1, 2);
  at::Tensor vg = v.reshape({B * Hkv, Tk, hd});
  at::Tensor s;
  if (!mask.defined()) {
    s = at::bmm(qg, kt).mul_(scale);
  } else {
    at::Tensor gm;
    if (mask.dim() == 2)
      gm = G > 1 ? mask.repeat({G, 1}) : mask;  // [G*T, Tk], broadcast over B*Hkv
    else
      gm = mask.view({B, 1, 1, T, Tk}).expand({B, Hkv, G, T, Tk}).reshape({B * Hkv, G * T, Tk});
    s = at::baddbmm(gm, qg, kt, 1.0, scale);  // mask + scale fused into the GEMM
  }
  at::Tensor p = at::softmax(s, -1);
  at::Tensor o = at::bmm(p, vg);                 // [B*Hkv, G*T, hd]
  return o.view({B, Hq, T, hd}).transpose(1, 2).reshape({B, T, Hq * hd});
#endif
}

}  // namespace

at::Tensor Model::forward(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& maskIn,
                          KvCache* cache) const {
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t hd = cfg.headDim, Hq = cfg.heads, Hkv = cfg.kvHeads, I = cfg.inter;
  const int64_t past = cache ? cache->len : 0, Tk = past + T;
  if (!ropeCos.defined()) throw std::logic_error("internal: ensureRope not called");
  const int64_t maxPos = positions.defined() ? positions.max().item<int64_t>() + 1 : Tk;
  if (ropeCos.size(0) < maxPos || ropeCos.size(0) < Tk) throw std::logic_error("internal: RoPE table too short");

  at::Tensor cos, sin;
  if (positions.defined()) {
    auto flat = positions.reshape({-1});
    cos = ropeCos.index_select(0, flat).view({B, T, 1, hd});
    sin = ropeSin.index_select(0, flat).view({B, T, 1, hd});
  } else {
    cos = ropeCos.narrow(0, past, T).view({1, T, 1, hd});
    sin = ropeSin.narrow(0, past, T).view({1, T, 1, hd});
  }
  at::Tensor mask = maskIn;
  const bool causal = !maskIn.defined() && past == 0 && T > 1;
  if (!mask.defined() && T > 1) {
    // causal over [past, past+T): key j visible to query i iff j <= past + i
    mask = past == 0 ? causalMask(T) : causal_.narrow(0, past, T).narrow(1, 0, Tk);
  }

  // Training/scoring path (positions 0..T-1, causal mask only, no cache) on the CPU in fp32/fp64:
  // fused RoPE and attention kernels (kernels.h).
  const bool fused = causal && !positions.defined() && !cache && fusedCpu(embed);
  const double qScale = 1.0 / std::sqrt(static_cast<double>(hd));

  const LoraPass adapters(*this, ids);  // [LoRA] adapter outputs added at the four projection sites below
  at::Tensor x = at::embedding(embed, ids);  // [B,T,D]
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const auto& L = layers[l];
    at::Tensor h = rmsNorm(x, L.ln1, cfg.eps);
    at::Tensor qkv = linear(h, L.wqkv, L.wqkvT, L.bqkv, at::Tensor());  // [B,T,(Hq+2Hkv)*hd]
    qkv = adapters.add(l, LoraSite::Q, 3, h, qkv);  // [LoRA]
    at::Tensor a;
    if (fused) {
      auto qkvr = qkvRope(qkv, ropeCos, ropeSin, Hq, Hkv, hd, qScale);
      a = causalAttention(qkvr[0], qkvr[1], qkvr[2]);
    } else {
      auto parts = qkv.split_with_sizes({Hq * hd, Hkv * hd, Hkv * hd}, -1);
      at::Tensor q = rope(parts[0].view({B, T, Hq, hd}), cos, sin).transpose(1, 2);  // [B,Hq,T,hd]
      at::Tensor k = rope(parts[1].view({B, T, Hkv, hd}), cos, sin).transpose(1, 2);
      at::Tensor v = parts[2].view({B, T, Hkv, hd}).transpose(1, 2);
      if (cache) {
        cache->k[l].narrow(2, past, T).copy_(k);
        cache->v[l].narrow(2, past, T).copy_(v);
        k = cache->k[l].narrow(2, 0, Tk);
        v = cache->v[l].narrow(2, 0, Tk);
      }
      a = attention(q, k, v, mask, causal);
    }
    x = adapters.add(l, LoraSite::O, 1, a, linear(a, L.wo, L.woT, at::Tensor(), x));  // x + a Wo^T [+ LoRA]
    h = rmsNorm(x, L.ln2, cfg.eps);
    at::Tensor gu = linear(h, L.wgu, L.wguT, at::Tensor(), at::Tensor());  // [B,T,2I] = [gate | up]
    gu = adapters.add(l, LoraSite::Gate, 2, h, gu);  // [LoRA]
    at::Tensor act = swiglu(gu, I);
    x = adapters.add(l, LoraSite::Down, 1, act, linear(act, L.wdown, L.wdownT, at::Tensor(), x));  // [LoRA]
  }
  if (cache) cache->len += T;
  return rmsNorm(x, norm, cfg.eps);
}

at::Tensor Model::logitsOf(const at::Tensor& hidden) const {
  at::Tensor lg = linear(hidden, lmHead, lmHeadT, at::Tensor(), at::Tensor());
  return lg.scalar_type() == at::kFloat || lg.scalar_type() == at::kDouble ? lg : lg.to(at::kFloat);
}

}  // namespace mpo
