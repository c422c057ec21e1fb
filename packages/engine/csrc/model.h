// The decoder-only Llama family (LlamaForCausalLM, Qwen2ForCausalLM, Gemma2ForCausalLM) over libtorch.
//
// Parameters live in ONE flat fp32 buffer (`flatParam`), in the order of `hfTensors` below; every
// parameter tensor the forward pass uses is a view of it (fp32 on CPU), so the flat buffer can be
// handed to JavaScript without copying, hashed, saved and updated by the optimizer in one loop.
// Gradients have the same layout in `flatGrad`. For bf16/f16 compute (or a CUDA device) the flat
// fp32 buffers are the "master" copy and `compute` tensors are converted copies that are refreshed
// after every optimizer step.
//
// bf16 weight storage (`bf16Weights`, CPU bfloat16 only, for ZeRO): flatParam and flatGrad are
// bf16 (2 bytes per parameter each) and there is no fp32 copy of the whole model: the fp32 master
// weights and AdamW state live sharded in the trainer (packages/trainer/src/zero.ts). Every matrix
// (embedding, projections, LM head) is then a bf16 view of flatParam used directly by the mixed
// GEMM (no second bf16 copy), and only the 1-D tensors (norms, biases) get small fp32 compute
// copies, so the forward pass is the mixed path's, bit for bit, for the same (bf16-valued) weights.
// Gradients are rounded to bf16 when they are added into flatGrad.
//
// Hugging Face stores q_proj, k_proj, v_proj (and gate_proj, up_proj) as separate tensors; laid out
// one after another in the flat buffer they form a single contiguous [q;k;v] (and [gate;up]) matrix,
// so the forward pass does one GEMM instead of three (two).
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace mpo {

enum class Arch { Llama, Qwen2, Gemma2 };

struct LoraState;  // [LoRA] lora.h
class LoraPass;   // [LoRA] lora.h

struct RopeScaling {
  bool llama3 = false;  // rope_scaling.rope_type == "llama3"
  double factor = 1.0, lowFreqFactor = 1.0, highFreqFactor = 4.0, originalMaxPositions = 8192.0;
};

struct Config {
  Arch arch = Arch::Llama;
  int64_t vocab = 0, hidden = 0, inter = 0, layers = 0, heads = 0, kvHeads = 0, headDim = 0;
  double eps = 1e-6, theta = 10000.0;
  RopeScaling rope;
  bool bias = false;  // q/k/v projections have a bias (Qwen2)
  bool tie = false;   // lm_head shares the embedding matrix
  int64_t padId = 0;  // token fed at padded positions (only visible through 'meanUnmasked' pooling)
  // Gemma-2 (transformers' Gemma2ForCausalLM). The architecture itself implies RMSNorm with
  // (1 + weight), the embedding scaled by sqrt(hidden) and norms after attention and after the MLP
  // as well as before them; the rest are its config fields.
  bool geluTanh = false;       // hidden_activation gelu_pytorch_tanh: GeGLU instead of SwiGLU
  double queryScalar = 0.0;    // query_pre_attn_scalar: scores scaled by its -1/2 power (0: head_dim)
  double attnSoftcap = 0.0;    // attn_logit_softcapping: s -> cap * tanh(s / cap) (0: none)
  double finalSoftcap = 0.0;   // final_logit_softcapping, same on the LM head's logits (0: none)
  int64_t slidingWindow = 0;   // sliding_window on the even layers (0: none): key j visible to query
                               // i iff i - window < j <= i
  bool gemma() const { return arch == Arch::Gemma2; }
  bool slidingLayer(int64_t l) const { return slidingWindow > 0 && l % 2 == 0; }
};

// One tensor of the Hugging Face checkpoint layout, as a slice of the flat buffer.
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in elements of the flat buffer
  int64_t numel = 0;
};

// A trainable parameter of the forward pass (possibly several fused HF tensors).
struct Param {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, numel = 0;
  at::Tensor master;   // view of flatParam (fp32, or bf16 with bf16Weights)
  at::Tensor compute;  // leaf used by the forward pass (== master on CPU fp32); requires_grad
  bool copy = false;   // compute is a separate tensor refreshed from master (else an alias of it)
};

struct LayerWeights {
  // ln1 = input_layernorm, ln2 = post_attention_layernorm (before the MLP in Llama, after attention
  // in Gemma-2); Gemma-2 adds lnPreFf / lnPostFf around the MLP. bqkv undefined without bias.
  at::Tensor wqkv, bqkv, wo, wgu, wdown, ln1, ln2, lnPreFf, lnPostFf;
  // Auxiliary weight copies for the fused CPU linear (see kernels.h): W^T in fp32 for ATen's mm
  // (no direct sgemm), or W in bf16 for the mixed-precision GEMM; undefined otherwise.
  at::Tensor wqkvT, woT, wguT, wdownT;
};

// Key/value cache for generation: per layer [B, kvHeads, capacity, headDim].
struct KvCache {
  std::vector<at::Tensor> k, v;
  int64_t len = 0;
};

// A scored batch kept alive for a later backward(): one autograd graph per chunk.
struct ChunkGraph {
  std::vector<int64_t> index;  // original positions in the batch of the chunk's rows
  at::Tensor sumLogp, kl;      // [b]
  at::Tensor last, mean, meanUnmasked;  // [b, hidden]
};
// What every decoder layer of one forward call shares (see Model::layerInputs).
struct LayerInputs {
  int64_t B = 0, T = 0, past = 0, Tk = 0;
  at::Tensor cos, sin;  // RoPE rows for the non-fused path
  at::Tensor mask;      // additive attention mask (undefined: none)
  at::Tensor slidingMask;  // mask of the sliding-window layers when the window cuts anything
  bool causal = false;  // `mask` is the plain causal mask
  bool fused = false;   // training path: fused RoPE (and attention where the layer allows it)
  KvCache* cache = nullptr;
  const LoraPass* adapters = nullptr;  // [LoRA] this forward's adapters (lora.h); null: none
};

