// Causal self-attention for the training path (CPU, float32/float64), forward and backward.
//
// Layout: the N = B * kvHeads independent problems each have G = heads/kvHeads query heads that
// share one K/V head; their queries are stacked, so a problem has G*T query rows. Scores are kept
// TRANSPOSED, ST[key j][query i], because on this BLAS K Q^T runs ~2x faster than Q K^T, and
// because the softmax then walks contiguous rows of queries (vectorised across queries):
//   ST = K Q^T          [T, G*T]   (q pre-scaled by 1/sqrt(hd) in qkvRope)
//   P^T = causal-softmax over j of ST, for key j <= query position t (masked entries exactly 0)
//   O  = (P^T)^T V      [G*T, hd]
// backward:
//   dV = P^T dO,  dP^T = V dO^T,  dS^T = P^T * (dP^T - colsum(P^T * dP^T)),
//   dQ = (dS^T)^T K,  dK = dS^T Q
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <limits>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace mpo {

using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

namespace {

// In place on one problem's ST [T][G*T]: column i = (g, t) keeps rows j <= t.
template <typename T>
inline __attribute__((always_inline)) void softmaxColsImpl(T* P, int64_t Tn, int64_t G, T* m, T* s) {
  const int64_t GT = G * Tn;
  for (int64_t i = 0; i < GT; ++i) {
    m[i] = -std::numeric_limits<T>::max();
    s[i] = 0;
  }
  for (int64_t j = 0; j < Tn; ++j) {
    const T* row = P + j * GT;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * Tn + j, i1 = (g + 1) * Tn;
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) m[i] = row[i] > m[i] ? row[i] : m[i];
    }
  }
  for (int64_t j = 0; j < Tn; ++j) {
    T* row = P + j * GT;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t base = g * Tn, i0 = base + j, i1 = base + Tn;
      for (int64_t i = base; i < i0; ++i) row[i] = 0;  // key j after query t: masked
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) {
        const T e = fastExp(row[i] - m[i]);
        row[i] = e;
        s[i] += e;
      }
    }
  }
  for (int64_t i = 0; i < GT; ++i) s[i] = T(1) / s[i];
  for (int64_t j = 0; j < Tn; ++j) {
    T* row = P + j * GT;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * Tn + j, i1 = (g + 1) * Tn;
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) row[i] *= s[i];
    }
  }
}

// In place: dP^T -> dS^T.
template <typename T>
inline __attribute__((always_inline)) void softmaxColsBackImpl(const T* P, T* dP, int64_t Tn, int64_t G, T* c) {
  const int64_t GT = G * Tn;
  for (int64_t i = 0; i < GT; ++i) c[i] = 0;
  for (int64_t j = 0; j < Tn; ++j) {
    const T* p = P + j * GT;
    const T* d = dP + j * GT;
#pragma omp simd
    for (int64_t i = 0; i < GT; ++i) c[i] += p[i] * d[i];
  }
  for (int64_t j = 0; j < Tn; ++j) {
    const T* p = P + j * GT;
    T* d = dP + j * GT;
#pragma omp simd
    for (int64_t i = 0; i < GT; ++i) d[i] = p[i] * (d[i] - c[i]);
  }
}

MPO_CLONES void softmaxCols1(float* P, int64_t Tn, int64_t G, float* m, float* s) { softmaxColsImpl(P, Tn, G, m, s); }
MPO_CLONES void softmaxColsBack1(const float* P, float* dP, int64_t Tn, int64_t G, float* c) {
  softmaxColsBackImpl(P, dP, Tn, G, c);
}
void softmaxCols1(double* P, int64_t Tn, int64_t G, double* m, double* s) { softmaxColsImpl(P, Tn, G, m, s); }
void softmaxColsBack1(const double* P, double* dP, int64_t Tn, int64_t G, double* c) {
  softmaxColsBackImpl(P, dP, Tn, G, c);
}

// Apply the softmax (or its backward) to each of the N problems in parallel.
void softmaxCols(at::Tensor& PT, int64_t Tn, int64_t G) {
  const int64_t N = PT.size(0), GT = G * Tn;
  AT_DISPATCH_FLOATING_TYPES(PT.scalar_type(), "causalSoftmax", [&] {
    scalar_t* p = PT.data_ptr<scalar_t>();
    at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
      std::vector<scalar_t> m(GT), s(GT);
      for (int64_t n = n0; n < n1; ++n) {
        softmaxCols1(p + n * Tn * GT, Tn, G, m.data(), s.data());
      }
    });
  });
}
void softmaxColsBack(const at::Tensor& PT, at::Tensor& dPT, int64_t Tn, int64_t G) {
  const int64_t N = PT.size(0), GT = G * Tn;
  AT_DISPATCH_FLOATING_TYPES(PT.scalar_type(), "causalSoftmaxBackward", [&] {
    const scalar_t* p = PT.data_ptr<scalar_t>();
    scalar_t* d = dPT.data_ptr<scalar_t>();
    at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
      std::vector<scalar_t> c(GT);
      for (int64_t n = n0; n < n1; ++n) {
        softmaxColsBack1(p + n * Tn * GT, d + n * Tn * GT, Tn, G, c.data());
      }
    });
  });
}

struct CausalAttentionFn : public Function<CausalAttentionFn> {
  // q [B,Hq,T,hd] (scaled), k/v [B,Hkv,T,hd], all contiguous -> [B,T,Hq*hd]
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    const int64_t B = q.size(0), Hq = q.size(1), Tn = q.size(2), hd = q.size(3), Hkv = k.size(1);
    const int64_t G = Hq / Hkv, N = B * Hkv;
    at::Tensor qg = q.view({N, G * Tn, hd}), kk = k.view({N, Tn, hd}), vv = v.view({N, Tn, hd});
    at::Tensor PT = at::bmm(kk, qg.transpose(1, 2));  // [N, T, G*T]
    softmaxCols(PT, Tn, G);
    at::Tensor O = at::bmm(PT.transpose(1, 2), vv);  // [N, G*T, hd]
    ctx->save_for_backward({q, k, v, PT});
    return O.view({B, Hq, Tn, hd}).transpose(1, 2).reshape({B, Tn, Hq * hd});
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &PT = saved[3];
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const int64_t B = q.size(0), Hq = q.size(1), Tn = q.size(2), hd = q.size(3), Hkv = k.size(1);
    const int64_t G = Hq / Hkv, N = B * Hkv;
    at::Tensor qg = q.view({N, G * Tn, hd}), kk = k.view({N, Tn, hd}), vv = v.view({N, Tn, hd});
    at::Tensor dO = grads[0].view({B, Tn, Hq, hd}).transpose(1, 2).reshape({N, G * Tn, hd});
    at::Tensor dV = at::bmm(PT, dO);                    // [N, T, hd]
    at::Tensor dPT = at::bmm(vv, dO.transpose(1, 2));   // [N, T, G*T]
    softmaxColsBack(PT, dPT, Tn, G);                    // now dS^T
    at::Tensor dQ = at::bmm(dPT.transpose(1, 2), kk);   // [N, G*T, hd]
    at::Tensor dK = at::bmm(dPT, qg);                   // [N, T, hd]
    return {dQ.view({B, Hq, Tn, hd}), dK.view({B, Hkv, Tn, hd}), dV.view({B, Hkv, Tn, hd})};
  }
};

}  // namespace

at::Tensor causalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return CausalAttentionFn::apply(q, k, v);
}

}  // namespace mpo
