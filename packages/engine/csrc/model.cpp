// Model construction (parameter layout), RoPE tables and the decoder forward pass.
#include "model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/version.h>

#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>
#include <thread>

#include "blas.h"
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

namespace {
at::ScalarType activationDtype(at::Device dev, at::ScalarType dt) {
  return dt == at::kBFloat16 && dev.is_cpu() && haveBf16Gemm() ? at::kFloat : dt;
}
}  // namespace

Model::Model(const Config& c, at::Device dev, at::ScalarType dt, int nthreads, bool bf16W)
    : cfg(c), device(dev), dtype(dt), actDtype(activationDtype(dev, dt)), bf16Weights(bf16W), threads(nthreads) {
  if (bf16Weights && (dtype != at::kBFloat16 || !device.is_cpu()))
    throw std::invalid_argument("bf16 weight storage needs dtype bfloat16 on the CPU");
  if (cfg.slidingWindow < 0) throw std::invalid_argument("sliding_window must be positive");
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
    if (cfg.gemma()) {
      pend.push_back({p + "ln_pre_ff", {D}, hf(p + "pre_feedforward_layernorm.weight", {D})});
      pend.push_back({p + "ln_post_ff", {D}, hf(p + "post_feedforward_layernorm.weight", {D})});
    }
  }
  pend.push_back({"norm", {D}, hf("model.norm.weight", {D})});
  if (!cfg.tie) pend.push_back({"lm_head", {V, D}, hf("lm_head.weight", {V, D})});

  // 2. Flat master buffers and the parameter views.
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  if (bf16Weights) {
    // Allocated to an even length, so JavaScript can move the bits as 32-bit words (all-gather).
    auto b16 = f32.dtype(at::kBFloat16);
    flatParam = at::zeros({off + (off & 1)}, b16).narrow(0, 0, off);
    flatGrad = at::zeros({off + (off & 1)}, b16).narrow(0, 0, off);
  } else {
    flatParam = at::zeros({off}, f32);
    flatGrad = at::zeros({off}, f32);
  }
  for (auto& pd : pend) {
    Param prm;
    prm.name = pd.name;
    prm.shape = pd.shape;
    prm.offset = pd.offset;
    prm.numel = 1;
    for (auto s : pd.shape) prm.numel *= s;
    prm.master = flatParam.narrow(0, prm.offset, prm.numel).view(prm.shape);
    if (bf16Weights) {
      // Matrices: bf16 aliases of the storage (from_blob, as below). 1-D tensors on the mixed
      // path: fp32 copies, which the fused norm kernels need (a few KiB per layer).
      const bool vector = pd.shape.size() == 1 && actDtype != at::kBFloat16;
      prm.copy = vector;
      prm.compute = vector ? at::empty(prm.shape, f32.dtype(actDtype))
                           : at::from_blob(flatParam.data_ptr<at::BFloat16>() + prm.offset, prm.shape,
                                           f32.dtype(at::kBFloat16));
    } else if (computeIsMaster()) {
      // from_blob: an alias of the flat storage with its own autograd identity, so that the
      // optimizer's raw in-place updates of flatParam do not touch autograd metadata.
      prm.compute = at::from_blob(flatParam.data_ptr<float>() + prm.offset, prm.shape, f32);
    } else {
      prm.copy = true;
      prm.compute = at::empty(prm.shape, f32.dtype(actDtype));
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
    if (cfg.gemma()) {
      L.lnPreFf = params[i++].compute;
      L.lnPostFf = params[i++].compute;
    }
  }
  norm = params[i++].compute;
  lmHead = cfg.tie ? embed : params[i++].compute;
  if (bf16Weights && mixedBf16()) {
    // The mixed GEMM reads the bf16 storage itself: no second copy.
    for (auto& L : layers) {
      L.wqkvT = L.wqkv;
      L.woT = L.wo;
      L.wguT = L.wgu;
      L.wdownT = L.wdown;
    }
    lmHeadT = lmHead;
  } else if (fusedCpu(norm) && (mixedBf16() || !directGemm(dtype))) {
    // bf16 copies of W for the mixed-precision GEMM, else W^T for ATen's mm (kernels.h)
    const bool bf16 = mixedBf16();
    auto tOf = [bf16](const at::Tensor& w) {
      auto o = w.options().requires_grad(false);
      return bf16 ? at::empty({w.size(0), w.size(1)}, o.dtype(at::kBFloat16)) : at::empty({w.size(1), w.size(0)}, o);
    };
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
  if (!lmHeadT.defined() || bf16Weights) return;  // bf16Weights: they alias the weights
  // One (W, W^T) pair per task, spread over the worker threads: a strided copy of every weight.
  std::vector<std::pair<at::Tensor, at::Tensor>> pairs;
  for (auto& L : layers) {
    pairs.emplace_back(L.wqkv, L.wqkvT);
    pairs.emplace_back(L.wo, L.woT);
    pairs.emplace_back(L.wgu, L.wguT);
    pairs.emplace_back(L.wdown, L.wdownT);
  }
  pairs.emplace_back(lmHead, lmHeadT);
  const bool bf16 = mixedBf16();
  runParallel(std::max(1, threads), static_cast<int64_t>(pairs.size()), 1, false, [&](int, int64_t i) {
    at::NoGradGuard g;
    pairs[i].second.copy_(bf16 ? pairs[i].first : pairs[i].first.t());
  });
}

void Model::refreshCompute() {
  at::NoGradGuard g;
  for (auto& p : params)
    if (p.copy) p.compute.copy_(p.master);
}

void Model::syncGradFromHost() {
  if (!hostGradDirty) return;
  flatGrad.copy_(hostGrad);
  hostGradDirty = false;
}

void Model::initRandom(uint64_t seed, double stdev) {
  // Hugging Face's _init_weights: Linear and Embedding ~ N(0, initializer_range), biases 0,
  // RMSNorm weights 1 (0 for Gemma2RMSNorm, which multiplies by 1 + weight). Drawn on the CPU in flat-buffer order so every device gets the same weights.
  auto gen = at::detail::createCPUGenerator(seed);
  at::Tensor host = at::empty({flatParam.numel()}, at::kFloat);
  for (auto& t : hfTensors) {
    auto v = host.narrow(0, t.offset, t.numel);
    const bool isNorm = t.name.size() >= 11 && t.name.compare(t.name.size() - 11, 11, "norm.weight") == 0;
    const bool isBias = t.name.size() >= 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    if (isNorm)
      v.fill_(cfg.gemma() ? 0.0 : 1.0);
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
  auto opt = at::TensorOptions().dtype(actDtype).device(device);
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
  auto opt = at::TensorOptions().dtype(actDtype).device(device);
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
// scale multiplies q.k; softcap > 0 caps the scaled scores to softcap * tanh(s / softcap) before
// the mask is added (Gemma-2's attn_logit_softcapping).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     bool causal, double scale, double softcap) {
  const int64_t B = q.size(0), Hq = q.size(1), T = q.size(2), hd = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), G = Hq / Hkv;
#if TORCH_VERSION_MAJOR >= 2
  if (softcap <= 0.0) {
    // torch 2.x: fused attention kernels (flash/memory-efficient on CUDA, flash on CPU).
    at::Tensor kx = G > 1 ? k.repeat_interleave(G, 1) : k;
    at::Tensor vx = G > 1 ? v.repeat_interleave(G, 1) : v;
    c10::optional<at::Tensor> am;
    if (mask.defined() && !causal) am = mask.dim() == 2 ? mask : mask.unsqueeze(1);
    const double sdpaScale = 1.0 / std::sqrt(static_cast<double>(hd));  // SDPA's own scale
    at::Tensor qs = scale == sdpaScale ? q : q * (scale / sdpaScale);
    at::Tensor o = at::scaled_dot_product_attention(qs, kx, vx, am, 0.0, causal);
    return o.transpose(1, 2).reshape({B, T, Hq * hd});
  }
#endif
  (void)causal;
  // Query heads that share a KV head are stacked along the row dimension, so one batched GEMM
  // per KV head covers the whole group without copying K and V G times (head h uses KV head h/G,
  // as transformers' repeat_kv).
  at::Tensor qg = q.reshape({B * Hkv, G * T, hd});
  at::Tensor kt = k.reshape({B * Hkv, Tk, hd}).transpose(1, 2);
  at::Tensor vg = v.reshape({B * Hkv, Tk, hd});
  at::Tensor gm;  // the mask in the [B*Hkv, G*T, Tk] layout of the scores
  if (mask.defined()) {
    if (mask.dim() == 2)
      gm = G > 1 ? mask.repeat({G, 1}) : mask;  // [G*T, Tk], broadcast over B*Hkv
    else
      gm = mask.view({B, 1, 1, T, Tk}).expand({B, Hkv, G, T, Tk}).reshape({B * Hkv, G * T, Tk});
  }
  at::Tensor s;
  if (softcap > 0.0) {
    s = at::tanh(at::bmm(qg, kt).mul_(scale / softcap)).mul(softcap);
    if (gm.defined()) s = s + gm;
  } else if (!gm.defined()) {
    s = at::bmm(qg, kt).mul_(scale);
  } else {
    s = at::baddbmm(gm, qg, kt, 1.0, scale);  // mask + scale fused into the GEMM
  }
  at::Tensor p = at::softmax(s, -1);
  at::Tensor o = at::bmm(p, vg);                 // [B*Hkv, G*T, hd]
  return o.view({B, Hq, T, hd}).transpose(1, 2).reshape({B, T, Hq * hd});
}

// Additive mask [T, Tk] for queries at positions past..past+T-1 over keys 0..Tk-1 that hides the
// keys a sliding window of `window` leaves out: key j hidden iff (past + i) - j >= window (as
// transformers' Gemma-2 sliding mask). Causality is the other mask's business.
at::Tensor windowMask(int64_t T, int64_t Tk, int64_t past, int64_t window, const at::TensorOptions& opt) {
  auto i64 = at::TensorOptions().dtype(at::kLong);
  at::Tensor qi = at::arange(past, past + T, i64).unsqueeze(1), kj = at::arange(Tk, i64).unsqueeze(0);
  at::Tensor hide = (qi - kj) >= window;
  return at::zeros({T, Tk}, opt.device(at::kCPU))
      .masked_fill_(hide, -std::numeric_limits<double>::infinity())
      .to(opt.device());
}

// Activation checkpointing of one decoder layer: the forward runs without a graph and keeps only
// the layer input (and the attention mask); backward recomputes the layer with a graph and
// back-propagates through it. Weights are inputs so their gradients flow out of backward().
// libtorch 1.13's apply() cannot take undefined tensors: an absent mask is a 0-element placeholder.
struct LayerCheckpointFn : public torch::autograd::Function<LayerCheckpointFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, at::TensorList weights,
                            const at::Tensor& maskOrEmpty, int64_t model, int64_t l) {
    const Model* m = reinterpret_cast<const Model*>(model);
    const at::Tensor mask = maskOrEmpty.numel() ? maskOrEmpty : at::Tensor();
    at::Tensor y = m->layer(l, x, m->layerInputs(x.size(0), x.size(1), at::Tensor(), mask, nullptr));
    ctx->save_for_backward({x, maskOrEmpty});
    ctx->saved_data["model"] = model;
    ctx->saved_data["layer"] = l;
    ctx->saved_data["weights"] = static_cast<int64_t>(weights.size());
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Model* m = reinterpret_cast<const Model*>(ctx->saved_data["model"].toInt());
    const int64_t l = ctx->saved_data["layer"].toInt(), nw = ctx->saved_data["weights"].toInt();
    torch::autograd::variable_list out(1 + nw + 3);
    if (!grads[0].defined()) return out;
    const at::Tensor mask = saved[1].numel() ? saved[1] : at::Tensor();
    at::Tensor x = saved[0].detach().requires_grad_(true);
    at::Tensor y;
    {
      at::AutoGradMode g(true);
      y = m->layer(l, x, m->layerInputs(x.size(0), x.size(1), at::Tensor(), mask, nullptr));
    }
    std::vector<at::Tensor> inputs{x};
    for (const auto& w : layerWeights(*m, l)) inputs.push_back(w);
    auto g = torch::autograd::grad({y}, inputs, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    for (size_t i = 0; i < g.size(); ++i) out[i] = g[i];
    return out;
  }
  // The trainable tensors layer l reads, in a fixed order.
  static std::vector<at::Tensor> layerWeights(const Model& m, int64_t l) {
    const auto& L = m.layers[l];
    std::vector<at::Tensor> w;
    for (const at::Tensor* t : {&L.wqkv, &L.bqkv, &L.wo, &L.wgu, &L.wdown, &L.ln1, &L.ln2, &L.lnPreFf, &L.lnPostFf})
      if (t->defined()) w.push_back(*t);
    return w;
  }
};

}  // namespace

