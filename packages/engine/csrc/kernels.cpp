// Fused CPU kernels (RMSNorm, SwiGLU, linear, RoPE) with hand-written backward passes.
// See kernels.h. Loops are written for the auto-vectoriser (see simd.h); reductions use
// `omp simd reduction`, which lets the compiler reorder the float sums of one row.
#include "kernels.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "blas.h"
#include "simd.h"

namespace mpo {

using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

bool fusedCpu(const at::Tensor& t) {
  return t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

bool directGemm(at::ScalarType t) {
  return t == at::kFloat ? haveGemm(static_cast<const float*>(nullptr))
                         : (t == at::kDouble ? haveGemm(static_cast<const double*>(nullptr)) : false);
}

namespace {

// Rows are processed in fixed blocks so that per-block partial sums (weight gradients) are added
// in the same order whatever the thread count.
constexpr int64_t kRowBlock = 64;

// ---------------------------------------------------------------- RMSNorm
template <typename T>
inline __attribute__((always_inline)) void rmsFwdImpl(const T* x, const T* w, T* y, T* rinv, int64_t r0, int64_t r1,
                                                       int64_t D, T eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    T ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
    const T ri = T(1) / std::sqrt(ss / T(D) + eps);
    rinv[r] = ri;
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * ri * w[i];
  }
}
// One block of rows: dx, and this block's share of dw (added into dwPart).
template <typename T>
inline __attribute__((always_inline)) void rmsBwdImpl(const T* x, const T* w, const T* rinv, const T* dy, T* dx,
                                                       T* dwPart, int64_t r0, int64_t r1, int64_t D) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * D;
    const T* dyr = dy + r * D;
    T* dxr = dx + r * D;
    const T ri = rinv[r];
    T dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t i = 0; i < D; ++i) dot += dyr[i] * w[i] * xr[i];
    const T k = ri * ri * ri * dot / T(D);
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) {
      dxr[i] = ri * w[i] * dyr[i] - k * xr[i];
      dwPart[i] += dyr[i] * xr[i] * ri;
    }
  }
}
MPO_CLONES void rmsFwd(const float* x, const float* w, float* y, float* rinv, int64_t r0, int64_t r1, int64_t D,
                        float eps) {
  rmsFwdImpl(x, w, y, rinv, r0, r1, D, eps);
}
MPO_CLONES void rmsBwd(const float* x, const float* w, const float* rinv, const float* dy, float* dx, float* dwPart,
                        int64_t r0, int64_t r1, int64_t D) {
  rmsBwdImpl(x, w, rinv, dy, dx, dwPart, r0, r1, D);
}
void rmsFwd(const double* x, const double* w, double* y, double* rinv, int64_t r0, int64_t r1, int64_t D, double eps) {
  rmsFwdImpl(x, w, y, rinv, r0, r1, D, eps);
}
void rmsBwd(const double* x, const double* w, const double* rinv, const double* dy, double* dx, double* dwPart,
            int64_t r0, int64_t r1, int64_t D) {
  rmsBwdImpl(x, w, rinv, dy, dx, dwPart, r0, r1, D);
}

struct RmsNormFn : public Function<RmsNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& xIn, const at::Tensor& w, double eps) {
    at::Tensor x = xIn.contiguous();
    const int64_t D = x.size(-1), R = x.numel() / D;
    at::Tensor y = at::empty_like(x), rinv = at::empty({R}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rmsNorm", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* wp = w.data_ptr<scalar_t>();
      scalar_t* yp = y.data_ptr<scalar_t>();
      scalar_t* rp = rinv.data_ptr<scalar_t>();
      at::parallel_for(0, R, kRowBlock, [&](int64_t r0, int64_t r1) {
        rmsFwd(xp, wp, yp, rp, r0, r1, D, static_cast<scalar_t>(eps));
      });
    });
    ctx->save_for_backward({x, w, rinv});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &rinv = saved[2];
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    at::Tensor dy = grads[0].contiguous();
    const int64_t D = x.size(-1), R = x.numel() / D, nb = (R + kRowBlock - 1) / kRowBlock;
    at::Tensor dx = at::empty_like(x), part = at::zeros({nb, D}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rmsNormBackward", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* wp = w.data_ptr<scalar_t>();
      const scalar_t* rp = rinv.data_ptr<scalar_t>();
      const scalar_t* dyp = dy.data_ptr<scalar_t>();
      scalar_t* dxp = dx.data_ptr<scalar_t>();
      scalar_t* pp = part.data_ptr<scalar_t>();
      at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r0 = b * kRowBlock, r1 = std::min(R, r0 + kRowBlock);
          rmsBwd(xp, wp, rp, dyp, dxp, pp + b * D, r0, r1, D);
        }
      });
    });
    at::Tensor dw = part.sum(0);
    return {dx, dw, at::Tensor()};
  }
};

