// mpo-c10d-check: one rank of a c10d all-reduce through native/c10d_core.h (the code behind
// mpo_c10d.node), for scripts/gpu-check.sh where there is no Node. Prints one JSON line.
//   mpo-c10d-check --backend gloo|nccl --rank R --world N --port P [--mib M] [--iters K] [--device D]
// Every rank contributes rank + 1 in every element; the sum must be N(N+1)/2 everywhere (exact in fp32).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "../native/c10d_core.h"

int main(int argc, char** argv) {
  std::map<std::string, std::string> o;
  for (int i = 1; i + 1 < argc; i += 2) o[std::string(argv[i]).substr(2)] = argv[i + 1];
  auto get = [&](const char* k, const char* d) { return o.count(k) ? o[k] : std::string(d); };
  try {
    mpo_c10d::State s;
    s.o.backend = get("backend", "gloo");
    s.o.rank = std::stoi(get("rank", "0"));
    s.o.worldSize = std::stoi(get("world", "1"));
    s.o.port = std::stoi(get("port", "29500"));
    s.o.device = std::stoi(get("device", "0"));
    s.o.prefix = "gpu-check";
    s.o.timeout = std::chrono::milliseconds(60000);
    const int64_t n = std::stoll(get("mib", "64")) * (1 << 20) / 4;
    const int iters = std::stoi(get("iters", "5"));
    mpo_c10d::connect(s);
    std::vector<float> buf(n, static_cast<float>(s.o.rank + 1));
    mpo_c10d::allReduceSum(s, buf.data(), n);
    const float want = s.o.worldSize * (s.o.worldSize + 1) / 2.0f;
    bool correct = true;
    for (int64_t i = 0; i < n; i += 4099) correct = correct && buf[i] == want;
    correct = correct && buf[n - 1] == want;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) mpo_c10d::allReduceSum(s, buf.data(), n);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    const double algbw = n * 4.0 / sec / 1e9;
    std::cout << "{\"backend\":\"" << s.o.backend << "\",\"rank\":" << s.o.rank << ",\"world\":" << s.o.worldSize
              << ",\"bytes\":" << n * 4 << ",\"correct\":" << (correct ? "true" : "false")
              << ",\"timeUs\":" << sec * 1e6 << ",\"busbwGBps\":" << algbw * 2 * (s.o.worldSize - 1) / s.o.worldSize
              << ",\"note\":\"buffer staged host->device->host per call for nccl\"}" << std::endl;
    return correct ? 0 : 1;
  } catch (const c10::Error& e) {
    std::cerr << "mpo-c10d-check: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "mpo-c10d-check: " << e.what() << "\n";
  }
  return 1;
}
