// generate(): greedy or temperature/top-p sampling with a KV cache, stopping at EOS or a token limit.
//
// Prompts are sorted by length and batched (left padded, so every row's next token sits in the
// last column). A padded row's positions start at 0 at its first real token and its padding is
// masked out of attention, so a prompt generates the same tokens alone or in a batch (up to float
// rounding). Each prompt samples from its own random stream, seeded from (seed, prompt index), for
// the same reason. Batches run on the model's worker threads.
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>

#include "ops.h"

namespace mpo {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Pick the next token from one row of fp32 logits.
int64_t pick(const float* logits, int64_t V, double temperature, double topP, std::mt19937_64& rng) {
  if (temperature <= 0.0) {  // greedy: first index of the maximum
    int64_t best = 0;
    for (int64_t v = 1; v < V; ++v)
      if (logits[v] > logits[best]) best = v;
    return best;
  }
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(logits[v]));
  std::vector<double> p(V);
  double z = 0.0;
  for (int64_t v = 0; v < V; ++v) z += (p[v] = std::exp((logits[v] - mx) / temperature));
  std::vector<int64_t> idx(V);
  std::iota(idx.begin(), idx.end(), 0);
  int64_t keep = V;
  if (topP < 1.0) {  // nucleus: the smallest set of most likely tokens with mass >= topP
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
    double cum = 0.0;
    for (keep = 0; keep < V;) {
      cum += p[idx[keep++]] / z;
      if (cum >= topP) break;
    }
    z = 0.0;
    for (int64_t i = 0; i < keep; ++i) z += p[idx[i]];
  }
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng) * z;
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += p[idx[i]];
    if (u < acc) return idx[i];
  }
  return idx[keep - 1];
}

// Additive mask [b, T, Tk] for query positions [Tk-T, Tk): causal, and key j hidden when it is
// left padding of its row (a padding query still sees itself so that no row is fully masked).
at::Tensor genMask(const std::vector<int64_t>& padLeft, int64_t T, int64_t Tk, at::ScalarType dt) {
  const int64_t b = static_cast<int64_t>(padLeft.size()), q0 = Tk - T;
  at::Tensor m = at::zeros({b, T, Tk}, at::kFloat);
  auto a = m.accessor<float, 3>();
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < b; ++r)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < Tk; ++j) {
        const bool visible = j <= q0 + i && (j >= padLeft[r] || j == q0 + i);
        if (!visible) a[r][i][j] = ninf;
      }
  return m.to(dt);
}

struct Batch {
  std::vector<int64_t> rows;  // prompt indices
};

