// LoRA adapters: the parameter swap, the forward hook, deterministic dropout and merging. See lora.h.
#include "lora.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <map>
#include <stdexcept>

namespace mpo {

namespace {

constexpr const char* kSiteNames[kLoraSites] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
bool isAttention(int s) { return s <= static_cast<int>(LoraSite::O); }

thread_local bool tlAdaptersOff = false;

uint64_t mix(uint64_t h, uint64_t v) {  // splitmix64 step over h ^ v
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// {in, out} of a site's projection.
std::array<int64_t, 2> siteDims(const Config& c, int s) {
  const int64_t q = c.heads * c.headDim, kv = c.kvHeads * c.headDim;
  switch (static_cast<LoraSite>(s)) {
    case LoraSite::Q: return {c.hidden, q};
    case LoraSite::K:
    case LoraSite::V: return {c.hidden, kv};
    case LoraSite::O: return {q, c.hidden};
    case LoraSite::Gate:
    case LoraSite::Up: return {c.hidden, c.inter};
    case LoraSite::Down: return {c.inter, c.hidden};
  }
  throw std::logic_error("bad LoRA site");
}

// The fused base parameter a site lives in (model.cpp's names) and the site's first row in it.
std::pair<std::string, int64_t> siteInBase(const Config& c, int64_t layer, int s) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  const int64_t q = c.heads * c.headDim, kv = c.kvHeads * c.headDim;
  switch (static_cast<LoraSite>(s)) {
    case LoraSite::Q: return {p + "qkv", 0};
    case LoraSite::K: return {p + "qkv", q};
    case LoraSite::V: return {p + "qkv", q + kv};
    case LoraSite::O: return {p + "o", 0};
    case LoraSite::Gate: return {p + "gate_up", 0};
    case LoraSite::Up: return {p + "gate_up", c.inter};
    case LoraSite::Down: return {p + "down", 0};
  }
  throw std::logic_error("bad LoRA site");
}

void checkOptions(const LoraOptions& o) {
  if (o.rank < 1) throw std::invalid_argument("lora: rank must be >= 1 (got " + std::to_string(o.rank) + ")");
  if (!std::isfinite(o.alpha) || o.alpha <= 0) throw std::invalid_argument("lora: alpha must be a positive number");
  if (!(o.dropout >= 0 && o.dropout < 1)) throw std::invalid_argument("lora: dropout must be in [0, 1)");
  if (o.targets.empty()) throw std::invalid_argument("lora: targetModules is empty");
}

int siteOf(const std::string& name) {
  for (int s = 0; s < kLoraSites; ++s)
    if (name == kSiteNames[s]) return s;
  throw std::invalid_argument("lora: unknown target module '" + name +
                              "' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj)");
}

}  // namespace

const char* loraSiteName(LoraSite s) { return kSiteNames[static_cast<int>(s)]; }

AdaptersOff::AdaptersOff() : prev_(tlAdaptersOff) { tlAdaptersOff = true; }
AdaptersOff::~AdaptersOff() { tlAdaptersOff = prev_; }

void enableLora(Model& m, const LoraOptions& opt) {
  if (m.lora) throw std::invalid_argument("lora: adapters are already enabled on this model");
  if (m.bf16Weights) throw std::invalid_argument("lora: not supported with bf16 weight storage (ZeRO)");
  checkOptions(opt);
  bool want[kLoraSites] = {};
  for (const auto& t : opt.targets) want[siteOf(t)] = true;

  auto st = std::make_shared<LoraState>();
  st->opt = opt;
  st->scale = opt.alpha / static_cast<double>(opt.rank);
  const int64_t r = opt.rank;

  // 1. Adapter layout in PEFT's names (layer, then q k v o gate up down; A before B).
  std::vector<HfTensor> tensors;
  int64_t off = 0;
  st->index.assign(m.cfg.layers, {});
  for (int64_t l = 0; l < m.cfg.layers; ++l) {
    st->index[l].fill(-1);
    for (int s = 0; s < kLoraSites; ++s) {
      if (!want[s]) continue;
      const auto [in, out] = siteDims(m.cfg, s);
      const std::string base = "base_model.model.model.layers." + std::to_string(l) +
                               (isAttention(s) ? ".self_attn." : ".mlp.") + kSiteNames[s];
      st->index[l][s] = static_cast<int>(st->shape.size());
      st->shape.push_back({out, in});
      tensors.push_back({base + ".lora_A.weight", {r, in}, off, r * in});
      off += r * in;
      tensors.push_back({base + ".lora_B.weight", {out, r}, off, out * r});
      off += out * r;
    }
  }

  // 2. Freeze the base. Its fp32 buffer stays alive only when the compute tensors alias it.
  for (auto& p : m.params) p.compute.requires_grad_(false);
  st->baseParams = std::move(m.params);
  st->baseTensors = std::move(m.hfTensors);
  if (m.computeIsMaster()) {
    st->baseFlat = m.flatParam;
  } else {
    for (auto& p : st->baseParams) p.master = at::Tensor();  // bf16 (or f64 test) compute copies only
  }

  // 3. The adapters become the model's trainable flat buffers.
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(m.device);
  m.flatParam = at::zeros({off}, f32);
  m.flatGrad = at::zeros({off}, f32);
  m.workerGrads.clear();
  m.expAvg = at::Tensor();
  m.expAvgSq = at::Tensor();
  m.optStep = 0;
  m.hostGrad = at::Tensor();
  m.hostParam = at::Tensor();
  m.hostGradDirty = false;
  m.hfTensors = tensors;
  m.params.clear();
  for (const auto& t : tensors) {
    Param p;
    p.name = t.name;
    p.shape = t.shape;
    p.offset = t.offset;
    p.numel = t.numel;
    p.master = m.flatParam.narrow(0, t.offset, t.numel).view(t.shape);
    p.copy = !m.computeIsMaster();
    p.compute = m.computeIsMaster() ? at::from_blob(m.flatParam.data_ptr<float>() + t.offset, t.shape, f32)
                                    : at::empty(t.shape, f32.dtype(m.dtype));
    p.compute.requires_grad_(true);
    m.params.push_back(std::move(p));
  }

  // 4. PEFT's init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_, a = sqrt(5)), B = 0.
  auto gen = at::detail::createCPUGenerator(opt.seed);
  at::Tensor host = at::zeros({off}, at::kFloat);
  for (size_t i = 0; i < st->shape.size(); ++i) {
    const HfTensor& a = tensors[2 * i];
    const double bound = 1.0 / std::sqrt(static_cast<double>(st->shape[i][1]));
    host.narrow(0, a.offset, a.numel).uniform_(-bound, bound, gen);
  }
  m.flatParam.copy_(host);
  m.lora = st;
  m.weightsChanged();
}

void loraMergeInto(const Model& src, Model& dst) {
  const LoraState* st = src.lora.get();
  if (!st) throw std::invalid_argument("mergeInto: the model has no adapters");
  if (dst.lora || dst.params.size() != st->baseParams.size())
    throw std::invalid_argument("mergeInto: target must be a plain model of the same config");
  at::NoGradGuard ng;
  std::map<std::string, size_t> byName;
  for (size_t i = 0; i < st->baseParams.size(); ++i) {
    const Param& b = st->baseParams[i];
    if (dst.params[i].name != b.name || dst.params[i].numel != b.numel)
      throw std::invalid_argument("mergeInto: target layout differs at " + b.name);
    dst.params[i].master.copy_(b.master.defined() ? b.master : b.compute.detach().to(at::kFloat));
    byName[b.name] = i;
  }
  for (int64_t l = 0; l < src.cfg.layers; ++l) {
    for (int s = 0; s < kLoraSites; ++s) {
      const int i = st->index[l][s];
      if (i < 0) continue;
      const auto [name, row] = siteInBase(src.cfg, l, s);
      const at::Tensor A = src.params[2 * i].master.to(at::kDouble), B = src.params[2 * i + 1].master.to(at::kDouble);
      at::Tensor w = dst.params[byName.at(name)].master.narrow(0, row, st->shape[i][0]);
      w.copy_(w.to(at::kDouble).add_(B.mm(A), st->scale));
    }
  }
  dst.weightsChanged();
}

// --- forward -------------------------------------------------------------------------------------

LoraPass::LoraPass(const Model& m, const at::Tensor& ids) : m_(m) {
  if (!m.lora || tlAdaptersOff) return;
  s_ = m.lora.get();
  dropout_ = s_->opt.dropout > 0 && at::GradMode::is_enabled();
  if (!dropout_) return;
  // Key of this forward's masks: the chunk's token ids (so the same rows get the same masks on
  // any rank, in any call order) and the trainer's step.
  at::Tensor cpu = ids.to(at::kCPU).contiguous();
  uint64_t h = mix(s_->opt.seed, static_cast<uint64_t>(s_->step));
  h = mix(h, static_cast<uint64_t>(cpu.size(0)) << 32 | static_cast<uint64_t>(cpu.size(1)));
  const int64_t* p = cpu.data_ptr<int64_t>();
  for (int64_t i = 0; i < cpu.numel(); ++i) h = mix(h, static_cast<uint64_t>(p[i]));
  key_ = h;
}

// Without dropout every site of a fused projection sees the same x, so all adapters run as two
// GEMMs: u = x [A_1; ..; A_n]^T, then y + s * u blockdiag(B_1^T, .., B_n^T) in one addmm (a site
// without an adapter is a 0-row block: zero columns). Same sums as the per-site form, fewer ops.
at::Tensor LoraPass::addShared(int64_t layer, LoraSite first, int n, const at::Tensor& x, const at::Tensor& y) const {
  std::vector<at::Tensor> as, bts;
  for (int k = 0; k < n; ++k) {
    const int s = static_cast<int>(first) + k;
    const int i = s_->index[layer][s];
    if (i < 0) {
      bts.push_back(at::zeros({0, width(static_cast<LoraSite>(s))}, y.options().requires_grad(false)));
      continue;
    }
    as.push_back(m_.params[2 * i].compute);
    bts.push_back(m_.params[2 * i + 1].compute.t());
  }
  if (as.empty()) return y;
  const at::Tensor a = as.size() == 1 ? as[0] : at::cat(as, 0);      // [R, in]
  const at::Tensor bd = bts.size() == 1 ? bts[0] : at::block_diag(bts);  // [R, out]
  const at::Tensor u = at::mm(x.reshape({-1, x.size(-1)}), a.t());   // [M, R]
  return at::addmm(y.reshape({-1, y.size(-1)}), u, bd, 1.0, s_->scale).view(y.sizes());
}

int64_t LoraPass::width(LoraSite s) const { return siteDims(m_.cfg, static_cast<int>(s))[1]; }

at::Tensor LoraPass::add(int64_t layer, LoraSite first, int n, const at::Tensor& x, const at::Tensor& y) const {
  if (!s_) return y;
  if (!dropout_) return addShared(layer, first, n, x, y);
  std::vector<at::Tensor> parts;
  bool any = false;
  for (int k = 0; k < n; ++k) {
    const int s = static_cast<int>(first) + k;
    const int i = s_->index[layer][s];
    if (i < 0) {
      parts.push_back(at::Tensor());
      continue;
    }
    at::Tensor xin = x;
    if (dropout_) {  // PEFT: nn.Dropout(p) on the adapter's input, one mask per adapter
      const double keep = 1.0 - s_->opt.dropout;
      auto gen = at::detail::createCPUGenerator(mix(mix(key_, static_cast<uint64_t>(layer)), static_cast<uint64_t>(s)));
      at::Tensor mask = at::empty(x.sizes(), x.options().device(at::kCPU).requires_grad(false)).bernoulli_(keep, gen);
      xin = x * mask.to(x.device()).div_(keep);
    }
    const at::Tensor& A = m_.params[2 * i].compute;
    const at::Tensor& B = m_.params[2 * i + 1].compute;
    parts.push_back(at::matmul(at::matmul(xin, A.t()), B.t()).mul(s_->scale));
    any = true;
  }
  if (!any) return y;
  if (n == 1) return y + parts[0];
  for (int k = 0; k < n; ++k)  // sites without an adapter add nothing to their block
    if (!parts[k].defined()) {
      auto shape = y.sizes().vec();
      shape.back() = width(static_cast<LoraSite>(static_cast<int>(first) + k));
      parts[k] = at::zeros(shape, y.options().requires_grad(false));
    }
  return y + at::cat(parts, -1);
}

}  // namespace mpo
