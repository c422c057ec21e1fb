// Small building blocks of the decoder with their own (fused) autograd where it pays off.
#pragma once
#include <ATen/ATen.h>

namespace mpo {

// transformers' LlamaRMSNorm: normalise in fp32, cast back, multiply by the weight.
at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& w, double eps);

// Rotate-half RoPE. x [B,T,H,hd]; cos/sin broadcastable [.., T, 1, hd].
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// SwiGLU on the fused [gate | up] projection: silu(gu[..., :I]) * gu[..., I:].
at::Tensor swiglu(const at::Tensor& gu, int64_t I);

}  // namespace mpo