// ---------------------------------------------------------------- SwiGLU / GeGLU
// Activation and its derivative, per element (see kernels.h).
struct Silu {
  template <typename T>
  static inline __attribute__((always_inline)) T f(T g) {
    return g / (T(1) + fastExp(-g));
  }
  template <typename T>  // f(g) and f'(g) from one exp
  static inline __attribute__((always_inline)) void fdf(T g, T& f, T& df) {
    const T s = T(1) / (T(1) + fastExp(-g));
    f = g * s;
    df = s * (T(1) + g * (T(1) - s));
  }
};
struct GeluTanh {
  static constexpr double kC = 0.7978845608028654;  // sqrt(2/pi)
  static constexpr double kA = 0.044715;
  template <typename T>
  static inline __attribute__((always_inline)) T f(T g) {
    return T(0.5) * g * (T(1) + fastTanh(T(kC) * (g + T(kA) * g * g * g)));
  }
  template <typename T>
  static inline __attribute__((always_inline)) void fdf(T g, T& f, T& df) {
    const T t = fastTanh(T(kC) * (g + T(kA) * g * g * g));
    f = T(0.5) * g * (T(1) + t);
    df = T(0.5) * (T(1) + t) + T(0.5) * g * (T(1) - t * t) * T(kC) * (T(1) + T(3 * kA) * g * g);
  }
};

template <typename Act, typename T>
inline __attribute__((always_inline)) void gluFwdImpl(const T* gu, T* h, int64_t r0, int64_t r1, int64_t I) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = gu + r * 2 * I;
    const T* u = g + I;
    T* hr = h + r * I;
#pragma omp simd
    for (int64_t i = 0; i < I; ++i) hr[i] = Act::f(g[i]) * u[i];
  }
}
template <typename Act, typename T>
inline __attribute__((always_inline)) void gluBwdImpl(const T* gu, const T* dh, T* dgu, int64_t r0, int64_t r1,
                                                       int64_t I) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = gu + r * 2 * I;
    const T* u = g + I;
    const T* d = dh + r * I;
    T* dg = dgu + r * 2 * I;
    T* du = dg + I;
#pragma omp simd
    for (int64_t i = 0; i < I; ++i) {
      T f, df;
      Act::fdf(g[i], f, df);
      dg[i] = d[i] * u[i] * df;
      du[i] = d[i] * f;
    }
  }
}
MPO_CLONES void gluFwd(bool gelu, const float* gu, float* h, int64_t r0, int64_t r1, int64_t I) {
  if (gelu)
    gluFwdImpl<GeluTanh>(gu, h, r0, r1, I);
  else
    gluFwdImpl<Silu>(gu, h, r0, r1, I);
}
MPO_CLONES void gluBwd(bool gelu, const float* gu, const float* dh, float* dgu, int64_t r0, int64_t r1, int64_t I) {
  if (gelu)
    gluBwdImpl<GeluTanh>(gu, dh, dgu, r0, r1, I);
  else
    gluBwdImpl<Silu>(gu, dh, dgu, r0, r1, I);
}
void gluFwd(bool gelu, const double* gu, double* h, int64_t r0, int64_t r1, int64_t I) {
  if (gelu)
    gluFwdImpl<GeluTanh>(gu, h, r0, r1, I);
  else
    gluFwdImpl<Silu>(gu, h, r0, r1, I);
}
void gluBwd(bool gelu, const double* gu, const double* dh, double* dgu, int64_t r0, int64_t r1, int64_t I) {
  if (gelu)
    gluBwdImpl<GeluTanh>(gu, dh, dgu, r0, r1, I);
  else
    gluBwdImpl<Silu>(gu, dh, dgu, r0, r1, I);
}

