// Reduction kernels of the shared-memory group: the rank-order sum of a piece over ranks, and the
// conversions to and from the transport format (f32, or bf16 rounded to nearest even).
#pragma once

#include <cstddef>

#include "shm_group.h"

namespace mpo {

// One source of a reduction: f32 or bf16 memory; `quantize` rounds an f32 source to bf16 first
// (a rank's own contribution under bf16 transport, so that the result does not depend on which
// rank owns a piece).
struct Src {
  const void* p;
  bool bf16;
  bool quantize;
};

// out[i] = op(sum_q src_q[i]) over the `n` sources, in order; written to outF32 (may be null) and/or
// outT (transport format, may be null).
void reduceInto(const Src* srcs, int n, size_t len, ReduceOp op, Transport t, float* outF32, void* outT);

// `n` floats into the transport format (bf16: rounded to nearest even).
void toTransport(void* dst, const float* src, size_t n, Transport t);

// `n` values of the transport format back to floats.
void fromTransport(float* dst, const void* src, size_t n, Transport t);

}  // namespace mpo
