// libtorch c10d process groups without N-API: shared by the addon (c10d_group.cc) and the GPU check's
// harness (harness/c10d_check.cpp), so the code the GPU run exercises is the code the trainer runs.
// Rendezvous through c10d's TCPStore (rank 0 serves it); ProcessGroupGloo on CPU tensors, or
// ProcessGroupNCCL (MPO_C10D_NCCL, a CUDA libtorch) with buffers staged through the rank's GPU.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>
#ifdef MPO_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace mpo_c10d {
struct Options {
  std::string host = "127.0.0.1", prefix = "mpo", backend = "gloo";
  int port = 0, rank = 0, worldSize = 1, device = 0;
  std::chrono::milliseconds timeout{60000};
};

// The process group and its store; shared with running workers so close() cannot free them mid-call.
struct State {
  std::mutex mu;  // one collective at a time, in call order
  c10::intrusive_ptr<c10d::Store> store;
#if TORCH_VERSION_MAJOR >= 2
  c10::intrusive_ptr<c10d::Backend> pg;
#else
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
#endif
  Options o;
};

inline void connect(State& s) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(s.o.port);
  so.isServer = s.o.rank == 0;
  so.numWorkers = s.o.worldSize;
  so.waitWorkers = false;
  so.timeout = s.o.timeout;
  auto tcp = c10::make_intrusive<c10d::TCPStore>(s.o.host, so);
  s.store = c10::make_intrusive<c10d::PrefixStore>(s.o.prefix, tcp);
  if (s.o.backend == "gloo") {
    auto opts = c10d::ProcessGroupGloo::Options::create(s.o.timeout);
    // Gloo's default device resolves this host's name; an explicit interface address can be given
    // with GLOO_SOCKET_IFNAME (read by createDefaultDevice), as in PyTorch.
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    s.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s.store, s.o.rank, s.o.worldSize, opts);
    return;
  }
#ifdef MPO_C10D_NCCL
  if (s.o.backend == "nccl") {
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = s.o.timeout;
    s.pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s.store, s.o.rank, s.o.worldSize, opts);
    return;
  }
#endif
  throw std::invalid_argument("c10d backend '" + s.o.backend + "' is not available in this build" +
                              (s.o.backend == "nccl" ? " (needs a CUDA libtorch, MPO_C10D_NCCL)" : ""));
}

inline void allReduceSum(State& s, float* data, int64_t n) {
  std::lock_guard<std::mutex> g(s.mu);
  if (!s.pg) throw std::runtime_error("c10d group is not connected (or was closed)");
  at::Tensor host = at::from_blob(data, {n}, at::kFloat);
  std::vector<at::Tensor> ts;
  if (s.o.backend == "nccl") {
    ts.push_back(host.to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(s.o.device))));
  } else {
    ts.push_back(host);
  }
  c10d::AllreduceOptions ao;
  ao.reduceOp = c10d::ReduceOp::SUM;
  s.pg->allreduce(ts, ao)->wait(s.o.timeout);
  if (s.o.backend == "nccl") host.copy_(ts[0]);
}

}  // namespace mpo_c10d