struct GluFn : public Function<GluFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& guIn, int64_t I, bool gelu) {
    at::Tensor gu = guIn.contiguous();
    const int64_t R = gu.numel() / (2 * I);
    auto shape = gu.sizes().vec();
    shape.back() = I;
    at::Tensor h = at::empty(shape, gu.options());
    AT_DISPATCH_FLOATING_TYPES(gu.scalar_type(), "gatedAct", [&] {
      const scalar_t* gp = gu.data_ptr<scalar_t>();
      scalar_t* hp = h.data_ptr<scalar_t>();
      at::parallel_for(0, R, 16, [&](int64_t r0, int64_t r1) { gluFwd(gelu, gp, hp, r0, r1, I); });
    });
    ctx->save_for_backward({gu});
    ctx->saved_data["I"] = I;
    ctx->saved_data["gelu"] = gelu;
    return h;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor gu = ctx->get_saved_variables()[0];
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const int64_t I = ctx->saved_data["I"].toInt(), R = gu.numel() / (2 * I);
    const bool gelu = ctx->saved_data["gelu"].toBool();
    at::Tensor dh = grads[0].contiguous(), dgu = at::empty_like(gu);
    AT_DISPATCH_FLOATING_TYPES(gu.scalar_type(), "gatedActBackward", [&] {
      const scalar_t* gp = gu.data_ptr<scalar_t>();
      const scalar_t* dp = dh.data_ptr<scalar_t>();
      scalar_t* op = dgu.data_ptr<scalar_t>();
      at::parallel_for(0, R, 16, [&](int64_t r0, int64_t r1) { gluBwd(gelu, gp, dp, op, r0, r1, I); });
    });
    return {dgu, at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------- linear
// y = x W^T (+ b) (+ res). With a direct GEMM (blas.h) the products are single calls on the
// row-major buffers: y = x W^T, dx = dy W, dW = dy^T x. Otherwise ATen's mm with the model's
// cached W^T (x W^T is OpenBLAS's slowest variant, ~25% slower here).
// Mixed precision (wT is W in bf16, see Model::actDtype): y = bf16(x) bf16(W)^T in fp32; backward
// dx = bf16(dy) bf16(W), dW = bf16(dy)^T bf16(x), both accumulated in fp32. Saves bf16(x) only.
at::Tensor toBf16(const at::Tensor& t) { return t.to(at::kBFloat16).contiguous(); }
const uint16_t* bits(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()); }

struct LinearFn : public Function<LinearFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& wT,
                            const at::Tensor& bIn, const at::Tensor& resIn) {
    const at::Tensor b = bIn.numel() ? bIn : at::Tensor(), res = resIn.numel() ? resIn : at::Tensor();
    const int64_t K = w.size(1), N = w.size(0);
    at::Tensor x2 = x.reshape({-1, K}).contiguous();
    const int64_t M = x2.size(0);
    const bool bf16 = wT.numel() && wT.scalar_type() == at::kBFloat16;
    at::Tensor y;
    if (bf16 || directGemm(x.scalar_type())) {
      if (res.defined())
        y = res.reshape({M, N}).clone(at::MemoryFormat::Contiguous);
      else if (b.defined())  // a fresh buffer: for M == 1, expand().contiguous() would alias b itself
        y = at::empty({M, N}, x.options()).copy_(b.unsqueeze(0).expand({M, N}));
      else
        y = at::empty({M, N}, x.options());
      if (res.defined() && b.defined()) y.add_(b);
      const bool accumulate = res.defined() || b.defined();
      if (bf16) {
        at::Tensor xb = toBf16(x2);
        gemmBf16(false, true, M, N, K, 1.0f, bits(xb), K, bits(wT), K, accumulate ? 1.0f : 0.0f,
                 y.data_ptr<float>(), N);
        x2 = xb;  // what backward needs
      } else {
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linear", [&] {
          gemm(false, true, M, N, K, scalar_t(1), x2.data_ptr<scalar_t>(), K, w.data_ptr<scalar_t>(), K,
               scalar_t(accumulate ? 1 : 0), y.data_ptr<scalar_t>(), N);
        });
      }
    } else {
      if (res.defined())
        y = at::addmm(res.reshape({-1, N}), x2, wT);
      else if (b.defined())
        y = at::addmm(b, x2, wT);
      else
        y = at::mm(x2, wT);
      if (res.defined() && b.defined()) y.add_(b);
    }
    ctx->save_for_backward({x2, bf16 ? wT : w});
    ctx->saved_data["bias"] = b.defined();
    ctx->saved_data["res"] = res.defined();
    auto shape = x.sizes().vec();
    shape.back() = N;
    return y.view(shape);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x2 = saved[0], &w = saved[1];
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    const at::Tensor& dy = grads[0];
    const int64_t N = w.size(0), K = w.size(1), M = x2.size(0);
    at::Tensor dy2 = dy.reshape({M, N}).contiguous();
    auto xshape = dy.sizes().vec();
    xshape.back() = K;
    at::Tensor dx, dw;
    const bool needW = ctx->needs_input_grad(1);  // [LoRA] a frozen base weight needs no dW = dy^T x
    if (x2.scalar_type() == at::kBFloat16) {
      const auto f32 = dy2.options();
      dx = at::empty({M, K}, f32);
      at::Tensor gb = toBf16(dy2);
      gemmBf16(false, false, M, K, N, 1.0f, bits(gb), N, bits(w), K, 0.0f, dx.data_ptr<float>(), K);  // dy W
      if (needW) {
        dw = at::empty({N, K}, f32);
        gemmBf16(true, false, N, K, M, 1.0f, bits(gb), N, bits(x2), K, 0.0f, dw.data_ptr<float>(), K);  // dy^T x
      }
    } else if (directGemm(x2.scalar_type())) {
      dx = at::empty({M, K}, x2.options());
      if (needW) dw = at::empty({N, K}, x2.options());
      AT_DISPATCH_FLOATING_TYPES(x2.scalar_type(), "linearBackward", [&] {
        const scalar_t *g = dy2.data_ptr<scalar_t>(), *wp = w.data_ptr<scalar_t>(), *xp = x2.data_ptr<scalar_t>();
        gemm(false, false, M, K, N, scalar_t(1), g, N, wp, K, scalar_t(0), dx.data_ptr<scalar_t>(), K);  // dy W
        if (needW)
          gemm(true, false, N, K, M, scalar_t(1), g, N, xp, K, scalar_t(0), dw.data_ptr<scalar_t>(), K);  // dy^T x
      });
    } else {
      dx = at::mm(dy2, w);
      if (needW) dw = at::mm(dy2.t(), x2);
    }
    at::Tensor db = ctx->saved_data["bias"].toBool() ? dy2.sum(0) : at::Tensor();
    at::Tensor dres = ctx->saved_data["res"].toBool() ? dy : at::Tensor();
    return {dx.view(xshape), dw, at::Tensor(), db, dres};
  }
};