LayerInputs Model::layerInputs(int64_t B, int64_t T, const at::Tensor& positions, const at::Tensor& maskIn,
                               KvCache* cache) const {
  LayerInputs in;
  const int64_t hd = cfg.headDim;
  in.B = B;
  in.T = T;
  in.past = cache ? cache->len : 0;
  in.Tk = in.past + T;
  in.cache = cache;
  if (!ropeCos.defined()) throw std::logic_error("internal: ensureRope not called");
  const int64_t maxPos = positions.defined() ? positions.max().item<int64_t>() + 1 : in.Tk;
  if (ropeCos.size(0) < maxPos || ropeCos.size(0) < in.Tk) throw std::logic_error("internal: RoPE table too short");
  if (positions.defined()) {
    auto flat = positions.reshape({-1});
    in.cos = ropeCos.index_select(0, flat).view({B, T, 1, hd});
    in.sin = ropeSin.index_select(0, flat).view({B, T, 1, hd});
  } else {
    in.cos = ropeCos.narrow(0, in.past, T).view({1, T, 1, hd});
    in.sin = ropeSin.narrow(0, in.past, T).view({1, T, 1, hd});
  }
  in.mask = maskIn;
  in.causal = !maskIn.defined() && in.past == 0 && T > 1;
  if (!in.mask.defined() && T > 1) {
    // causal over [past, past+T): key j visible to query i iff j <= past + i
    in.mask = in.past == 0 ? causalMask(T) : causal_.narrow(0, in.past, T).narrow(1, 0, in.Tk);
  }
  // Training/scoring path (positions 0..T-1, causal mask only, no cache) on the CPU in fp32/fp64:
  // fused RoPE and attention kernels (kernels.h).
  in.fused = in.causal && !positions.defined() && !cache && fusedCpu(norm);  // (embed may be bf16 storage)
  if (cfg.slidingWindow > 0 && in.Tk > cfg.slidingWindow) {
    at::Tensor w = windowMask(T, in.Tk, in.past, cfg.slidingWindow, ropeCos.options());
    in.slidingMask = in.mask.defined() ? in.mask + w : w;
    if (in.slidingMask.dim() == 3) {
      // A padded query row (meanUnmasked pooling) whose window holds no real key would be all -inf
      // (NaN). Such rows attend to every key instead, as transformers' SDPA path does for fully
      // masked rows (AttentionMaskConverter._unmask_unattended). Only padded positions are affected.
      at::Tensor dead = at::isinf(in.slidingMask).all(-1, true);
      in.slidingMask = in.slidingMask.masked_fill(dead, 0.0);
    }
  }
  return in;
}

