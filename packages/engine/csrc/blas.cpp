#include "blas.h"

#include <dlfcn.h>

#include <chrono>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace mpo {

void* findSymbol(const char* name) {
  if (void* p = dlsym(RTLD_DEFAULT, name)) return p;
  // dlsym on our own handle searches the addon and every library it depends on.
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&findSymbol), &info) == 0 || !info.dli_fname) return nullptr;
  void* self = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (!self) return nullptr;
  void* p = dlsym(self, name);
  dlclose(self);  // drops the reference RTLD_NOLOAD added
  return p;
}

namespace {

enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
using CblasS = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using CblasD = void (*)(int, int, int, int, int, int, double, const double*, int, const double*, int, double, double*,
                        int);
using DnnlS = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                      float*, int64_t);
using DnnlBf16 = int (*)(char, char, int64_t, int64_t, int64_t, float, const uint16_t*, int64_t, const uint16_t*,
                         int64_t, float, float*, int64_t);

struct Libs {
  CblasS cs = nullptr;
  CblasD cd = nullptr;
  DnnlS ds = nullptr;
  DnnlBf16 db = nullptr;
  Libs() {
    // MPO_ENGINE_GEMM=aten turns the direct calls off (ATen's matmul everywhere), =cblas skips oneDNN.
    const char* env = std::getenv("MPO_ENGINE_GEMM");
    const std::string pick = env ? env : "";
    if (pick == "aten") return;
    cs = reinterpret_cast<CblasS>(findSymbol("cblas_sgemm"));
    cd = reinterpret_cast<CblasD>(findSymbol("cblas_dgemm"));
    if (pick != "cblas") ds = reinterpret_cast<DnnlS>(findSymbol("dnnl_sgemm"));
    // MPO_ENGINE_BF16_GEMM=0: bfloat16 models take the ATen composition (the old, slow path).
    const char* bf = std::getenv("MPO_ENGINE_BF16_GEMM");
    if (!(bf && std::string(bf) == "0")) db = reinterpret_cast<DnnlBf16>(findSymbol("dnnl_gemm_bf16bf16f32"));
  }
};
const Libs& libs() {
  static Libs l;
  return l;
}

}  // namespace

bool haveGemm(const float*) { return libs().ds || libs().cs; }
bool haveGemm(const double*) { return libs().cd != nullptr; }
bool haveBf16Gemm() { return libs().db != nullptr; }

void gemmBf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* A, int64_t lda,
              const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (!libs().db) throw std::logic_error("no bf16 gemm available");
  if (libs().db(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, A, lda, B, ldb, beta, C, ldc) != 0)
    throw std::runtime_error("dnnl_gemm_bf16bf16f32 failed");
}
const char* gemmBackend() { return libs().ds ? "onednn" : (libs().cs ? "cblas" : "none"); }

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (libs().ds) {
    if (libs().ds(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, A, lda, B, ldb, beta, C, ldc) != 0)
      throw std::runtime_error("dnnl_sgemm failed");
    return;
  }
  if (!libs().cs) throw std::logic_error("no sgemm available");
  libs().cs(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, static_cast<int>(m), static_cast<int>(n),
            static_cast<int>(k), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
            static_cast<int>(ldc));
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (!libs().cd) throw std::logic_error("no dgemm available");
  libs().cd(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, static_cast<int>(m), static_cast<int>(n),
            static_cast<int>(k), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
            static_cast<int>(ldc));
}

double gemmRate(bool bf16, int threads, int64_t m, int64_t n, int64_t k, bool ta, bool tb, double seconds) {
  using clock = std::chrono::steady_clock;
  if (threads < 1) threads = 1;
  std::vector<double> flops(threads, 0.0);
  const auto t0 = clock::now();
  auto body = [&](int w) {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    std::vector<float> a(bf16 ? 0 : m * k, 0.5f), b(bf16 ? 0 : k * n, 0.25f), c(m * n, 0.0f);
    std::vector<uint16_t> ab(bf16 ? m * k : 0, 0x3f00), bb(bf16 ? k * n : 0, 0x3e80);  // 0.5, 0.25
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    const auto until = t0 + std::chrono::duration<double>(seconds);
    do {
      if (bf16)
        gemmBf16(ta, tb, m, n, k, 1.0f, ab.data(), lda, bb.data(), ldb, 0.0f, c.data(), n);
      else
        gemm(ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), n);
      flops[w] += 2.0 * m * n * k;
    } while (clock::now() < until);
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < threads; ++w) pool.emplace_back(body, w);
  body(0);
  for (auto& t : pool) t.join();
  const double sec = std::chrono::duration<double>(clock::now() - t0).count();
  double total = 0.0;
  for (double f : flops) total += f;
  return total / sec;
}

}  // namespace mpo