// ---------------------------------------------------------------- RoPE + split
// out = rope(x) * scale for one head vector; cos/sin rows of length hd.
template <typename T>
inline __attribute__((always_inline)) void ropeRow(const T* x, const T* c, const T* s, T* o, int64_t hd, T scale) {
  const int64_t h = hd / 2;
#pragma omp simd
  for (int64_t i = 0; i < h; ++i) o[i] = (x[i] * c[i] - x[i + h] * s[i]) * scale;
#pragma omp simd
  for (int64_t i = h; i < hd; ++i) o[i] = (x[i] * c[i] + x[i - h] * s[i]) * scale;
}
// Transpose of ropeRow: dx from dout.
template <typename T>
inline __attribute__((always_inline)) void ropeRowBack(const T* d, const T* c, const T* s, T* dx, int64_t hd, T scale) {
  const int64_t h = hd / 2;
#pragma omp simd
  for (int64_t i = 0; i < h; ++i) dx[i] = (d[i] * c[i] + d[i + h] * s[i + h]) * scale;
#pragma omp simd
  for (int64_t i = h; i < hd; ++i) dx[i] = (d[i] * c[i] - d[i - h] * s[i - h]) * scale;
}

// qkv [B,T,C] -> q [B,Hq,T,hd], k, v; rows (b,t) in [r0, r1).
template <typename T>
inline __attribute__((always_inline)) void qkvRopeFwdImpl(const T* qkv, const T* cs, const T* sn, T* q, T* k, T* v,
                                                           int64_t r0, int64_t r1, int64_t Tn, int64_t Hq,
                                                           int64_t Hkv, int64_t hd, T qScale) {
  const int64_t C = (Hq + 2 * Hkv) * hd;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / Tn, t = r % Tn;
    const T* row = qkv + r * C;
    const T* c = cs + t * hd;
    const T* s = sn + t * hd;
    for (int64_t h = 0; h < Hq; ++h) ropeRow(row + h * hd, c, s, q + ((b * Hq + h) * Tn + t) * hd, hd, qScale);
    for (int64_t h = 0; h < Hkv; ++h) {
      ropeRow(row + (Hq + h) * hd, c, s, k + ((b * Hkv + h) * Tn + t) * hd, hd, T(1));
      const T* src = row + (Hq + Hkv + h) * hd;
      T* dst = v + ((b * Hkv + h) * Tn + t) * hd;
#pragma omp simd
      for (int64_t i = 0; i < hd; ++i) dst[i] = src[i];
    }
  }
}
template <typename T>
inline __attribute__((always_inline)) void qkvRopeBwdImpl(const T* dq, const T* dk, const T* dv, const T* cs,
                                                           const T* sn, T* dqkv, int64_t r0, int64_t r1, int64_t Tn,
                                                           int64_t Hq, int64_t Hkv, int64_t hd, T qScale) {
  const int64_t C = (Hq + 2 * Hkv) * hd;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / Tn, t = r % Tn;
    T* row = dqkv + r * C;
    const T* c = cs + t * hd;
    const T* s = sn + t * hd;
    for (int64_t h = 0; h < Hq; ++h) ropeRowBack(dq + ((b * Hq + h) * Tn + t) * hd, c, s, row + h * hd, hd, qScale);
    for (int64_t h = 0; h < Hkv; ++h) {
      ropeRowBack(dk + ((b * Hkv + h) * Tn + t) * hd, c, s, row + (Hq + h) * hd, hd, T(1));
      const T* src = dv + ((b * Hkv + h) * Tn + t) * hd;
      T* dst = row + (Hq + Hkv + h) * hd;
#pragma omp simd
      for (int64_t i = 0; i < hd; ++i) dst[i] = src[i];
    }
  }
}
MPO_CLONES void qkvRopeFwd(const float* qkv, const float* cs, const float* sn, float* q, float* k, float* v,
                            int64_t r0, int64_t r1, int64_t Tn, int64_t Hq, int64_t Hkv, int64_t hd, float qScale) {
  qkvRopeFwdImpl(qkv, cs, sn, q, k, v, r0, r1, Tn, Hq, Hkv, hd, qScale);
}
MPO_CLONES void qkvRopeBwd(const float* dq, const float* dk, const float* dv, const float* cs, const float* sn,
                            float* dqkv, int64_t r0, int64_t r1, int64_t Tn, int64_t Hq, int64_t Hkv, int64_t hd,
                            float qScale) {
  qkvRopeBwdImpl(dq, dk, dv, cs, sn, dqkv, r0, r1, Tn, Hq, Hkv, hd, qScale);
}
void qkvRopeFwd(const double* qkv, const double* cs, const double* sn, double* q, double* k, double* v, int64_t r0,
                int64_t r1, int64_t Tn, int64_t Hq, int64_t Hkv, int64_t hd, double qScale) {
  qkvRopeFwdImpl(qkv, cs, sn, q, k, v, r0, r1, Tn, Hq, Hkv, hd, qScale);
}
void qkvRopeBwd(const double* dq, const double* dk, const double* dv, const double* cs, const double* sn, double* dqkv,
                int64_t r0, int64_t r1, int64_t Tn, int64_t Hq, int64_t Hkv, int64_t hd, double qScale) {
  qkvRopeBwdImpl(dq, dk, dv, cs, sn, dqkv, r0, r1, Tn, Hq, Hkv, hd, qScale);
}

