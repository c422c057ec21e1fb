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
#include <napi.h>

#include <functional>
#include <memory>

#include "c10d_core.h"

namespace {

using mpo_c10d::State;

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
    auto* w = new Work(info.Env(), [s] { mpo_c10d::connect(*s); });
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
    auto* w = new Work(info.Env(), [s, data, n] { mpo_c10d::allReduceSum(*s, data, n); });
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
