// AdamW over the flat fp32 buffers, with clipping by the global gradient norm.
//
// Same arithmetic as torch.optim.AdamW (single-tensor path): decoupled weight decay
// p *= 1 - lr*wd, m = lerp(m, g, 1-b1), v = b2*v + (1-b2)*g*g, p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps),
// and torch.nn.utils.clip_grad_norm_'s coefficient min(1, max_norm / (norm + 1e-6)). On the CPU it
// is one fused pass over parameters, gradients and both moments instead of ~8 tensor ops.
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops.h"
#include "simd.h"

namespace mpo {

namespace {

// Sum of squares of g[i0..i1) in double.
MPO_CLONES double sumSquares(const float* g, int64_t i0, int64_t i1) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = i0; i < i1; ++i) s += static_cast<double>(g[i]) * g[i];
  return s;
}

struct AdamConsts {
  float c, decay, w1, b2, w2, stepSize, bc2Sqrt, eps;
};

// One AdamW update of p[i0..i1) (torch's single-tensor arithmetic, see the file comment).
MPO_CLONES void adamwRange(float* p, const float* g, float* ma, float* va, int64_t i0, int64_t i1, AdamConsts k) {
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    const float gi = g[i] * k.c;
    const float pi = p[i] * k.decay;
    const float mi = ma[i] + k.w1 * (gi - ma[i]);  // lerp, as torch
    const float vi = k.b2 * va[i] + k.w2 * gi * gi;
    ma[i] = mi;
    va[i] = vi;
    p[i] = pi + -k.stepSize * (mi / (std::sqrt(vi) / k.bc2Sqrt + k.eps));  // addcdiv_ order
  }
}

// The update's float constants for step `t` (1-based) and clip coefficient `clip`.
AdamConsts adamConsts(const StepOptions& o, int64_t t, double clip) {
  const double bc1 = 1.0 - std::pow(o.beta1, double(t)), bc2 = 1.0 - std::pow(o.beta2, double(t));
  return AdamConsts{static_cast<float>(clip),
                    static_cast<float>(1.0 - o.lr * o.weightDecay),
                    static_cast<float>(1.0 - o.beta1),
                    static_cast<float>(o.beta2),
                    static_cast<float>(1.0 - o.beta2),
                    static_cast<float>(o.lr / bc1),
                    static_cast<float>(std::sqrt(bc2)),
                    static_cast<float>(o.eps)};
}

}  // namespace

namespace {
void noMaster(const Model& m, const char* what) {
  if (m.bf16Weights)
    throw std::invalid_argument(std::string(what) +
                                ": the weights are stored in bf16 only (no fp32 master here); "
                                "the sharded optimizer (ZeRO) keeps the masters and AdamW state");
}
}  // namespace

void ensureOptimizerState(Model& m) {
  noMaster(m, "optimizer state");
  if (m.expAvg.defined()) return;
  m.expAvg = at::zeros_like(m.flatParam);
  m.expAvgSq = at::zeros_like(m.flatParam);
  m.optStep = 0;
}

double gradNorm(Model& m) {
  noMaster(m, "gradNorm");
  m.syncGradFromHost();
  if (!m.device.is_cpu()) return std::sqrt(m.flatGrad.to(at::kDouble).pow(2).sum().item<double>());
  // Fixed blocks summed in double, then added in block order: the same result whatever the
  // thread count. Runs on plain worker threads (no OpenMP barriers, which spin badly when the
  // other core is busy).
  const int64_t n = m.flatGrad.numel();
  std::vector<double> part((n + kNormBlock - 1) / kNormBlock, 0.0);
  sumSquaresBlocks(m.flatGrad.data_ptr<float>(), n, part.data(), m.threads);
  double s = 0.0;
  for (double p : part) s += p;
  return std::sqrt(s);
}

void sumSquaresBlocks(const float* g, int64_t n, double* part, int threads) {
  const int64_t nb = (n + kNormBlock - 1) / kNormBlock;
  const int workers = std::max(1, std::min<int>(threads, static_cast<int>(nb)));
  runParallel(workers, workers, 1, false, [&](int, int64_t w) {
    for (int64_t b = w; b < nb; b += workers)
      part[b] = sumSquares(g, b * kNormBlock, std::min(n, (b + 1) * kNormBlock));
  });
}

void adamwBuffers(float* p, const float* g, float* ma, float* va, int64_t n, const StepOptions& o, int64_t t,
                  double clip, int threads) {
  const AdamConsts k = adamConsts(o, t, clip);
  const int workers = std::max(1, threads);
  runParallel(workers, workers, 1, false, [&](int, int64_t w) {
    adamwRange(p, g, ma, va, n * w / workers, n * (w + 1) / workers, k);
  });
}

double adamwStep(Model& m, const StepOptions& o) {
  ensureOptimizerState(m);
  const double norm = gradNorm(m) / o.gradScale;
  if (!std::isfinite(norm)) return norm;  // skip the update; the caller sees the non-finite norm
  // clip_grad_norm_'s coefficient on the unscaled gradients, times the unscaling 1/gradScale
  const double clip = ((o.maxGradNorm > 0 && norm > o.maxGradNorm) ? o.maxGradNorm / (norm + 1e-6) : 1.0) / o.gradScale;
  m.optStep += 1;

  if (m.device.is_cpu()) {
    adamwBuffers(m.flatParam.data_ptr<float>(), m.flatGrad.data_ptr<float>(), m.expAvg.data_ptr<float>(),
                 m.expAvgSq.data_ptr<float>(), m.flatParam.numel(), o, m.optStep, clip, m.threads);
  } else {
    const AdamConsts k = adamConsts(o, m.optStep, clip);
    at::NoGradGuard ng;
    at::Tensor g = clip == 1.0 ? m.flatGrad : m.flatGrad * clip;  // clip includes 1/gradScale
    m.flatParam.mul_(k.decay);
    m.expAvg.lerp_(g, k.w1);
    m.expAvgSq.mul_(k.b2).addcmul_(g, g, k.w2);
    at::Tensor denom = (m.expAvgSq.sqrt() / k.bc2Sqrt).add_(k.eps);
    m.flatParam.addcdiv_(m.expAvg, denom, -k.stepSize);
  }
  m.weightsChanged();
  return norm;
}

}  // namespace mpo