struct QkvRopeFn : public Function<QkvRopeFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& qkvIn, const at::Tensor& cos,
                               const at::Tensor& sin, int64_t Hq, int64_t Hkv, int64_t hd, double qScale) {
    at::Tensor qkv = qkvIn.contiguous();
    const int64_t B = qkv.size(0), Tn = qkv.size(1);
    at::Tensor q = at::empty({B, Hq, Tn, hd}, qkv.options());
    at::Tensor k = at::empty({B, Hkv, Tn, hd}, qkv.options());
    at::Tensor v = at::empty({B, Hkv, Tn, hd}, qkv.options());
    at::Tensor c = cos.narrow(0, 0, Tn).contiguous(), s = sin.narrow(0, 0, Tn).contiguous();
    AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "qkvRope", [&] {
      const scalar_t *xp = qkv.data_ptr<scalar_t>(), *cp = c.data_ptr<scalar_t>(), *sp = s.data_ptr<scalar_t>();
      scalar_t *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>();
      at::parallel_for(0, B * Tn, 16, [&](int64_t r0, int64_t r1) {
        qkvRopeFwd(xp, cp, sp, qp, kp, vp, r0, r1, Tn, Hq, Hkv, hd, static_cast<scalar_t>(qScale));
      });
    });
    ctx->save_for_backward({c, s});
    ctx->saved_data["B"] = B;
    ctx->saved_data["Hq"] = Hq;
    ctx->saved_data["Hkv"] = Hkv;
    ctx->saved_data["hd"] = hd;
    ctx->saved_data["scale"] = qScale;
    return {q, k, v};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &c = saved[0], &s = saved[1];
    const int64_t B = ctx->saved_data["B"].toInt(), Hq = ctx->saved_data["Hq"].toInt();
    const int64_t Hkv = ctx->saved_data["Hkv"].toInt(), hd = ctx->saved_data["hd"].toInt();
    const double qScale = ctx->saved_data["scale"].toDouble();
    const int64_t Tn = c.size(0);
    auto opts = c.options();
    auto orZeros = [&](const at::Tensor& g, int64_t H) {
      return g.defined() ? g.contiguous() : at::zeros({B, H, Tn, hd}, opts);
    };
    at::Tensor dq = orZeros(grads[0], Hq), dk = orZeros(grads[1], Hkv), dv = orZeros(grads[2], Hkv);
    at::Tensor dqkv = at::empty({B, Tn, (Hq + 2 * Hkv) * hd}, opts);
    AT_DISPATCH_FLOATING_TYPES(dqkv.scalar_type(), "qkvRopeBackward", [&] {
      const scalar_t *dqp = dq.data_ptr<scalar_t>(), *dkp = dk.data_ptr<scalar_t>(), *dvp = dv.data_ptr<scalar_t>();
      const scalar_t *cp = c.data_ptr<scalar_t>(), *sp = s.data_ptr<scalar_t>();
      scalar_t* op = dqkv.data_ptr<scalar_t>();
      at::parallel_for(0, B * Tn, 16, [&](int64_t r0, int64_t r1) {
        qkvRopeBwd(dqp, dkp, dvp, cp, sp, op, r0, r1, Tn, Hq, Hkv, hd, static_cast<scalar_t>(qScale));
      });
    });
    return {dqkv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

// ---------------------------------------------------------------- public entry points

at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& w, double eps, bool plusOne) {
  if (fusedCpu(x) && w.scalar_type() == x.scalar_type()) return RmsNormFn::apply(x, plusOne ? w + 1.0 : w, eps);
  const bool upcast = x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf;
  at::Tensor xf = upcast ? x.to(at::kFloat) : x;
  at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
  if (plusOne) {  // Gemma: (x * (1 + w)) in fp32, then cast
    at::Tensor out = y * (w.to(xf.scalar_type()) + 1.0);
    return upcast ? out.to(x.scalar_type()) : out;
  }
  return w * (upcast ? y.to(x.scalar_type()) : y);
}

