// N-API surface of the engine: class NativeModel, used only by src/native.ts / src/model.ts.
//
// Every long call (load, save, score, backward, step, generate) returns a Promise and runs in a
// Napi::AsyncWorker on libuv's thread pool. Arguments are copied out of JS values on the JS thread
// before the work is queued, and results are turned into JS values on the JS thread after it
// finishes; the worker itself never touches JS. A model runs one long call at a time (model.mu).
#include <c10/util/Exception.h>
#include <dlfcn.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <napi.h>
#include <torch/cuda.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR < 2
#include <torch/csrc/autograd/profiler_legacy.h>
#endif

#include <atomic>
#include <cmath>

#include <memory>
#include <mutex>

#include "blas.h"
#include "kernels.h"
#include "lora.h"
#include "ops.h"

namespace {

using mpo::Model;

// Debian's libtorch calls OpenBLAS for GEMMs. OpenBLAS's own thread pool competes with our worker
// threads (and its idle threads spin), so BLAS runs single-threaded inside each worker; the
// parallelism comes from running chunks of a batch on several workers. MPO_ENGINE_BLAS_THREADS
// overrides that.
bool configureBlas() {
  using SetFn = void (*)(int);
  auto fn = reinterpret_cast<SetFn>(mpo::findSymbol("openblas_set_num_threads"));
  if (!fn) return false;
  const char* env = std::getenv("MPO_ENGINE_BLAS_THREADS");
  fn(env && *env ? std::max(1, std::atoi(env)) : 1);
  return true;
}

// glibc returns large freed blocks to the kernel (munmap / heap trimming) and hands out fresh,
// zero-filled pages on the next allocation. A training step frees and re-allocates hundreds of MB of
// activations, so every step paid for that in page faults (measured: ~12% of a config-S step at two
// threads, where the faults of both threads also contend). Keeping freed memory in the heap trades
// a higher resident size after a big step for not faulting it in again. MPO_ENGINE_MALLOC_TUNING=0
// leaves glibc's defaults.
bool tuneMalloc() {
#if defined(__GLIBC__)
  const char* env = std::getenv("MPO_ENGINE_MALLOC_TUNING");
  if (env && std::string(env) == "0") return false;
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);  // glibc's maximum: blocks up to 32 MB come from heaps
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  mallopt(M_TOP_PAD, 64 * 1024 * 1024);
  return true;
#else
  return false;
#endif
}

