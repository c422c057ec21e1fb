// The decoder-only Llama family (LlamaForCausalLM, Qwen2ForCausalLM) over libtorch.
//
// Parameters live in ONE flat fp32 buffer (`flatParam`), in the order of `hfTensors` below; every
// parameter tensor the forward pass uses is a view of it (fp32 on CPU), so the flat buffer can be
// handed to JavaScript without copying, hashed, saved and updated by the optimizer in one loop.
// Gradients have the same layout in `flatGrad`. For bf16/f16 compute (or a CUDA device) the flat
// fp32 buffers are the "master" copy and `compute` tensors are converted copies that are refreshed
// after every optimizer step.
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

enum class Arch { Llama, Qwen2 };

struct LoraState;  // [LoRA] lora.h

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
  at::Tensor master;   // fp32 view of flatParam
  at::Tensor compute;  // leaf used by the forward pass (== master on CPU fp32); requires_grad
};

struct LayerWeights {
  at::Tensor wqkv, bqkv, wo, wgu, wdown, ln1, ln2;  // bqkv undefined without bias
  // W^T copies for the fused CPU linear (see kernels.h); undefined off the fused path.
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
struct GraphHandle {
  std::vector<ChunkGraph> chunks;
  int64_t n = 0;
};

class Model {
 public:
  Model(const Config& cfg, at::Device device, at::ScalarType dtype, int threads);

  const Config cfg;
  const at::Device device;
  const at::ScalarType dtype;  // compute dtype
  int threads;

  at::Tensor flatParam, flatGrad;  // fp32, on `device`
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
  bool computeIsMaster() const { return dtype == at::kFloat; }
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
