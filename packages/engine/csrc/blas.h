// Direct GEMM calls for the fused CPU kernels, on the libraries libtorch itself brought into the
// process, looked up at run time so the addon links and loads the same way without them:
//   float:  oneDNN's dnnl_sgemm (Debian's libtorch links libdnnl; its JIT kernels use AVX-512 and
//           ran 5-15% faster than OpenBLAS on this project's shapes, with x W^T as fast as x W),
//           else CBLAS cblas_sgemm (OpenBLAS);
//   double: cblas_dgemm (used by the float64 gradient checks).
// Row-major: C[m,n] = alpha * op(A) * op(B) + beta * C. Threads: the calling thread's OpenMP
// setting (oneDNN) or OpenBLAS's own (set to 1 by the addon).
#pragma once

#include <cstdint>

namespace mpo {

// Address of `name` in the process or in the addon's dependency tree (Node loads addons with
// RTLD_LOCAL, so their libraries are not in the global scope); nullptr when absent.
void* findSymbol(const char* name);

bool haveGemm(const float*);
bool haveGemm(const double*);
const char* gemmBackend();  // "onednn", "cblas" or "none" (float)

void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// oneDNN's dnnl_gemm_bf16bf16f32: bf16 inputs (raw bits), fp32 accumulation and output. On CPUs with
// AVX-512 BF16 (this one: Zen 4) it runs ~3-4x the sgemm rate on the engine's shapes.
bool haveBf16Gemm();
void gemmBf16(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* A, int64_t lda,
              const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Aggregate GEMM throughput (FLOP/s) of `threads` threads each multiplying its own [m,k] x [k,n]
// operands (transposes as given) back to back for about `seconds`, with the calls the engine makes
// (sgemm, or the bf16 GEMM with bf16 = true) and one OpenMP thread each, as the engine's workers run.
double gemmRate(bool bf16, int threads, int64_t m, int64_t n, int64_t k, bool transA, bool transB, double seconds);

}  // namespace mpo
