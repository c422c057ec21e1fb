// mpo_c10d.node: libtorch's c10d process groups behind N-API, for data-parallel training between
// hosts (issue 15 item 2). We do not write a network protocol: rendezvous is c10d's TCPStore (rank 0
// serves it), and the collective is ProcessGroupGloo (CPU tensors, TCP between hosts) or, in a CUDA
// libtorch build with MPO_C10D_NCCL, ProcessGroupNCCL (buffers staged through the rank's GPU).
// Within a host the shared-memory group stays the fast path; src/hierarchical.ts combines the two.
//
//   const g = new C10dGroup({ host, port, rank, worldSize, backend: 'gloo', timeoutMs, prefix });
//   await g.connect();               // TCPStore + process group rendezvous, off the JS thread
//   await g.allReduceSum(f32array);  // in place
//   g.close();
#include <ATen/ATen.h>
#include <napi.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MPO_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

namespace {

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

void connect(State& s) {
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

void allReduceSum(State& s, float* data, int64_t n) {
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

class Work : public Napi::AsyncWorker {
 public:
  Work(Napi::Env env, std::function<void()> fn)
      : Napi::AsyncWorker(env, "mpo-c10d"), deferred_(Napi::Promise::Deferred::New(env)), fn_(std::move(fn)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      fn_();
    } catch (const c10::Error& e) {
      SetError(e.what_without_backtrace());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  Napi::ObjectReference keep;  // the typed array being reduced stays alive until the work is done

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> fn_;
};

class C10dGroup : public Napi::ObjectWrap<C10dGroup> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "C10dGroup",
                       {InstanceMethod<&C10dGroup::Connect>("connect"),
                        InstanceMethod<&C10dGroup::AllReduceSum>("allReduceSum"),
                        InstanceMethod<&C10dGroup::Close>("close")});
  }

  C10dGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<C10dGroup>(info), s_(std::make_shared<State>()) {
    auto o = info[0].As<Napi::Object>();
    auto str = [&](const char* k, const std::string& d) {
      return o.Get(k).IsString() ? o.Get(k).As<Napi::String>().Utf8Value() : d;
    };
    auto num = [&](const char* k, double d) { return o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().DoubleValue() : d; };
    s_->o.host = str("host", "127.0.0.1");
    s_->o.prefix = str("prefix", "mpo");
    s_->o.backend = str("backend", "gloo");
    s_->o.port = static_cast<int>(num("port", 0));
    s_->o.rank = static_cast<int>(num("rank", 0));
    s_->o.worldSize = static_cast<int>(num("worldSize", 1));
    s_->o.device = static_cast<int>(num("device", 0));
    s_->o.timeout = std::chrono::milliseconds(static_cast<int64_t>(num("timeoutMs", 60000)));
    if (s_->o.port <= 0 || s_->o.port > 65535)
      throw Napi::RangeError::New(info.Env(), "C10dGroup: port must be 1..65535");
    if (s_->o.worldSize < 1 || s_->o.rank < 0 || s_->o.rank >= s_->o.worldSize)
      throw Napi::RangeError::New(info.Env(), "C10dGroup: need 0 <= rank < worldSize");
  }

 private:
  std::shared_ptr<State> s_;

  Napi::Value Connect(const Napi::CallbackInfo& info) {
    auto s = s_;
    auto* w = new Work(info.Env(), [s] { connect(*s); });
    auto p = w->promise();
    w->Queue();
    return p;
  }

  Napi::Value AllReduceSum(const Napi::CallbackInfo& info) {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(info.Env(), "allReduceSum: expected a Float32Array");
    auto a = info[0].As<Napi::Float32Array>();
    auto s = s_;
    float* data = a.Data();
    const int64_t n = static_cast<int64_t>(a.ElementLength());
    auto* w = new Work(info.Env(), [s, data, n] { allReduceSum(*s, data, n); });
    w->keep = Napi::Persistent(a.As<Napi::Object>());
    auto p = w->promise();
    w->Queue();
    return p;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> g(s_->mu);
    s_->pg.reset();
    s_->store.reset();
    return info.Env().Undefined();
  }
};

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("C10dGroup", C10dGroup::Init(env));
#ifdef MPO_C10D_NCCL
  exports.Set("backends", Napi::String::New(env, "gloo,nccl"));
#else
  exports.Set("backends", Napi::String::New(env, "gloo"));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(mpo_c10d, InitAddon)