std::string errorText(const std::exception& e) {
  if (auto ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

// A Promise-returning AsyncWorker: `exec` runs off the JS thread, `done` builds the result on it.
class Task : public Napi::AsyncWorker {
 public:
  Task(Napi::Env env, std::function<void()> exec, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "mpo-engine"), deferred_(Napi::Promise::Deferred::New(env)),
        exec_(std::move(exec)), done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
#if TORCH_VERSION_MAJOR < 2
      // MPO_ENGINE_PROFILE=<prefix>: chrome://tracing file per call (ops on this thread only, so
      // profile with threads=1).
      static std::atomic<int> calls{0};
      if (const char* prof = std::getenv("MPO_ENGINE_PROFILE"); prof && *prof) {
        torch::autograd::profiler::RecordProfile guard(std::string(prof) + "." + std::to_string(calls++) + ".json");
        exec_();
        return;
      }
#endif
      exec_();
    } catch (const std::exception& e) {
      SetError(errorText(e));
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    try {
      deferred_.Resolve(done_ ? done_(Env()) : Env().Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> exec_;
  std::function<Napi::Value(Napi::Env)> done_;
};

Napi::Value queue(Napi::Env env, std::function<void()> exec, std::function<Napi::Value(Napi::Env)> done = nullptr) {
  auto* t = new Task(env, std::move(exec), std::move(done));
  auto p = t->promise();
  t->Queue();
  return p;
}

// --- JS value helpers
double num(const Napi::Object& o, const char* k, double dflt) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

// AdamW's hyperparameters from a JS options object (StepOptions in model.ts): the defaults of
// mpo::StepOptions for the missing ones. Model.step and adamwShard read them alike.
mpo::StepOptions adamwOptions(const Napi::Object& o) {
  mpo::StepOptions so;
  so.lr = num(o, "lr", so.lr);
  so.beta1 = num(o, "beta1", so.beta1);
  so.beta2 = num(o, "beta2", so.beta2);
  so.eps = num(o, "eps", so.eps);
  so.weightDecay = num(o, "weightDecay", so.weightDecay);
  return so;
}
bool flag(const Napi::Object& o, const char* k, bool dflt) {
  Napi::Value v = o.Get(k);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : dflt;
}
std::string str(const Napi::Object& o, const char* k, const std::string& dflt = "") {
  Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : dflt;
}
template <typename T, typename A>
std::vector<T> vec(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return {};
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), "expected a typed array");
  auto a = v.As<Napi::TypedArrayOf<A>>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}
template <typename T, typename A>
Napi::Value typed(Napi::Env env, const std::vector<T>& v) {
  auto a = Napi::TypedArrayOf<A>::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

mpo::Config parseConfig(const Napi::Object& o) {
  mpo::Config c;
  const std::string arch = str(o, "arch");
  if (arch == "llama")
    c.arch = mpo::Arch::Llama;
  else if (arch == "qwen2")
    c.arch = mpo::Arch::Qwen2;
  else if (arch == "gemma2")
    c.arch = mpo::Arch::Gemma2;
  else
    throw Napi::Error::New(o.Env(), "unknown architecture '" + arch + "'");
  c.vocab = static_cast<int64_t>(num(o, "vocab", 0));
  c.hidden = static_cast<int64_t>(num(o, "hidden", 0));
  c.inter = static_cast<int64_t>(num(o, "inter", 0));
  c.layers = static_cast<int64_t>(num(o, "layers", 0));
  c.heads = static_cast<int64_t>(num(o, "heads", 0));
  c.kvHeads = static_cast<int64_t>(num(o, "kvHeads", 0));
  c.headDim = static_cast<int64_t>(num(o, "headDim", 0));
  c.eps = num(o, "eps", 1e-6);
  c.theta = num(o, "theta", 10000.0);
  c.bias = flag(o, "bias", false);
  c.tie = flag(o, "tie", false);
  c.padId = static_cast<int64_t>(num(o, "padId", 0));
  c.geluTanh = flag(o, "geluTanh", false);
  c.queryScalar = num(o, "queryScalar", 0.0);
  c.attnSoftcap = num(o, "attnSoftcap", 0.0);
  c.finalSoftcap = num(o, "finalSoftcap", 0.0);
  c.slidingWindow = static_cast<int64_t>(num(o, "slidingWindow", 0.0));
  Napi::Value rs = o.Get("llama3");
  if (rs.IsObject()) {
    auto r = rs.As<Napi::Object>();
    c.rope.llama3 = true;
    c.rope.factor = num(r, "factor", 8.0);
    c.rope.lowFreqFactor = num(r, "lowFreqFactor", 1.0);
    c.rope.highFreqFactor = num(r, "highFreqFactor", 4.0);
    c.rope.originalMaxPositions = num(r, "originalMaxPositions", 8192.0);
  }
  for (int64_t x : {c.vocab, c.hidden, c.inter, c.layers, c.heads, c.kvHeads, c.headDim})
    if (x <= 0) throw Napi::Error::New(o.Env(), "model config has a non-positive size");
  return c;
}

mpo::Buffer parseBuffer(const std::string& s) {
  if (s == "param") return mpo::Buffer::Param;
  if (s == "exp_avg") return mpo::Buffer::ExpAvg;
  if (s == "exp_avg_sq") return mpo::Buffer::ExpAvgSq;
  throw std::invalid_argument("unknown buffer " + s);
}

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {
                           InstanceMethod<&NativeModel::TensorTable>("tensorTable"),
                           InstanceMethod<&NativeModel::NumParameters>("numParameters"),
                           InstanceMethod<&NativeModel::InitRandom>("initRandom"),
                           InstanceMethod<&NativeModel::ReadTensors>("readTensors"),
                           InstanceMethod<&NativeModel::WriteSafetensors>("writeSafetensors"),
                           InstanceMethod<&NativeModel::Score>("score"),
                           InstanceMethod<&NativeModel::Backward>("backward"),
                           InstanceMethod<&NativeModel::Release>("release"),
                           InstanceMethod<&NativeModel::ZeroGrad>("zeroGrad"),
                           InstanceMethod<&NativeModel::GradBuffer>("gradBuffer"),
                           InstanceMethod<&NativeModel::ParamBuffer>("paramBuffer"),
                           InstanceMethod<&NativeModel::ParamBits>("paramBits"),
                           InstanceMethod<&NativeModel::GradBits>("gradBits"),
                           InstanceMethod<&NativeModel::SyncParams>("syncParams"),
                           InstanceMethod<&NativeModel::Step>("step"),
                           InstanceMethod<&NativeModel::GradNorm>("gradNorm"),
                           InstanceMethod<&NativeModel::OptimizerStep>("optimizerStep"),
                           InstanceMethod<&NativeModel::SetOptimizerStep>("setOptimizerStep"),
                           InstanceMethod<&NativeModel::HasOptimizerState>("hasOptimizerState"),
                           InstanceMethod<&NativeModel::Generate>("generate"),
                           InstanceMethod<&NativeModel::Logits>("logits"),
                           InstanceMethod<&NativeModel::SetThreads>("setThreads"),
                           InstanceMethod<&NativeModel::SetCheckpointing>("setCheckpointing"),
                           InstanceMethod<&NativeModel::Dispose>("dispose"),
                           // [LoRA]
                           InstanceMethod<&NativeModel::EnableLora>("enableLora"),
                           InstanceMethod<&NativeModel::LoraMergeInto>("loraMergeInto"),
                           InstanceMethod<&NativeModel::SetAdapterStep>("setAdapterStep"),
                       });
  }

  // new NativeModel(config, device, dtype, threads[, bf16Weights])
  NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    Napi::Env env = info.Env();
    try {
      auto cfg = parseConfig(info[0].As<Napi::Object>());
      auto device = mpo::parseDevice(info[1].As<Napi::String>().Utf8Value());
      auto dtype = mpo::parseDtype(info[2].As<Napi::String>().Utf8Value());
      const int threads = info[3].As<Napi::Number>().Int32Value();
      const bool bf16Weights = info.Length() > 4 && info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
      model_ = std::make_shared<Model>(cfg, device, dtype, threads, bf16Weights);
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, errorText(e));
    }
  }

  std::shared_ptr<Model> model_;
  Napi::Reference<Napi::Float32Array> gradRef_, paramRef_;
  Napi::Reference<Napi::Uint16Array> gradBitsRef_, paramBitsRef_;

  Model& m(const Napi::Env& env) {
    if (!model_) throw Napi::Error::New(env, "model was disposed");
    return *model_;
  }

  Napi::Value TensorTable(const Napi::CallbackInfo& info) {
    Model& mm = m(info.Env());
    auto arr = Napi::Array::New(info.Env(), mm.hfTensors.size());
    for (size_t i = 0; i < mm.hfTensors.size(); ++i) {
      const auto& t = mm.hfTensors[i];
      auto o = Napi::Object::New(info.Env());
      o.Set("name", t.name);
      auto shape = Napi::Array::New(info.Env(), t.shape.size());
      for (size_t k = 0; k < t.shape.size(); ++k) shape.Set(k, Napi::Number::New(info.Env(), t.shape[k]));
      o.Set("shape", shape);
      o.Set("offset", Napi::Number::New(info.Env(), t.offset));
      o.Set("numel", Napi::Number::New(info.Env(), t.numel));
      arr.Set(i, o);
    }
    return arr;
  }

  Napi::Value NumParameters(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), m(info.Env()).numParameters());
  }

  Napi::Value InitRandom(const Napi::CallbackInfo& info) {
    Model& mm = m(info.Env());
    std::lock_guard<std::mutex> g(mm.mu);
    mm.initRandom(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()), info[1].As<Napi::Number>().DoubleValue());
    return info.Env().Undefined();
  }

  // readTensors([{file, dtype, fileOffset, nbytes, target, offset, numel}])
  Napi::Value ReadTensors(const Napi::CallbackInfo& info) {
    auto model = model_;
    m(info.Env());
    auto arr = info[0].As<Napi::Array>();
    std::vector<mpo::ReadEntry> es;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto o = arr.Get(i).As<Napi::Object>();
      mpo::ReadEntry e;
      e.file = str(o, "file");
      e.dtype = str(o, "dtype");
      e.fileOffset = static_cast<int64_t>(num(o, "fileOffset", 0));
      e.nbytes = static_cast<int64_t>(num(o, "nbytes", 0));
      e.target = parseBuffer(str(o, "target", "param"));
      e.offset = static_cast<int64_t>(num(o, "offset", 0));
      e.numel = static_cast<int64_t>(num(o, "numel", 0));
      es.push_back(std::move(e));
    }
    return queue(info.Env(), [model, es] {
      std::lock_guard<std::mutex> g(model->mu);
      mpo::readTensors(*model, es);
    });
  }

  // writeSafetensors(path, header, [{source, offset, numel, dtype}])
  Napi::Value WriteSafetensors(const Napi::CallbackInfo& info) {
    auto model = model_;
    m(info.Env());
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    const std::string header = info[1].As<Napi::String>().Utf8Value();
    auto arr = info[2].As<Napi::Array>();
    std::vector<mpo::WriteEntry> es;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto o = arr.Get(i).As<Napi::Object>();
      mpo::WriteEntry e;
      e.source = parseBuffer(str(o, "source", "param"));
      e.offset = static_cast<int64_t>(num(o, "offset", 0));
      e.numel = static_cast<int64_t>(num(o, "numel", 0));
      e.dtype = str(o, "dtype", "F32");
      es.push_back(std::move(e));
    }
    return queue(info.Env(), [model, path, header, es] {
      std::lock_guard<std::mutex> g(model->mu);
      mpo::writeSafetensors(*model, path, header, es);
    });
  }

  // score(tokens: Int32Array, offsets: Float64Array, promptLens: Float64Array,
  //       {grad, lmHead, last, mean, meanUnmasked, reference?: NativeModel})
  Napi::Value Score(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = model_;
    m(env);
    auto req = std::make_shared<mpo::ScoreRequest>();
    req->tokens = vec<int32_t, int32_t>(info[0]);
    auto offs = vec<double, double>(info[1]);
    auto pls = vec<double, double>(info[2]);
    req->offsets.assign(offs.begin(), offs.end());
    req->promptLens.assign(pls.begin(), pls.end());
    auto o = info[3].As<Napi::Object>();
    req->grad = flag(o, "grad", false);
    req->lmHead = flag(o, "lmHead", true);
    req->poolLast = flag(o, "last", false);
    req->poolMean = flag(o, "mean", false);
    req->poolMeanUnmasked = flag(o, "meanUnmasked", false);
    req->adapters = flag(o, "adapters", true);  // [LoRA]
    std::shared_ptr<Model> ref;
    Napi::Value rv = o.Get("reference");
    if (rv.IsObject()) {
      ref = NativeModel::Unwrap(rv.As<Napi::Object>())->model_;
      if (!ref) throw Napi::Error::New(env, "reference model was disposed");
      req->ref = ref.get();
    }
    auto res = std::make_shared<mpo::ScoreResult>();
    return queue(
        env,
        [model, ref, req, res] {
          std::unique_lock<std::mutex> a(model->mu, std::defer_lock);
          if (ref && ref != model) {
            std::unique_lock<std::mutex> b(ref->mu, std::defer_lock);
            std::lock(a, b);
            *res = mpo::score(*model, *req);
          } else {
            a.lock();
            *res = mpo::score(*model, *req);
          }
        },
        [res](Napi::Env env) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("n", Napi::Number::New(env, res->n));
          o.Set("hiddenSize", Napi::Number::New(env, res->hidden));
          if (res->handle) o.Set("handle", Napi::Number::New(env, res->handle));
          o.Set("tokens", typed<int32_t, int32_t>(env, res->tokens));
          if (!res->sumLogp.empty() || res->n == 0) o.Set("sumLogp", typed<double, double>(env, res->sumLogp));
          if (!res->kl.empty()) o.Set("kl", typed<double, double>(env, res->kl));
          if (!res->last.empty()) o.Set("lastHidden", typed<float, float>(env, res->last));
          if (!res->mean.empty()) o.Set("meanHidden", typed<float, float>(env, res->mean));
          if (!res->meanUnmasked.empty()) o.Set("meanUnmaskedHidden", typed<float, float>(env, res->meanUnmasked));
          return o;
        });
  }

  // backward(handle, {sumLogp?: Float64Array, kl?: Float64Array, lastHidden?, meanHidden?, meanUnmaskedHidden?})
  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = model_;
    m(env);
    const int64_t id = info[0].As<Napi::Number>().Int64Value();
    auto o = info[1].As<Napi::Object>();
    auto g = std::make_shared<mpo::GradRequest>();
    g->sumLogp = vec<double, double>(o.Get("sumLogp"));
    g->kl = vec<double, double>(o.Get("kl"));
    g->last = vec<float, float>(o.Get("lastHidden"));
    g->mean = vec<float, float>(o.Get("meanHidden"));
    g->meanUnmasked = vec<float, float>(o.Get("meanUnmaskedHidden"));
    auto h = model->takeHandle(id);
    if (!h) throw Napi::Error::New(env, "backward: unknown or already used handle " + std::to_string(id));
    return queue(env, [model, h, g] {
      std::lock_guard<std::mutex> lk(model->mu);
      mpo::backward(*model, *h, *g);
    });
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    if (model_) model_->takeHandle(info[0].As<Napi::Number>().Int64Value());
    return info.Env().Undefined();
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    Model& mm = m(info.Env());
    std::lock_guard<std::mutex> g(mm.mu);
    mm.flatGrad.zero_();
    if (mm.hostGrad.defined()) mm.hostGrad.zero_();
    mm.hostGradDirty = false;
    return info.Env().Undefined();
  }

  // A Float32Array over `t`'s memory, owned by the array (the tensor stays alive while it is).
  static Napi::Float32Array external(Napi::Env env, const at::Tensor& t) {
    auto* keep = new at::Tensor(t);
    auto ab = Napi::ArrayBuffer::New(env, keep->data_ptr(), keep->numel() * sizeof(float),
                                     [](Napi::Env, void*, at::Tensor* k) { delete k; }, keep);
    return Napi::Float32Array::New(env, keep->numel(), ab, 0);
  }

  // A Uint16Array over a bf16 flat buffer (bf16 weight storage, CPU). Its ArrayBuffer covers the
  // even-length allocation (one padding element for an odd count), so it can be viewed as words.
  static Napi::Uint16Array externalBits(Napi::Env env, const at::Tensor& t) {
    auto* keep = new at::Tensor(t);
    const int64_t words = (keep->numel() + 1) / 2;
    auto ab = Napi::ArrayBuffer::New(env, keep->data_ptr(), words * 4,
                                     [](Napi::Env, void*, at::Tensor* k) { delete k; }, keep);
    return Napi::Uint16Array::New(env, keep->numel(), ab, 0);
  }
  static void needFp32(Napi::Env env, const Model& mm, const char* what) {
    if (mm.bf16Weights)
      throw Napi::Error::New(env, std::string(what) + ": the weights are stored in bf16 (use paramBits()/gradBits())");
  }

  // bf16 weight storage: the bf16 bits of the weights / gradients, zero-copy. After writing into
  // paramBits() call syncParams().
  Napi::Value ParamBits(const Napi::CallbackInfo& info) {
    return bitsView(info, "paramBits", &Model::flatParam, paramBitsRef_);
  }
  Napi::Value GradBits(const Napi::CallbackInfo& info) {
    return bitsView(info, "gradBits", &Model::flatGrad, gradBitsRef_);
  }
  // One view per buffer, made on first use and kept: the JS side holds on to it.
  Napi::Value bitsView(const Napi::CallbackInfo& info, const char* what, at::Tensor Model::*flat,
                       Napi::Reference<Napi::Uint16Array>& ref) {
    Napi::Env env = info.Env();
    Model& mm = m(env);
    if (!mm.bf16Weights) throw Napi::Error::New(env, std::string(what) + ": the weights are not stored in bf16");
    if (ref.IsEmpty()) ref = Napi::Persistent(externalBits(env, mm.*flat));
    return ref.Value();
  }

  // The flat gradient buffer. CPU: the gradients themselves (zero-copy). CUDA: a host mirror,
  // refreshed by this call; what JS writes into it is copied back before the next backward/step.
  Napi::Value GradBuffer(const Napi::CallbackInfo& info) {
    return hostView(info, "gradBuffer", &Model::flatGrad, gradRef_, [](Model& mm, Napi::Env env, auto& ref) {
      if (!mm.hostGrad.defined()) {
        mm.hostGrad = at::empty({mm.numParameters()}, at::TensorOptions().dtype(at::kFloat).pinned_memory(true));
        ref = Napi::Persistent(external(env, mm.hostGrad));
      }
      if (!mm.hostGradDirty) mm.hostGrad.copy_(mm.flatGrad);
      mm.hostGradDirty = true;
    });
  }

  // The flat fp32 parameters (master copy). CPU: zero-copy; call syncParams() after writing into it
  // when the compute dtype is not float32. CUDA: a host copy made by this call.
  Napi::Value ParamBuffer(const Napi::CallbackInfo& info) {
    return hostView(info, "paramBuffer", &Model::flatParam, paramRef_, [](Model& mm, Napi::Env env, auto& ref) {
      if (!mm.hostParam.defined()) {
        mm.hostParam = at::empty({mm.numParameters()}, at::kFloat);
        ref = Napi::Persistent(external(env, mm.hostParam));
      }
      mm.hostParam.copy_(mm.flatParam);
    });
  }
  // The fp32 buffer `flat` as JS sees it, under the model's lock: on CPU the tensor itself (one view, kept);
  // elsewhere `refreshHost` makes or refreshes the host copy and points `ref` at it.
  template <typename Refresh>
  Napi::Value hostView(const Napi::CallbackInfo& info, const char* what, at::Tensor Model::*flat,
                       Napi::Reference<Napi::Float32Array>& ref, Refresh refreshHost) {
    Napi::Env env = info.Env();
    Model& mm = m(env);
    needFp32(env, mm, what);
    std::lock_guard<std::mutex> g(mm.mu);
    if (mm.device.is_cpu()) {
      if (ref.IsEmpty()) ref = Napi::Persistent(external(env, mm.*flat));
      return ref.Value();
    }
    refreshHost(mm, env, ref);
    return ref.Value();
  }

  // After JS wrote into paramBuffer(): propagate to the compute copies (and to the device).
  Napi::Value SyncParams(const Napi::CallbackInfo& info) {
    Model& mm = m(info.Env());
    std::lock_guard<std::mutex> g(mm.mu);
    if (!mm.device.is_cpu() && mm.hostParam.defined()) mm.flatParam.copy_(mm.hostParam);
    mm.weightsChanged();
    return info.Env().Undefined();
  }

  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = model_;
    m(env);
    auto o = info[0].As<Napi::Object>();
    mpo::StepOptions so = adamwOptions(o);
    so.maxGradNorm = num(o, "maxGradNorm", so.maxGradNorm);
    so.gradScale = num(o, "gradScale", so.gradScale);
    if (!(so.gradScale > 0) || !std::isfinite(so.gradScale))
      throw Napi::RangeError::New(env, "step: gradScale must be a positive finite number");
    auto norm = std::make_shared<double>(0.0);
    return queue(
        env,
        [model, so, norm] {
          std::lock_guard<std::mutex> g(model->mu);
          *norm = mpo::adamwStep(*model, so);
        },
        [norm](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *norm); });
  }

  Napi::Value GradNorm(const Napi::CallbackInfo& info) {
    Model& mm = m(info.Env());
    std::lock_guard<std::mutex> g(mm.mu);
    return Napi::Number::New(info.Env(), mpo::gradNorm(mm));
  }

  Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(m(info.Env()).optStep));
  }
  Napi::Value SetOptimizerStep(const Napi::CallbackInfo& info) {
    Model& mm = m(info.Env());
    std::lock_guard<std::mutex> g(mm.mu);
    mpo::ensureOptimizerState(mm);
    mm.optStep = info[0].As<Napi::Number>().Int64Value();
    return info.Env().Undefined();
  }
  Napi::Value HasOptimizerState(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), m(info.Env()).expAvg.defined());
  }

  // generate(tokens: Int32Array, offsets: Float64Array, {maxNewTokens, eos: Int32Array, temperature, topP, seed, kvCache})
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = model_;
    m(env);
    auto req = std::make_shared<mpo::GenerateRequest>();
    auto toks = vec<int32_t, int32_t>(info[0]);
    auto offs = vec<double, double>(info[1]);
    for (size_t i = 0; i + 1 < offs.size(); ++i)
      req->prompts.emplace_back(toks.begin() + static_cast<int64_t>(offs[i]), toks.begin() + static_cast<int64_t>(offs[i + 1]));
    auto o = info[2].As<Napi::Object>();
    req->maxNewTokens = static_cast<int64_t>(num(o, "maxNewTokens", 0));
    auto eos = vec<int32_t, int32_t>(o.Get("eos"));
    req->eos.assign(eos.begin(), eos.end());
    req->temperature = num(o, "temperature", 0.0);
    req->topP = num(o, "topP", 1.0);
    req->seed = static_cast<uint64_t>(num(o, "seed", 0));
    req->kvCache = flag(o, "kvCache", true);
    auto out = std::make_shared<std::vector<std::vector<int64_t>>>();
    return queue(
        env,
        [model, req, out] {
          std::lock_guard<std::mutex> g(model->mu);
          *out = mpo::generate(*model, *req);
        },
        [out](Napi::Env env) -> Napi::Value {
          auto arr = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); ++i) {
            std::vector<int32_t> v((*out)[i].begin(), (*out)[i].end());
            arr.Set(i, typed<int32_t, int32_t>(env, v));
          }
          return arr;
        });
  }

  Napi::Value Logits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = model_;
    m(env);
    auto toks = std::make_shared<std::vector<int32_t>>(vec<int32_t, int32_t>(info[0]));
    auto out = std::make_shared<std::vector<float>>();
    return queue(
        env,
        [model, toks, out] {
          std::lock_guard<std::mutex> g(model->mu);
          *out = mpo::lastLogits(*model, *toks);
        },
        [out](Napi::Env env) -> Napi::Value { return typed<float, float>(env, *out); });
  }

  Napi::Value SetThreads(const Napi::CallbackInfo& info) {
    const int n = info[0].As<Napi::Number>().Int32Value();
    if (n < 1) throw Napi::RangeError::New(info.Env(), "threads must be >= 1");
    m(info.Env()).threads = n;
    return info.Env().Undefined();
  }

  // Activation checkpointing per decoder layer for later score({ grad: true }) calls.
  Napi::Value SetCheckpointing(const Napi::CallbackInfo& info) {
    m(info.Env()).checkpointLayers = info[0].As<Napi::Boolean>().Value();
    return info.Env().Undefined();
  }

  // --- [LoRA] (lora.h) ---------------------------------------------------------------------------
  // enableLora({rank, alpha, dropout, targets: string[], seed}): swaps the trainable buffers to the
  // adapters; the JS side re-reads tensorTable() and the buffers afterwards.
  Napi::Value EnableLora(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& mm = m(env);
    auto o = info[0].As<Napi::Object>();
    mpo::LoraOptions lo;
    lo.rank = static_cast<int64_t>(num(o, "rank", 0));
    lo.alpha = num(o, "alpha", 0);
    lo.dropout = num(o, "dropout", 0);
    lo.seed = static_cast<uint64_t>(num(o, "seed", 0));
    auto ts = o.Get("targets").As<Napi::Array>();
    for (uint32_t i = 0; i < ts.Length(); ++i) lo.targets.push_back(ts.Get(i).As<Napi::String>().Utf8Value());
    std::lock_guard<std::mutex> g(mm.mu);
    mm.releaseAll();
    try {
      mpo::enableLora(mm, lo);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    gradRef_.Reset();
    paramRef_.Reset();
    return env.Undefined();
  }

  // loraMergeInto(target: NativeModel): target <- base + adapters merged.
  Napi::Value LoraMergeInto(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& src = m(env);
    auto dst = NativeModel::Unwrap(info[0].As<Napi::Object>())->model_;
    if (!dst || dst.get() == &src) throw Napi::Error::New(env, "loraMergeInto: bad target model");
    std::scoped_lock g(src.mu, dst->mu);
    try {
      mpo::loraMergeInto(src, *dst);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return env.Undefined();
  }

  // setAdapterStep(n): the step that keys the dropout masks (lora.h).
  Napi::Value SetAdapterStep(const Napi::CallbackInfo& info) {
    Model& mm = m(info.Env());
    std::lock_guard<std::mutex> g(mm.mu);
    if (mm.lora) mm.lora->step = info[0].As<Napi::Number>().Int64Value();
    return info.Env().Undefined();
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (model_) {
      model_->releaseAll();
      model_.reset();  // running tasks hold their own reference; buffers handed to JS stay valid
    }
    return info.Env().Undefined();
  }
};

// ZeRO's optimizer over a shard (synchronous; the shard is 1/N of the model):
// sumSquaresBlocks(g: Float32Array, threads) -> Float64Array of per-block sums of squares;
// adamwShard(p, g, m, v: Float32Array, {lr, beta1, beta2, eps, weightDecay}, step, clip, threads).
Napi::Float32Array f32Arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Float32Array");
  return info[i].As<Napi::Float32Array>();
}

