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

#include <cstdlib>
#include <limits>
#include <vector>

#include "blas.h"
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

// In place: dP^T -> dS^T on the causal region; masked entries become exactly 0 (the blocked GEMMs
// of the backward read whole diagonal blocks, and masked entries there must not contribute).
template <typename T>
inline __attribute__((always_inline)) void softmaxColsBackImpl(const T* P, T* dP, int64_t Tn, int64_t G, T* c) {
  const int64_t GT = G * Tn;
  for (int64_t i = 0; i < GT; ++i) c[i] = 0;
  for (int64_t j = 0; j < Tn; ++j) {
    const T* p = P + j * GT;
    const T* d = dP + j * GT;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * Tn + j, i1 = (g + 1) * Tn;
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) c[i] += p[i] * d[i];
    }
  }
  for (int64_t j = 0; j < Tn; ++j) {
    const T* p = P + j * GT;
    T* d = dP + j * GT;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t base = g * Tn, i0 = base + j, i1 = base + Tn;
      for (int64_t i = base; i < i0; ++i) d[i] = 0;
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) d[i] = p[i] * (d[i] - c[i]);
    }
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

// ---------------------------------------------------------------- blocked path (direct BLAS)
// With a direct GEMM (blas.h), each problem is done on its own with small GEMMs over causal blocks of kBlock keys/queries: blocks above the diagonal are
// never computed (10/16 of the attention FLOPs at T = 256), a problem's scores stay in L2 between
// the GEMMs and the softmax, and O / dO are read and written in the [B, T, Hq*hd] layout of the
// o_proj input directly (no transposing copies).
constexpr int64_t kBlock = 64;

// Shapes of one call: N = B*Hkv problems of G query groups over T positions, head size hd.
struct Dims {
  int64_t B, Hq, Hkv, G, Tn, hd, N, GT, ldo;  // ldo = Hq*hd, row stride of O / dO
};

// Forward of problem n: PT [T, GT] (uninitialised on entry), O rows written into `out`.
template <typename T>
void blockedForward(const Dims& d, int64_t n, const T* q, const T* k, const T* v, T* PT, T* out, T* m, T* s) {
  const int64_t b = n / d.Hkv, kvh = n % d.Hkv, Tn = d.Tn, hd = d.hd, GT = d.GT;
  const T* Q = q + n * GT * hd;  // [GT, hd]: group g's queries are rows g*T..
  const T* K = k + n * Tn * hd;
  const T* V = v + n * Tn * hd;
  for (int64_t g = 0; g < d.G; ++g)
    for (int64_t k0 = 0; k0 < Tn; k0 += kBlock) {  // S^T[k0.., q >= k0] = K[k0..] Q[q]^T
      const int64_t kb = std::min(kBlock, Tn - k0);
      gemm(false, true, kb, Tn - k0, hd, T(1), K + k0 * hd, hd, Q + (g * Tn + k0) * hd, hd, T(0),
           PT + k0 * GT + g * Tn + k0, GT);
    }
  softmaxCols1(PT, Tn, d.G, m, s);
  for (int64_t g = 0; g < d.G; ++g) {
    T* O = out + b * Tn * d.ldo + (kvh * d.G + g) * hd;  // row t of head (kvh*G+g)
    for (int64_t q0 = 0; q0 < Tn; q0 += kBlock) {       // O[q0..] = P[q0.., j < q0+qb] V[j]
      const int64_t qb = std::min(kBlock, Tn - q0), ke = q0 + qb;
      gemm(true, false, qb, hd, ke, T(1), PT + g * Tn + q0, GT, V, hd, T(0), O + q0 * d.ldo, d.ldo);
    }
  }
}

