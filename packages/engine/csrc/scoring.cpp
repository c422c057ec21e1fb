// score(): per sequence, the summed log-probability of the response tokens, pooled final-norm
// hidden states and (with a reference model) KL(ref || policy), optionally keeping the autograd
// graph for backward().
//
// Work avoided on purpose:
//  - no padding work: sequences are sorted by length and cut into chunks whose rows have similar
//    lengths ("length bucketing"), each chunk runs padded only to its own longest row;
//  - right padding needs no attention mask: with a causal mask a real token never sees a later
//    (padded) position, so real rows are exact and padded rows are simply ignored;
//  - no log-softmax over the vocabulary for every position: the LM head runs only on the rows
//    that predict a response token, and log p = logit[target] - logsumexp(logits).
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <limits>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <stdexcept>

#include "lora.h"  // [LoRA]
#include "ops.h"

namespace mpo {

namespace {

int64_t envInt(const char* name, int64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : dflt;
}

}  // namespace

std::vector<Chunk> planChunks(const std::vector<int64_t>& len, int workers, bool padToMax) {
  const int64_t n = static_cast<int64_t>(len.size());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return len[a] > len[b]; });
  if (n == 0) return {};
  const int64_t maxLen = len[order[0]];
  int64_t total = 0;
  for (auto l : len) total += padToMax ? maxLen : l;
  // Tokens per chunk: big enough for efficient GEMMs, small enough to bound activation memory and
  // to give every worker thread something to do.
  int64_t budget = envInt("MPO_ENGINE_CHUNK_TOKENS", 16384);
  if (workers > 1) budget = std::min(budget, (total + workers - 1) / workers);
  budget = std::max(budget, maxLen);
  // Padding allowed inside a chunk, as a fraction of its real tokens.
  const double slack = 0.15;

  std::vector<Chunk> chunks;
  int64_t i = 0;
  while (i < n) {
    Chunk c;
    c.T = padToMax ? maxLen : len[order[i]];
    int64_t real = 0;
    while (i < n) {
      const int64_t l = len[order[i]];
      const int64_t rows = static_cast<int64_t>(c.rows.size()) + 1;
      if (!c.rows.empty()) {
        if (rows * c.T > budget) break;
        if (!padToMax && static_cast<double>(rows * c.T) > (1.0 + slack) * static_cast<double>(real + l)) break;
      }
      c.rows.push_back(order[i]);
      real += l;
      ++i;
    }
    chunks.push_back(std::move(c));
  }
  return chunks;
}

