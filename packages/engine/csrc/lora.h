// LoRA adapters (Hu et al. 2021, as Hugging Face PEFT's `LoraLayer`) on the decoder's projections.
//
// For an adapted projection W [out, in]:  y = x W^T + (alpha / r) * B (A dropout(x)),
// A [r, in] ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B [out, r] = 0 (PEFT's
// default init, so training starts at the base model). Gradients, by the chain rule on
// d = s * (x' A^T) B^T with x' = dropout(x) and u = x' A^T:
//   dB = s * dy^T u,   dA = s * (dy B)^T x',   dx += s * ((dy B) A) * mask / (1 - p)
// (autograd forms them from the ATen ops below; the base W gets no gradient).
//
// enableLora() swaps the model's trainable state: the base weights move into LoraState (frozen,
// requires_grad off) and Model::flatParam / flatGrad / params / hfTensors become the adapters'
// (PEFT tensor names). So the optimizer, gradient norm, ZeRO shards, gradBuffer/paramBuffer and
// weightsHash all see only the adapters: optimizer state is 2 x 4 bytes per adapter parameter.
// With a non-fp32 compute dtype (bf16) the frozen base keeps only its compute copies: the fp32
// master of the base is freed, so the base is stored in bf16.
//
// Reference = base: adapters are off for a reference forward (scoring.cpp) and for scores
// requested with `adapters: false`, so MPO's reference needs no second copy of the weights.
//
// Dropout (training forwards only, i.e. grad mode on) is deterministic: the mask of a
// projection is drawn from a generator seeded by (seed, adapter step set by the trainer, a hash
// of the chunk's token ids, layer, projection), so a resumed run draws the same masks.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model.h"

namespace mpo {

// The adaptable projections, in Hugging Face module names. Q/K/V and Gate/Up are fused in the
// base (model.h): their adapters add to consecutive column blocks of the fused output.
enum class LoraSite : int { Q = 0, K, V, O, Gate, Up, Down };
constexpr int kLoraSites = 7;
const char* loraSiteName(LoraSite s);  // "q_proj", ... "down_proj"

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16.0, dropout = 0.0;
  std::vector<std::string> targets;  // subset of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj
  uint64_t seed = 0;                 // A's init and the dropout masks
};

struct LoraState {
  LoraOptions opt;
  double scale = 1.0;                                // alpha / rank
  std::vector<std::array<int, kLoraSites>> index;    // [layer][site] -> adapter (A at 2i, B at 2i+1 of Model::params), -1 none
  std::vector<std::array<int64_t, 2>> shape;         // adapter i: {out, in}
  // The frozen base: its flat fp32 buffer (kept when it backs the compute tensors, i.e. fp32
  // compute; undefined otherwise) and its parameters/layout as they were before the swap.
  at::Tensor baseFlat;
  std::vector<Param> baseParams;
  std::vector<HfTensor> baseTensors;
  int64_t step = 0;  // dropout stream: set by the trainer (setAdapterStep) before each step
};

// Swap `m` to adapters on `opt.targets` (see the file comment). Throws on bad options or when
// adapters are already enabled.
void enableLora(Model& m, const LoraOptions& opt);

// Write base + scale * B A of every adapter into `dst` (a plain model of the same config): the
// merged weights PEFT's merge_and_unload() gives. Computed in float64, stored in fp32.
void loraMergeInto(const Model& src, Model& dst);

// RAII: adapters off on this thread (reference forwards; scores with `adapters: false`).
class AdaptersOff {
 public:
  AdaptersOff();
  ~AdaptersOff();
  AdaptersOff(const AdaptersOff&) = delete;
  AdaptersOff& operator=(const AdaptersOff&) = delete;

 private:
  bool prev_;
};

// One forward pass's view of the adapters (Model::forward). Inactive (a no-op) without adapters
// or inside AdaptersOff.
class LoraPass {
 public:
  LoraPass(const Model& m, const at::Tensor& ids);
  // y + the adapters' outputs for `n` consecutive sites starting at `first`, whose base outputs
  // are consecutive column blocks of y. x: the projection's input.
  at::Tensor add(int64_t layer, LoraSite first, int n, const at::Tensor& x, const at::Tensor& y) const;

 private:
  const Model& m_;
  const LoraState* s_ = nullptr;
  bool dropout_ = false;
  uint64_t key_ = 0;
  int64_t width(LoraSite s) const;
  at::Tensor addShared(int64_t layer, LoraSite first, int n, const at::Tensor& x, const at::Tensor& y) const;
};

}  // namespace mpo