at::Tensor Model::applyNorm(const at::Tensor& x, const at::Tensor& w) const {
  return rmsNorm(x, w, cfg.eps, cfg.gemma());
}

at::Tensor Model::layer(int64_t l, const at::Tensor& xIn, const LayerInputs& in) const {
  const int64_t B = in.B, T = in.T, hd = cfg.headDim, Hq = cfg.heads, Hkv = cfg.kvHeads, I = cfg.inter;
  const auto& L = layers[l];
  const bool gemma = cfg.gemma();
  const bool windowed = cfg.slidingLayer(l) && in.slidingMask.defined();
  const at::Tensor& mask = windowed ? in.slidingMask : in.mask;
  // The fused attention kernel is plain causal softmax attention; soft-capping or a window that
  // hides keys takes the ATen composition (on the fused RoPE output where possible).
  const bool fusedAttention = in.fused && !windowed && cfg.attnSoftcap <= 0.0;
  const double qScale = 1.0 / std::sqrt(cfg.queryScalar > 0 ? cfg.queryScalar : static_cast<double>(hd));

  // [LoRA] y + the adapters' outputs at a projection site (lora.h); y itself without adapters.
  const auto adapt = [&](LoraSite site, int n, const at::Tensor& input, const at::Tensor& y) {
    return in.adapters ? in.adapters->add(l, site, n, input, y) : y;
  };
  at::Tensor x = xIn;
  at::Tensor h = applyNorm(x, L.ln1);
  at::Tensor qkv = adapt(LoraSite::Q, 3, h, linear(h, L.wqkv, L.wqkvT, L.bqkv, at::Tensor()));  // [B,T,(Hq+2Hkv)*hd]
  at::Tensor a;
  if (in.fused) {
    auto qkvr = qkvRope(qkv, ropeCos, ropeSin, Hq, Hkv, hd, qScale);
    a = fusedAttention ? causalAttention(qkvr[0], qkvr[1], qkvr[2])
                       : attention(qkvr[0], qkvr[1], qkvr[2], mask, in.causal && !windowed, 1.0, cfg.attnSoftcap);
  } else {
    auto parts = qkv.split_with_sizes({Hq * hd, Hkv * hd, Hkv * hd}, -1);
    at::Tensor q = rope(parts[0].view({B, T, Hq, hd}), in.cos, in.sin).transpose(1, 2);  // [B,Hq,T,hd]
    at::Tensor k = rope(parts[1].view({B, T, Hkv, hd}), in.cos, in.sin).transpose(1, 2);
    at::Tensor v = parts[2].view({B, T, Hkv, hd}).transpose(1, 2);
    if (in.cache) {
      in.cache->k[l].narrow(2, in.past, T).copy_(k);
      in.cache->v[l].narrow(2, in.past, T).copy_(v);
      k = in.cache->k[l].narrow(2, 0, in.Tk);
      v = in.cache->v[l].narrow(2, 0, in.Tk);
    }
    a = attention(q, k, v, mask, in.causal && !windowed, qScale, cfg.attnSoftcap);
  }
  if (gemma) {  // x + norm(attn), x + norm(mlp(norm(x))); adapters add to the projections, before the post-norms
    x = x + applyNorm(adapt(LoraSite::O, 1, a, linear(a, L.wo, L.woT, at::Tensor(), at::Tensor())), L.ln2);
    h = applyNorm(x, L.lnPreFf);
    at::Tensor gu = adapt(LoraSite::Gate, 2, h, linear(h, L.wgu, L.wguT, at::Tensor(), at::Tensor()));  // [gate | up]
    at::Tensor act = gatedAct(gu, I, cfg.geluTanh);
    at::Tensor mlp = adapt(LoraSite::Down, 1, act, linear(act, L.wdown, L.wdownT, at::Tensor(), at::Tensor()));
    return x + applyNorm(mlp, L.lnPostFf);
  }
  x = adapt(LoraSite::O, 1, a, linear(a, L.wo, L.woT, at::Tensor(), x));  // x + a Wo^T [+ LoRA]
  h = applyNorm(x, L.ln2);
  at::Tensor gu = adapt(LoraSite::Gate, 2, h, linear(h, L.wgu, L.wguT, at::Tensor(), at::Tensor()));  // [gate | up]
  at::Tensor act = gatedAct(gu, I, cfg.geluTanh);
  return adapt(LoraSite::Down, 1, act, linear(act, L.wdown, L.wdownT, at::Tensor(), x));
}