void runBatch(Model& m, const GenerateRequest& r, const Batch& bt, std::vector<std::vector<int64_t>>& out) {
  c10::InferenceMode im;
  const int64_t b = static_cast<int64_t>(bt.rows.size()), V = m.cfg.vocab;
  int64_t P = 0;
  for (auto i : bt.rows) P = std::max<int64_t>(P, r.prompts[i].size());
  std::vector<int64_t> padLeft(b), ids(b * P, m.cfg.padId), pos(b * P, 0), lens(b);
  for (int64_t j = 0; j < b; ++j) {
    const auto& pr = r.prompts[bt.rows[j]];
    lens[j] = static_cast<int64_t>(pr.size());
    padLeft[j] = P - lens[j];
    for (int64_t t = 0; t < lens[j]; ++t) {
      ids[j * P + padLeft[j] + t] = pr[t];
      pos[j * P + padLeft[j] + t] = t;
    }
  }
  std::vector<std::mt19937_64> rngs;
  for (int64_t j = 0; j < b; ++j) rngs.emplace_back(splitmix64(r.seed ^ splitmix64(static_cast<uint64_t>(bt.rows[j]))));
  auto i64 = at::TensorOptions().dtype(at::kLong);
  auto dev = [&](at::Tensor t) { return t.to(m.device); };

  std::vector<char> done(b, 0);
  std::vector<std::vector<int64_t>> gen(b);
  KvCache cache;
  if (r.kvCache) cache = m.newCache(b, P + r.maxNewTokens);
  // Without a cache the whole (growing) sequence is recomputed every step.
  std::vector<int64_t> allIds = ids, allPos = pos;
  int64_t cur = P;  // current sequence length (columns)

  at::Tensor logits;  // [b, V] fp32 on CPU
  {
    at::Tensor h = m.forward(dev(at::tensor(ids, i64).view({b, P})), dev(at::tensor(pos, i64).view({b, P})),
                             dev(genMask(padLeft, P, P, m.actDtype)), r.kvCache ? &cache : nullptr);
    logits = m.logitsOf(h.select(1, P - 1)).to(at::kCPU).to(at::kFloat).contiguous();
  }
  for (int64_t s = 0; s < r.maxNewTokens; ++s) {
    std::vector<int64_t> next(b, m.cfg.padId), nextPos(b);
    const float* lg = logits.data_ptr<float>();
    bool allDone = true;
    for (int64_t j = 0; j < b; ++j) {
      nextPos[j] = lens[j] + s;
      if (done[j]) continue;
      const int64_t tok = pick(lg + j * V, V, r.temperature, r.topP, rngs[j]);
      gen[j].push_back(tok);
      next[j] = tok;
      if (std::find(r.eos.begin(), r.eos.end(), tok) != r.eos.end()) done[j] = 1;
      allDone &= done[j] != 0;
    }
    if (allDone || s + 1 == r.maxNewTokens) break;
    at::Tensor h;
    if (r.kvCache) {
      h = m.forward(dev(at::tensor(next, i64).view({b, 1})), dev(at::tensor(nextPos, i64).view({b, 1})),
                    dev(genMask(padLeft, 1, cur + 1, m.actDtype)), &cache);
      h = h.select(1, 0);
    } else {
      std::vector<int64_t> ni, np;
      for (int64_t j = 0; j < b; ++j) {
        ni.insert(ni.end(), allIds.begin() + j * cur, allIds.begin() + (j + 1) * cur);
        ni.push_back(next[j]);
        np.insert(np.end(), allPos.begin() + j * cur, allPos.begin() + (j + 1) * cur);
        np.push_back(nextPos[j]);
      }
      allIds.swap(ni);
      allPos.swap(np);
      h = m.forward(dev(at::tensor(allIds, i64).view({b, cur + 1})), dev(at::tensor(allPos, i64).view({b, cur + 1})),
                    dev(genMask(padLeft, cur + 1, cur + 1, m.actDtype)), nullptr);
      h = h.select(1, cur);
    }
    ++cur;
    logits = m.logitsOf(h).to(at::kCPU).to(at::kFloat).contiguous();
  }
  for (int64_t j = 0; j < b; ++j) out[bt.rows[j]] = std::move(gen[j]);
}

}  // namespace

std::vector<std::vector<int64_t>> generate(Model& m, const GenerateRequest& r) {
  const int64_t n = static_cast<int64_t>(r.prompts.size());
  int64_t maxP = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto& p = r.prompts[i];
    if (p.empty()) throw std::invalid_argument("generate: prompt " + std::to_string(i) + " is empty");
    for (size_t t = 0; t < p.size(); ++t)
      if (p[t] < 0 || p[t] >= m.cfg.vocab)
        throw std::invalid_argument("generate: token id " + std::to_string(p[t]) + " at position " + std::to_string(t) +
                                    " of prompt " + std::to_string(i) + " is outside the vocabulary (size " +
                                    std::to_string(m.cfg.vocab) + ")");
    maxP = std::max<int64_t>(maxP, p.size());
  }
  std::vector<std::vector<int64_t>> out(n);
  if (n == 0 || r.maxNewTokens <= 0) return out;
  m.ensureRope(maxP + r.maxNewTokens + 1);

  // Batches of similar prompt lengths.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return r.prompts[a].size() > r.prompts[b].size(); });
  const char* env = std::getenv("MPO_ENGINE_GEN_BATCH");
  const int64_t maxBatch = env && *env ? std::max(1, std::atoi(env)) : 16;
  const bool cuda = !m.device.is_cpu();
  const int workers = cuda ? 1 : std::max(1, m.threads);
  const int64_t per = std::min<int64_t>(maxBatch, std::max<int64_t>(1, (n + workers - 1) / workers));
  std::vector<Batch> batches;
  for (int64_t i = 0; i < n; i += per) {
    Batch b;
    for (int64_t j = i; j < std::min(n, i + per); ++j) b.rows.push_back(order[j]);
    batches.push_back(std::move(b));
  }
  runParallel(workers, static_cast<int64_t>(batches.size()), m.threads, false,
              [&](int, int64_t bi) { runBatch(m, r, batches[bi], out); });
  return out;
}

}  // namespace mpo