namespace {

// Everything one chunk computes. Tensors keep their graph when grad mode is on.
struct ChunkOut {
  at::Tensor sumLogp, kl, last, mean, meanUnmasked;
};

ChunkOut runChunk(Model& m, const ScoreRequest& r, const Chunk& c) {
  const int64_t b = static_cast<int64_t>(c.rows.size()), T = c.T, D = m.cfg.hidden;
  auto i64 = at::TensorOptions().dtype(at::kLong);

  // ids, right padded with padId; response-predicting rows and their targets.
  at::Tensor ids = at::full({b, T}, m.cfg.padId, i64);
  auto ia = ids.accessor<int64_t, 2>();
  std::vector<int64_t> lens(b), rows, targets, seg, lastRows(b);
  for (int64_t j = 0; j < b; ++j) {
    const int64_t s = c.rows[j], start = r.offsets[s], L = r.offsets[s + 1] - start;
    lens[j] = L;
    for (int64_t t = 0; t < L; ++t) ia[j][t] = r.tokens[start + t];
    lastRows[j] = j * T + L - 1;
    if (r.lmHead || r.ref) {
      for (int64_t p = std::max<int64_t>(r.promptLens[s], 1); p < L; ++p) {
        rows.push_back(j * T + p - 1);  // hidden state at p-1 predicts token p
        targets.push_back(ia[j][p]);
        seg.push_back(j);
      }
    }
  }
  auto toDev = [&](const std::vector<int64_t>& v) { return at::tensor(v, i64).to(m.device); };
  ids = ids.to(m.device);

  // Padded query rows only matter for 'meanUnmasked' (a mean over every padded position, as the
  // official MPO code takes it); there they must see the real tokens only, as transformers does
  // with an attention_mask. Real rows never need the mask (causality already hides the padding).
  at::Tensor mask;
  bool padded = false;
  for (auto L : lens) padded |= L < T;
  if (r.poolMeanUnmasked && padded) {
    at::Tensor keyValid = at::arange(T, i64).unsqueeze(0) < at::tensor(lens, i64).unsqueeze(1);  // [b,T]
    at::Tensor causalOk = at::ones({T, T}, at::kBool).tril();
    at::Tensor ok = causalOk.unsqueeze(0) & keyValid.unsqueeze(1);  // [b,T,T]
    mask = at::zeros({b, T, T}, at::TensorOptions().dtype(m.actDtype))
               .masked_fill_(ok.logical_not(), -std::numeric_limits<double>::infinity())
               .to(m.device);
  }

  at::Tensor hidden = m.forward(ids, at::Tensor(), mask, nullptr);  // [b,T,D]
  at::Tensor hflat = hidden.reshape({b * T, D});
  ChunkOut out;

  if (!rows.empty()) {
    at::Tensor rowT = toDev(rows), tgtT = toDev(targets), segT = toDev(seg);
    at::Tensor logits = m.logitsOf(hflat.index_select(0, rowT));  // [N,V] fp32
    at::Tensor lse = at::logsumexp(logits, {-1});
    if (r.lmHead) {
      at::Tensor lp = logits.gather(1, tgtT.unsqueeze(1)).squeeze(1) - lse;
      out.sumLogp = at::zeros({b}, lp.options()).index_add(0, segT, lp);
    }
    if (r.ref) {
      at::Tensor refLp;
      {
        at::NoGradGuard ng;
        const AdaptersOff refIsBase;  // [LoRA] the reference is the base model
        at::Tensor rh = r.ref->forward(ids, at::Tensor(), mask, nullptr).reshape({b * T, D});
        refLp = at::log_softmax(r.ref->logitsOf(rh.index_select(0, rowT)), -1).to(logits.scalar_type());
      }
      at::Tensor polLp = logits - lse.unsqueeze(1);
      at::Tensor klPos = (refLp.exp() * (refLp - polLp)).sum(-1);
      out.kl = at::zeros({b}, klPos.options()).index_add(0, segT, klPos);
    }
  } else {  // no response token in the whole chunk: constant zeros (backward() skips them)
    auto fopt = hidden.options().dtype(hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
    if (r.lmHead) out.sumLogp = at::zeros({b}, fopt);
    if (r.ref) out.kl = at::zeros({b}, fopt);
  }
  if (r.poolLast) out.last = hflat.index_select(0, toDev(lastRows));
  if (r.poolMean) {
    at::Tensor lensT = at::tensor(lens, i64).to(m.device);
    at::Tensor valid = (at::arange(T, i64.device(m.device)).unsqueeze(0) < lensT.unsqueeze(1)).to(hidden.scalar_type());
    out.mean = (hidden * valid.unsqueeze(2)).sum(1) / lensT.unsqueeze(1).to(hidden.scalar_type());
  }
  if (r.poolMeanUnmasked) out.meanUnmasked = hidden.mean(1);
  return out;
}

template <typename T>
void scatterRows(std::vector<T>& dst, const at::Tensor& src, const std::vector<int64_t>& rows, int64_t width) {
  at::Tensor h = src.detach().to(at::kCPU).to(c10::CppTypeToScalarType<T>::value).contiguous();
  const T* p = h.data_ptr<T>();
  for (size_t j = 0; j < rows.size(); ++j)
    std::copy(p + j * width, p + (j + 1) * width, dst.begin() + rows[j] * width);
}

}  // namespace

ScoreResult score(Model& m, const ScoreRequest& r) {
  const int64_t n = static_cast<int64_t>(r.promptLens.size());
  if (static_cast<int64_t>(r.offsets.size()) != n + 1) throw std::invalid_argument("score: offsets/promptLengths mismatch");
  if (r.ref) {
    const auto& a = m.cfg;
    const auto& b = r.ref->cfg;
    if (a.vocab != b.vocab) throw std::invalid_argument("score: reference model has a different vocabulary size");
    if (r.ref->device != m.device) throw std::invalid_argument("score: reference model is on another device");
  }
  std::vector<int64_t> lens(n);
  int64_t maxLen = 0;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t L = r.offsets[s + 1] - r.offsets[s];
    if (L <= 0) throw std::invalid_argument("score: sequence " + std::to_string(s) + " is empty");
    if (r.promptLens[s] < 0 || r.promptLens[s] > L)
      throw std::invalid_argument("score: promptLength " + std::to_string(r.promptLens[s]) + " of sequence " +
                                  std::to_string(s) + " is outside 0.." + std::to_string(L));
    for (int64_t t = 0; t < L; ++t) {
      const int64_t id = r.tokens[r.offsets[s] + t];
      if (id < 0 || id >= m.cfg.vocab)
        throw std::invalid_argument("score: token id " + std::to_string(id) + " at position " + std::to_string(t) +
                                    " of sequence " + std::to_string(s) + " is outside the vocabulary (size " +
                                    std::to_string(m.cfg.vocab) + ")");
    }
    lens[s] = L;
    maxLen = std::max(maxLen, L);
  }
  m.ensureRope(maxLen);
  if (r.ref) r.ref->ensureRope(maxLen);