at::Tensor Model::forward(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& maskIn,
                          KvCache* cache) const {
  LayerInputs in = layerInputs(ids.size(0), ids.size(1), positions, maskIn, cache);
  const LoraPass adapters(*this, ids);  // [LoRA] adapter outputs added at the projection sites (layer())
  in.adapters = &adapters;
  at::Tensor x = at::embedding(embed, ids);  // [B,T,D]
  if (x.scalar_type() != actDtype) x = x.to(actDtype);  // bf16 storage on the mixed path: exact
  if (cfg.gemma()) {
    // Gemma: embeddings times sqrt(hidden), the factor rounded to the compute dtype as transformers does.
    const double s = at::scalar_tensor(std::sqrt(static_cast<double>(cfg.hidden)), at::TensorOptions().dtype(dtype))
                         .item<double>();
    x = x * s;
  }
  const bool checkpoint = checkpointLayers && at::GradMode::is_enabled() && !cache;
  // [LoRA] the recomputing backward (LayerCheckpointFn) neither sees the adapters nor returns their gradients.
  if (checkpoint && lora) throw std::runtime_error("activation checkpointing cannot be combined with LoRA yet");
  for (int64_t l = 0; l < cfg.layers; ++l) {
    if (checkpoint) {
      const auto w = LayerCheckpointFn::layerWeights(*this, l);
      const at::Tensor maskArg = maskIn.defined() ? maskIn : at::empty({0}, x.options());
      x = LayerCheckpointFn::apply(x, at::TensorList(w), maskArg, reinterpret_cast<int64_t>(this), l);
    } else {
      x = layer(l, x, in);
    }
  }
  if (cache) cache->len += in.T;
  return applyNorm(x, norm);
}

at::Tensor Model::logitsOf(const at::Tensor& hidden) const {
  at::Tensor lg = linear(hidden, lmHead, lmHeadT, at::Tensor(), at::Tensor());
  if (lg.scalar_type() != at::kFloat && lg.scalar_type() != at::kDouble) lg = lg.to(at::kFloat);
  // Gemma-2's final_logit_softcapping: cap * tanh(logits / cap), here in fp32.
  if (cfg.finalSoftcap > 0.0) lg = at::tanh(lg / cfg.finalSoftcap) * cfg.finalSoftcap;
  return lg;
}

}  // namespace mpo