// Backward of problem n. dPT: scratch [T, GT]. dq [GT, hd], dk/dv [T, hd] of this problem.
template <typename T>
void blockedBackward(const Dims& d, int64_t n, const T* q, const T* k, const T* v, const T* PT, const T* dout, T* dPT,
                     T* c, T* dq, T* dk, T* dv) {
  const int64_t b = n / d.Hkv, kvh = n % d.Hkv, Tn = d.Tn, hd = d.hd, GT = d.GT;
  const T* Q = q + n * GT * hd;
  const T* K = k + n * Tn * hd;
  const T* V = v + n * Tn * hd;
  T* dQ = dq + n * GT * hd;
  T* dK = dk + n * Tn * hd;
  T* dV = dv + n * Tn * hd;
  for (int64_t g = 0; g < d.G; ++g) {
    const T* dO = dout + b * Tn * d.ldo + (kvh * d.G + g) * hd;
    for (int64_t k0 = 0; k0 < Tn; k0 += kBlock) {
      const int64_t kb = std::min(kBlock, Tn - k0), nq = Tn - k0;
      // dV[k0..] (+)= P^T[k0.., q >= k0] dO[q]
      gemm(false, false, kb, hd, nq, T(1), PT + k0 * GT + g * Tn + k0, GT, dO + k0 * d.ldo, d.ldo, g ? T(1) : T(0),
           dV + k0 * hd, hd);
      // dP^T[k0.., q >= k0] = V[k0..] dO[q]^T
      gemm(false, true, kb, nq, hd, T(1), V + k0 * hd, hd, dO + k0 * d.ldo, d.ldo, T(0), dPT + k0 * GT + g * Tn + k0,
           GT);
    }
  }
  softmaxColsBack1(PT, dPT, Tn, d.G, c);  // dPT is now dS^T (masked entries 0)
  for (int64_t g = 0; g < d.G; ++g) {
    for (int64_t q0 = 0; q0 < Tn; q0 += kBlock) {  // dQ[q0..] = dS[q0.., j < q0+qb] K[j]
      const int64_t qb = std::min(kBlock, Tn - q0), ke = q0 + qb;
      gemm(true, false, qb, hd, ke, T(1), dPT + g * Tn + q0, GT, K, hd, T(0), dQ + (g * Tn + q0) * hd, hd);
    }
    for (int64_t k0 = 0; k0 < Tn; k0 += kBlock) {  // dK[k0..] (+)= dS^T[k0.., q >= k0] Q[q]
      const int64_t kb = std::min(kBlock, Tn - k0), nq = Tn - k0;
      gemm(false, false, kb, hd, nq, T(1), dPT + k0 * GT + g * Tn + k0, GT, Q + (g * Tn + k0) * hd, hd,
           g ? T(1) : T(0), dK + k0 * hd, hd);
    }
  }
}

}  // namespace

bool blockedAttentionAvailable() { return haveGemm(static_cast<const float*>(nullptr)); }

namespace {

bool blockedAvailable(at::ScalarType t) {
  if (const char* off = std::getenv("MPO_ENGINE_NO_BLOCKED_ATTENTION"); off && *off && *off != '0') return false;
  return t == at::kFloat ? haveGemm(static_cast<const float*>(nullptr))
                         : (t == at::kDouble ? haveGemm(static_cast<const double*>(nullptr)) : false);
}

struct CausalAttentionFn : public Function<CausalAttentionFn> {
  // q [B,Hq,T,hd] (scaled), k/v [B,Hkv,T,hd], all contiguous -> [B,T,Hq*hd]
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    const int64_t B = q.size(0), Hq = q.size(1), Tn = q.size(2), hd = q.size(3), Hkv = k.size(1);
    const int64_t G = Hq / Hkv, N = B * Hkv;
    if (blockedAvailable(q.scalar_type())) {
      const Dims d{B, Hq, Hkv, G, Tn, hd, N, G * Tn, Hq * hd};
      at::Tensor PT = at::empty({N, Tn, G * Tn}, q.options());
      at::Tensor out = at::empty({B, Tn, Hq * hd}, q.options());
      AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "causalAttention", [&] {
        const scalar_t *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>();
        scalar_t *pp = PT.data_ptr<scalar_t>(), *op = out.data_ptr<scalar_t>();
        at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
          std::vector<scalar_t> m(d.GT), s(d.GT);
          for (int64_t n = n0; n < n1; ++n) blockedForward(d, n, qp, kp, vp, pp + n * Tn * d.GT, op, m.data(), s.data());
        });
      });
      ctx->save_for_backward({q, k, v, PT});
      return out;
    }
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
    if (blockedAvailable(q.scalar_type())) {
      const Dims d{B, Hq, Hkv, G, Tn, hd, N, G * Tn, Hq * hd};
      at::Tensor dout = grads[0].contiguous();
      at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
      AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "causalAttentionBackward", [&] {
        const scalar_t *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>();
        const scalar_t *pp = PT.data_ptr<scalar_t>(), *gp = dout.data_ptr<scalar_t>();
        scalar_t *dqp = dq.data_ptr<scalar_t>(), *dkp = dk.data_ptr<scalar_t>(), *dvp = dv.data_ptr<scalar_t>();
        at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
          std::vector<scalar_t> scratch(Tn * d.GT), c(d.GT);
          for (int64_t n = n0; n < n1; ++n)
            blockedBackward(d, n, qp, kp, vp, pp + n * Tn * d.GT, gp, scratch.data(), c.data(), dqp, dkp, dvp);
        });
      });
      return {dq, dk, dv};
    }
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