Napi::Value SumSquaresBlocks(const Napi::CallbackInfo& info) {
  auto g = f32Arg(info, 0, "sumSquaresBlocks: g");
  const int threads = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 1;
  const int64_t n = static_cast<int64_t>(g.ElementLength());
  auto out = Napi::Float64Array::New(info.Env(), static_cast<size_t>((n + mpo::kNormBlock - 1) / mpo::kNormBlock));
  mpo::sumSquaresBlocks(g.Data(), n, out.Data(), threads);
  return out;
}

Napi::Value AdamwShard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = f32Arg(info, 0, "adamwShard: p"), g = f32Arg(info, 1, "adamwShard: g");
  auto ma = f32Arg(info, 2, "adamwShard: m"), va = f32Arg(info, 3, "adamwShard: v");
  const size_t n = p.ElementLength();
  if (g.ElementLength() != n || ma.ElementLength() != n || va.ElementLength() != n)
    throw Napi::RangeError::New(env, "adamwShard: p, g, m and v must have the same length");
  if (info.Length() < 7 || !info[4].IsObject() || !info[5].IsNumber() || !info[6].IsNumber())
    throw Napi::TypeError::New(env, "adamwShard(p, g, m, v, options, step, clip, threads?)");
  const mpo::StepOptions so = adamwOptions(info[4].As<Napi::Object>());
  const int64_t step = info[5].As<Napi::Number>().Int64Value();
  if (step < 1) throw Napi::RangeError::New(env, "adamwShard: step must be >= 1");
  const int threads = info.Length() > 7 && info[7].IsNumber() ? info[7].As<Napi::Number>().Int32Value() : 1;
  mpo::adamwBuffers(p.Data(), g.Data(), ma.Data(), va.Data(), static_cast<int64_t>(n), so, step,
                    info[6].As<Napi::Number>().DoubleValue(), threads);
  return env.Undefined();
}