struct GraphHandle {
  std::vector<ChunkGraph> chunks;
  int64_t n = 0;
};

class Model {
 public:
  Model(const Config& cfg, at::Device device, at::ScalarType dtype, int threads, bool bf16Weights = false);

  const Config cfg;
  const at::Device device;
  const at::ScalarType dtype;  // compute dtype
  // Dtype of activations and of the `compute` parameter tensors. Equal to dtype, except bfloat16 on
  // a CPU with oneDNN's bf16 GEMM ("mixed"): activations, norms, attention and every elementwise op
  // stay fp32 on the fused kernels, while each linear layer multiplies in bf16 (bf16 weight copies,
  // inputs rounded to bf16, fp32 accumulation) forward and backward; what a linear layer saves for
  // backward is its bf16 input.
  const at::ScalarType actDtype;
  bool mixedBf16() const { return dtype == at::kBFloat16 && actDtype == at::kFloat; }
  // flatParam/flatGrad are bf16 and no fp32 weight copy exists (see the file comment).
  const bool bf16Weights;
  int threads;

  at::Tensor flatParam, flatGrad;  // fp32 (bf16 with bf16Weights), on `device`
  std::vector<at::Tensor> workerGrads;  // backward(): per-worker accumulation buffers (worker >= 1)
  std::vector<HfTensor> hfTensors;
  std::vector<Param> params;
  at::Tensor embed, norm, lmHead;  // lmHead aliases embed when tied
  at::Tensor lmHeadT;
  std::vector<LayerWeights> layers;
  // [LoRA] adapters (lora.h); null without. When set, flatParam/flatGrad/params/hfTensors are the
  // adapters' and the frozen base lives in *lora.
  std::shared_ptr<LoraState> lora;

  // AdamW state (same layout as flatParam), allocated at the first step or load.
  at::Tensor expAvg, expAvgSq;
  int64_t optStep = 0;

  std::mutex mu;  // one long operation at a time on a model

  // --- graphs kept for backward
  std::mutex handleMu;
  std::map<int64_t, std::shared_ptr<GraphHandle>> handles;
  int64_t nextHandle = 1;
  int64_t addHandle(std::shared_ptr<GraphHandle> h);
  std::shared_ptr<GraphHandle> takeHandle(int64_t id);  // removes it
  void releaseAll();

  // --- host mirrors for CUDA (gradBuffer/paramBuffer are host memory there)
  at::Tensor hostGrad, hostParam;
  bool hostGradDirty = false;  // JS may have written hostGrad: copy it back before using flatGrad
  void syncGradFromHost();

  int64_t numParameters() const { return flatParam.numel(); }
  bool computeIsMaster() const { return actDtype == at::kFloat; }
  // After flatParam changed (load, step, init, writes from JS): refresh the compute copies
  // (non-fp32 dtypes) and the W^T copies of the fused CPU path.
  void weightsChanged();
  void initRandom(uint64_t seed, double stdev);

  // Make sure the RoPE tables cover positions [0, n). Call before running workers in parallel.
  void ensureRope(int64_t n);
  at::Tensor ropeCos, ropeSin;  // [capacity, headDim], compute dtype

  // The decoder. ids: [B, T] int64 on device.
  //  positions: [B, T] int64 or undefined (= 0..T-1 for every row)
  //  mask: additive attention mask, undefined (= causal, T x T), [T, Tk] or [B, T, Tk]
  //  cache: when given, keys/values of these T tokens are appended to it and attention covers
  //         the cached prefix as well (Tk = cache->len + T)
  // Returns the final-norm hidden states [B, T, hidden].
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& mask,
                     KvCache* cache) const;
  at::Tensor logitsOf(const at::Tensor& hidden) const;  // hidden [..., D] -> fp32 logits [..., V]

  KvCache newCache(int64_t batch, int64_t capacity) const;

  // Activation checkpointing: with grad mode on, each decoder layer keeps only its input and
  // recomputes its activations during backward (memory ~ one layer's activations plus the layer
  // inputs, for ~1/3 more compute).
  std::atomic<bool> checkpointLayers{false};
  LayerInputs layerInputs(int64_t B, int64_t T, const at::Tensor& positions, const at::Tensor& mask,
                          KvCache* cache) const;
  at::Tensor layer(int64_t l, const at::Tensor& x, const LayerInputs& in) const;  // one decoder layer
  at::Tensor applyNorm(const at::Tensor& x, const at::Tensor& w) const;  // the architecture's RMSNorm

  // Causal additive mask [T, T] (0 on and below the diagonal, -inf above), compute dtype.
  at::Tensor causalMask(int64_t T) const;

 private:
  at::Tensor causal_;  // cached for the largest T seen
  void refreshCompute();
  void refreshTransposed();
};

// Parse helpers shared by the N-API layer.
at::ScalarType parseDtype(const std::string& s);
at::Device parseDevice(const std::string& s);

// Threads: run `tasks` on `workers` threads, task i on worker i % workers, in order on each
// worker (so any accumulation order is fixed for a given thread count). Each worker runs torch
// with one intra-op thread. With workers == 1 it runs inline with `intraThreads` intra-op threads.
// fn(worker, task). Exceptions are rethrown (the first task's in task order).
void runParallel(int workers, int64_t tasks, int intraThreads, bool gradMode,
                 const std::function<void(int, int64_t)>& fn);
void setIntraOpThreads(int n);  // at::set_num_threads on the calling thread (OpenMP ICV is per thread)

}  // namespace mpo