at::Tensor gatedAct(const at::Tensor& gu, int64_t I, bool geluTanh) {
  if (fusedCpu(gu)) return GluFn::apply(gu, I, geluTanh);
  at::Tensor g = gu.narrow(-1, 0, I);
  return (geluTanh ? at::gelu(g, "tanh") : at::silu(g)) * gu.narrow(-1, I, I);
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& wT, const at::Tensor& b,
                  const at::Tensor& residual) {
  if (fusedCpu(x) && w.is_contiguous() && (wT.defined() || directGemm(x.scalar_type()))) {
    // libtorch 1.13's Function::apply cannot take undefined tensors: absent ones become 0-element
    // placeholders (LinearFn tests numel() == 0).
    auto orEmpty = [&](const at::Tensor& t) { return t.defined() ? t : at::empty({0}, x.options()); };
    return LinearFn::apply(x, w, orEmpty(wT), orEmpty(b), orEmpty(residual));
  }
  at::Tensor y = at::linear(x, w, b);
  return residual.defined() ? residual + y : y;
}

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rot = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rot * sin;
}

std::array<at::Tensor, 3> qkvRope(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, int64_t Hq,
                                  int64_t Hkv, int64_t hd, double qScale) {
  auto out = QkvRopeFn::apply(qkv, cos, sin, Hq, Hkv, hd, qScale);
  return {out[0], out[1], out[2]};
}

}  // namespace mpo