// gemmRate({ bf16, threads, m, n, k, transA, transB, seconds }) -> FLOP/s (blocks the JS thread:
// benchmarks only).
Napi::Value GemmRate(const Napi::CallbackInfo& info) {
  auto o = info[0].As<Napi::Object>();
  const bool bf16 = flag(o, "bf16", false);
  if (bf16 ? !mpo::haveBf16Gemm() : !mpo::haveGemm(static_cast<const float*>(nullptr)))
    throw Napi::Error::New(info.Env(), bf16 ? "no bf16 GEMM in this process" : "no sgemm in this process");
  const auto dim = [&](const char* k) { return static_cast<int64_t>(num(o, k, 0)); };
  if (dim("m") < 1 || dim("n") < 1 || dim("k") < 1) throw Napi::RangeError::New(info.Env(), "gemmRate: m, n, k must be >= 1");
  const double rate = mpo::gemmRate(bf16, static_cast<int>(num(o, "threads", 1)), dim("m"), dim("n"), dim("k"),
                                    flag(o, "transA", false), flag(o, "transB", false), num(o, "seconds", 0.2));
  return Napi::Number::New(info.Env(), rate);
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  const bool openblas = configureBlas();
  const bool mallocTuned = tuneMalloc();
  exports.Set("NativeModel", NativeModel::Init(env));
  exports.Set("sumSquaresBlocks", Napi::Function::New(env, SumSquaresBlocks));
  exports.Set("adamwShard", Napi::Function::New(env, AdamwShard));
  exports.Set("normBlock", Napi::Number::New(env, static_cast<double>(mpo::kNormBlock)));
  exports.Set("gemmRate", Napi::Function::New(env, GemmRate));
  auto features = Napi::Object::New(env);
  features.Set("openblasThreadsSet", Napi::Boolean::New(env, openblas));
  features.Set("blockedAttention", Napi::Boolean::New(env, mpo::blockedAttentionAvailable()));
  features.Set("mallocTuned", Napi::Boolean::New(env, mallocTuned));
  features.Set("gemm", Napi::String::New(env, mpo::gemmBackend()));
  features.Set("bf16Gemm", Napi::Boolean::New(env, mpo::haveBf16Gemm()));
  exports.Set("features", features);
  exports.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
  exports.Set("cudaBuild", Napi::Boolean::New(env,
#ifdef MPO_WITH_CUDA
                                              true
#else
                                              false
#endif
                                              ));
  // Visible CUDA devices at load time (0 on a CPU build, or when CUDA_VISIBLE_DEVICES hides them):
  // the worker agent offers GPU slots only when this and cudaBuild say it can use them.
  exports.Set("cudaDevices", Napi::Number::New(env, static_cast<double>(torch::cuda::device_count())));
  return exports;
}

}  // namespace

NODE_API_MODULE(mpo_engine, InitAddon)
