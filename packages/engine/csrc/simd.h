// Helpers for the hand-written CPU loops: plain C++ that the compiler auto-vectorises.
//
// MPO_CLONES compiles a function twice, for AVX2+FMA (x86-64-v3) and for the baseline, and picks
// one when the addon loads (GCC/Clang function multi-versioning), so the addon still runs on CPUs
// without AVX2.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MPO_NO_CLONES)
#define MPO_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MPO_CLONES
#endif

namespace mpo {

// exp(x) for float, ~2 ulp on the range that matters (results below 1e-38 flush to ~0, above
// 1.6e38 saturate), written without calls or branches so loops around it vectorise.
inline __attribute__((always_inline)) float fastExp(float x) {
  x = std::max(-87.0f, std::min(88.0f, x));
  // n = round(x / ln2) by the 1.5 * 2^23 trick: pure arithmetic, so it vectorises without SSE4.1
  const float t = x * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;
  // r = x - n*ln2, with ln2 split in two for precision
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  // exp(r) on [-ln2/2, ln2/2]: Taylor to degree 7 (error < 2e-8 relative)
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
inline double fastExp(double x) { return std::exp(x); }

// tanh(x) = 1 - 2 / (1 + exp(2x)) on fastExp (absolute error ~1e-7; saturates to +-1 cleanly).
inline __attribute__((always_inline)) float fastTanh(float x) { return 1.0f - 2.0f / (1.0f + fastExp(2.0f * x)); }
inline double fastTanh(double x) { return std::tanh(x); }

}  // namespace mpo
