// Reduction kernels of the shared-memory group (shm_group.cc): f32 and bf16 loads, sums and
// conversions, each compiled for AVX-512, AVX2 and a baseline (target_clones picks one at load
// time), and reduceInto, which sums a piece over ranks in rank order, block by block, so that
// every rank computes the same bits.
#include "reduce_kernels.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#define MPO_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MPO_KERNEL
#endif

namespace mpo {

namespace {

constexpr size_t kBlock = 1024;  // floats per reduction block (4 KiB accumulator in L1)

inline float bf16ToF32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint32_t f32RoundBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t r = u + 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  // keep NaNs NaN (rounding could carry a NaN payload into infinity)
  return ((u & 0x7fffffffu) > 0x7f800000u) ? (u | 0x00400000u) : r;
}

MPO_KERNEL void kCopyF32ToBf16(uint16_t* __restrict dst, const float* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = uint16_t(f32RoundBits(src[i]) >> 16);
}

MPO_KERNEL void kCopyBf16ToF32(float* __restrict dst, const uint16_t* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bf16ToF32(src[i]);
}

MPO_KERNEL void kLoadF32(float* __restrict acc, const float* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) acc[i] = src[i];
}

MPO_KERNEL void kAddF32(float* __restrict acc, const float* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) acc[i] += src[i];
}

MPO_KERNEL void kAddBf16(float* __restrict acc, const uint16_t* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) acc[i] += bf16ToF32(src[i]);
}

MPO_KERNEL void kQuantizeBf16(float* __restrict acc, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t u = f32RoundBits(acc[i]) & 0xffff0000u;
    std::memcpy(&acc[i], &u, 4);
  }
}

// `src` already holds bf16-representable values: keep the high halves.
MPO_KERNEL void kStoreBf16Exact(uint16_t* __restrict dst, const float* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &src[i], 4);
    dst[i] = uint16_t(u >> 16);
  }
}

MPO_KERNEL void kScale(float* __restrict acc, size_t n, float s) {
  for (size_t i = 0; i < n; ++i) acc[i] *= s;
}

MPO_KERNEL void kDivide(float* __restrict acc, size_t n, float d) {
  for (size_t i = 0; i < n; ++i) acc[i] /= d;
}

// Two f32 sources, fused: out = (a + b) * scale (scale 1 or 0.5, both exact), to one or two outputs.
MPO_KERNEL void kSum2(float* __restrict outL, float* __restrict outT, const float* __restrict a,
                      const float* __restrict b, size_t n, float scale) {
  if (outT) {
    for (size_t i = 0; i < n; ++i) {
      float v = (a[i] + b[i]) * scale;
      outL[i] = v;
      outT[i] = v;
    }
  } else {
    for (size_t i = 0; i < n; ++i) outL[i] = (a[i] + b[i]) * scale;
  }
}

}  // namespace

// out[i] = op(sum_q src_q[i]); written to outF32 (may be null) and/or outT (transport format).
void reduceInto(const Src* srcs, int n, size_t len, ReduceOp op, Transport t, float* outF32, void* outT) {
  if (n == 2 && t == Transport::F32 && outF32 && !srcs[0].bf16 && !srcs[1].bf16 && !srcs[0].quantize &&
      !srcs[1].quantize) {
    // the common case (2 ranks, f32): one pass instead of block passes; same rounding as below
    // (a + b, then * 0.5 for avg, which is exact)
    kSum2(outF32, static_cast<float*>(outT), static_cast<const float*>(srcs[0].p),
          static_cast<const float*>(srcs[1].p), len, op == ReduceOp::Avg ? 0.5f : 1.0f);
    return;
  }
  alignas(64) float acc[kBlock];
  const bool pow2 = (n & (n - 1)) == 0;
  for (size_t off = 0; off < len; off += kBlock) {
    const size_t m = std::min(kBlock, len - off);
    for (int q = 0; q < n; ++q) {
      const Src& s = srcs[q];
      if (s.bf16) {
        const uint16_t* p = static_cast<const uint16_t*>(s.p) + off;
        if (q == 0)
          kCopyBf16ToF32(acc, p, m);
        else
          kAddBf16(acc, p, m);
      } else {
        const float* p = static_cast<const float*>(s.p) + off;
        if (q == 0) {
          kLoadF32(acc, p, m);
          if (s.quantize) kQuantizeBf16(acc, m);
        } else if (s.quantize) {
          alignas(64) float tmp[kBlock];
          kLoadF32(tmp, p, m);
          kQuantizeBf16(tmp, m);
          kAddF32(acc, tmp, m);
        } else {
          kAddF32(acc, p, m);
        }
      }
    }
    if (op == ReduceOp::Avg && n > 1) {
      if (pow2)
        kScale(acc, m, 1.0f / float(n));  // exact for powers of two
      else
        kDivide(acc, m, float(n));
    }
    if (t == Transport::BF16) {
      kQuantizeBf16(acc, m);  // result is a bf16 value on every rank and in every path
      if (outT) kStoreBf16Exact(static_cast<uint16_t*>(outT) + off, acc, m);
    } else if (outT) {
      std::memcpy(static_cast<float*>(outT) + off, acc, m * 4);
    }
    if (outF32) std::memcpy(outF32 + off, acc, m * 4);
  }
}

void toTransport(void* dst, const float* src, size_t n, Transport t) {
  if (t == Transport::BF16)
    kCopyF32ToBf16(static_cast<uint16_t*>(dst), src, n);
  else
    std::memcpy(dst, src, n * 4);
}

void fromTransport(float* dst, const void* src, size_t n, Transport t) {
  if (t == Transport::BF16)
    kCopyBf16ToF32(dst, static_cast<const uint16_t*>(src), n);
  else
    std::memcpy(dst, src, n * 4);
}


}  // namespace mpo
