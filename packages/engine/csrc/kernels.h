// Building blocks of the decoder. On the CPU in float32/float64 each one is a single hand-written
// loop with a hand-written backward (a torch::autograd::Function), instead of the 4-10 ATen ops
// (and their saved temporaries) the plain composition costs. Other dtypes and devices use the
// ATen composition, which is also the reference the fused versions are tested against.
#pragma once
#include <ATen/ATen.h>

#include <array>

namespace mpo {

// Whether the fused CPU kernels handle this tensor (CPU, float32 or float64).
bool fusedCpu(const at::Tensor& t);
// Whether linear() multiplies with direct GEMM calls for this dtype (no W^T copy needed).
bool directGemm(at::ScalarType t);

// transformers' LlamaRMSNorm: normalise in fp32, cast back, multiply by the weight.
// plusOne: Gemma2RMSNorm, which multiplies by (1 + weight) in fp32 and casts after.
at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& w, double eps, bool plusOne = false);

// Gated MLP activation on the fused [gate | up] projection: act(gu[..., :I]) * gu[..., I:] with
// act = silu (SwiGLU, Llama/Qwen2) or, with geluTanh, transformers' gelu_pytorch_tanh (GeGLU, Gemma-2):
//   gelu(g) = g/2 (1 + tanh(u)),  u = sqrt(2/pi) (g + 0.044715 g^3)
//   gelu'(g) = (1 + tanh(u))/2 + g/2 (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 g^2)
at::Tensor gatedAct(const at::Tensor& gu, int64_t I, bool geluTanh = false);

// y = x W^T (+ b) (+ residual), with the backward dx = dy W, dW = dy^T x done as direct GEMMs
// (blas.h). Without a direct GEMM, wT ([in, out] contiguous W^T kept by the model) makes ATen's
// forward product the fast NN variant; wT may be undefined when a direct GEMM exists.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& wT, const at::Tensor& b,
                  const at::Tensor& residual);

// Rotate-half RoPE on one of q/k. x [B,T,H,hd]; cos/sin broadcastable [.., T, 1, hd]. (ATen ops.)
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// The training-path attention input: split the fused qkv projection [B,T,(Hq+2Hkv)*hd], apply RoPE
// for positions 0..T-1 (cos/sin: [>=T, hd] tables) and return contiguous q*qScale [B,Hq,T,hd],
// k [B,Hkv,T,hd], v [B,Hkv,T,hd]. One pass; fusedCpu() tensors only.
std::array<at::Tensor, 3> qkvRope(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, int64_t Hq,
                                  int64_t Hkv, int64_t hd, double qScale);

// Causal self-attention over q (already scaled by 1/sqrt(hd)), k, v from qkvRope: returns
// [B,T,Hq*hd]. Scores are kept transposed ([key, query]) so the softmax runs along contiguous
// rows of queries and every GEMM is one of the fast BLAS variants. fusedCpu() tensors only.
at::Tensor causalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
// Whether causalAttention uses the blocked direct-BLAS path (else batched GEMMs over full T x T).
bool blockedAttentionAvailable();

}  // namespace mpo