  const bool cuda = !m.device.is_cpu();
  const int workers = cuda ? 1 : std::max(1, m.threads);
  std::vector<Chunk> chunks = planChunks(lens, workers, r.poolMeanUnmasked);

  ScoreResult res;
  res.n = n;
  res.hidden = m.cfg.hidden;
  const int64_t D = m.cfg.hidden;
  if (r.lmHead) res.sumLogp.assign(n, 0.0);
  res.tokens.resize(n);
  for (int64_t s = 0; s < n; ++s) res.tokens[s] = static_cast<int32_t>(lens[s] - std::max<int64_t>(r.promptLens[s], 1));
  for (int64_t s = 0; s < n; ++s) res.tokens[s] = std::max<int32_t>(res.tokens[s], 0);
  if (r.ref) res.kl.assign(n, 0.0);
  if (r.poolLast) res.last.assign(n * D, 0.f);
  if (r.poolMean) res.mean.assign(n * D, 0.f);
  if (r.poolMeanUnmasked) res.meanUnmasked.assign(n * D, 0.f);

  auto handle = r.grad ? std::make_shared<GraphHandle>() : nullptr;
  if (handle) {
    handle->n = n;
    handle->chunks.resize(chunks.size());
  }
  runParallel(workers, static_cast<int64_t>(chunks.size()), m.threads, r.grad, [&](int, int64_t ci) {
    const Chunk& c = chunks[ci];
    std::optional<AdaptersOff> base;  // [LoRA] adapters: false
    if (!r.adapters) base.emplace();
    ChunkOut o;
    if (r.grad) {
      o = runChunk(m, r, c);
    } else {
      c10::InferenceMode im;
      o = runChunk(m, r, c);
    }
    if (o.sumLogp.defined()) scatterRows(res.sumLogp, o.sumLogp, c.rows, 1);
    if (o.kl.defined()) scatterRows(res.kl, o.kl, c.rows, 1);
    if (o.last.defined()) scatterRows(res.last, o.last, c.rows, D);
    if (o.mean.defined()) scatterRows(res.mean, o.mean, c.rows, D);
    if (o.meanUnmasked.defined()) scatterRows(res.meanUnmasked, o.meanUnmasked, c.rows, D);
    if (handle) {
      auto& g = handle->chunks[ci];
      g.index = c.rows;
      g.sumLogp = o.sumLogp;
      g.kl = o.kl;
      g.last = o.last;
      g.mean = o.mean;
      g.meanUnmasked = o.meanUnmasked;
    }
  });
  if (handle) res.handle = m.addHandle(handle);
  return res;
}

std::vector<float> lastLogits(Model& m, const std::vector<int32_t>& tokens) {
  const int64_t L = static_cast<int64_t>(tokens.size());
  if (L == 0) throw std::invalid_argument("logits: empty sequence");
  for (auto id : tokens)
    if (id < 0 || id >= m.cfg.vocab)
      throw std::invalid_argument("logits: token id " + std::to_string(id) + " is outside the vocabulary (size " +
                                  std::to_string(m.cfg.vocab) + ")");
  m.ensureRope(L);
  setIntraOpThreads(m.threads);
  c10::InferenceMode im;
  std::vector<int64_t> ids(tokens.begin(), tokens.end());
  at::Tensor t = at::tensor(ids, at::kLong).view({1, L}).to(m.device);
  at::Tensor h = m.forward(t, at::Tensor(), at::Tensor(), nullptr);
  at::Tensor lg = m.logitsOf(h.select(1, L - 1)).to(at::kCPU).to(at::kFloat).contiguous().view({-1});
  return std::vector<float>(lg.data_ptr<float>(), lg.data_ptr<float>() + lg.numel());
}

}  // namespace mpo
