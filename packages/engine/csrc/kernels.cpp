// Decoder building blocks. Plain ATen compositions; see kernels.h.
#include "kernels.h"

namespace mpo {

at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  const bool upcast = x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf;
  at::Tensor xf = upcast ? x.to(at::kFloat) : x;
  at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return w * (upcast ? y.to(x.scalar_type()) : y);
}

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rot = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rot * sin;
}

at::Tensor swiglu(const at::Tensor& gu, int64_t I) {
  return at::silu(gu.narrow(-1, 0, I)) * gu.narrow(-1, I, I);
}

}  // namespace mpo
