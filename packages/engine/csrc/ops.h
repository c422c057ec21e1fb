// The long operations on a Model. Each runs on a libuv worker thread (see addon.cpp) with the
// model's mutex held; inside, work is split over `model.threads` threads by runParallel().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model.h"

namespace mpo {

// --- scoring.cpp -------------------------------------------------------------------------------
struct ScoreRequest {
  std::vector<int32_t> tokens;      // all sequences concatenated
  std::vector<int64_t> offsets;     // n + 1 offsets into tokens
  std::vector<int64_t> promptLens;  // n
  bool grad = false;                // keep the graph for backward()
  bool lmHead = true;               // compute sumLogp (false: hidden states only)
  bool poolLast = false, poolMean = false, poolMeanUnmasked = false;
  Model* ref = nullptr;  // reference model for KL(ref || policy) over response positions
  bool adapters = true;  // [LoRA] false: score the base model (adapters off, lora.h)
};
struct ScoreResult {
  int64_t n = 0, hidden = 0, handle = 0;
  std::vector<double> sumLogp, kl;
  std::vector<int32_t> tokens;
  std::vector<float> last, mean, meanUnmasked;
};
ScoreResult score(Model& m, const ScoreRequest& r);

// Chunk plan: groups of batch rows that run as one padded [b, T] forward.
struct Chunk {
  std::vector<int64_t> rows;  // indices into the batch, longest first
  int64_t T = 0;              // padded length
};
std::vector<Chunk> planChunks(const std::vector<int64_t>& lengths, int workers, bool padToMax);

// Last-position fp32 logits of one sequence (for tests and tools).
std::vector<float> lastLogits(Model& m, const std::vector<int32_t>& tokens);

// --- backward.cpp ------------------------------------------------------------------------------
struct GradRequest {  // empty vector = no gradient for that output
  std::vector<double> sumLogp, kl;
  std::vector<float> last, mean, meanUnmasked;
};
void backward(Model& m, GraphHandle& h, const GradRequest& g);

// --- optimizer.cpp -----------------------------------------------------------------------------
struct StepOptions {
  double lr = 1e-5, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01, maxGradNorm = 0.0;
  // Loss scaling: the gradient buffer holds gradScale x the true gradients; the step divides by it
  // (after the finiteness check, before clipping) and leaves the buffer as it is.
  double gradScale = 1.0;
};
// Returns the pre-clip global norm of the (unscaled) gradients; non-finite: the update was skipped.
double adamwStep(Model& m, const StepOptions& o);
void ensureOptimizerState(Model& m);
double gradNorm(Model& m);
// The pieces ZeRO drives over a shard of the flat buffers (same arithmetic as adamwStep):
// gradNorm's partial sums of squares per block of kNormBlock elements (g must start on a block
// boundary of the flat buffer for the partials to be gradNorm's), and the AdamW update of n
// elements at optimizer step t (1-based) with clip coefficient `clip`.
constexpr int64_t kNormBlock = 1 << 16;
void sumSquaresBlocks(const float* g, int64_t n, double* part, int threads);
void adamwBuffers(float* p, const float* g, float* ma, float* va, int64_t n, const StepOptions& o, int64_t t,
                  double clip, int threads);

// --- generation.cpp ----------------------------------------------------------------------------
struct GenerateRequest {
  std::vector<std::vector<int64_t>> prompts;
  int64_t maxNewTokens = 0;
  std::vector<int64_t> eos;
  double temperature = 0.0, topP = 1.0;
  uint64_t seed = 0;
  bool kvCache = true;
};
std::vector<std::vector<int64_t>> generate(Model& m, const GenerateRequest& r);

// --- tensor_io.cpp -----------------------------------------------------------------------------
// Which flat fp32 buffer of the model an entry reads into / writes from.
enum class Buffer { Param, ExpAvg, ExpAvgSq };
struct ReadEntry {
  std::string file, dtype;  // dtype: "F32" | "F16" | "BF16"
  int64_t fileOffset = 0, nbytes = 0;
  Buffer target = Buffer::Param;
  int64_t offset = 0, numel = 0;
};
void readTensors(Model& m, const std::vector<ReadEntry>& entries);
struct WriteEntry {
  Buffer source = Buffer::Param;
  int64_t offset = 0, numel = 0;
  std::string dtype;  // "F32" | "F16" | "BF16"
};
// Writes [u64 header length][header][tensor bytes in entry order] to `path` (via a temporary file).
// The header (JSON, already padded) is built by the TypeScript side.
void writeSafetensors(Model& m, const std::string& path, const std::string& header,
                      const std::vector<WriteEntry>& entries);

}  // namespace mpo
