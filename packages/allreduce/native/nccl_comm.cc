// NCCL communicator (compiled only where scripts/find-nccl.mjs finds nccl.h, libnccl and the CUDA
// runtime). Collectives run on the libuv pool (Napi::AsyncWorker) and are serialised per
// communicator by a mutex; the JS wrapper also chains them, so submission order is kept.
#include <cuda_runtime.h>
#include <nccl.h>
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <mutex>
#include <string>

namespace {

std::string cudaMsg(const char* what, cudaError_t e) { return std::string(what) + ": " + cudaGetErrorString(e); }
std::string ncclMsg(const char* what, ncclResult_t r) { return std::string(what) + ": " + ncclGetErrorString(r); }

#define CUDA_OK(x)                                    \
  do {                                                \
    cudaError_t e_ = (x);                             \
    if (e_ != cudaSuccess) throw std::runtime_error(cudaMsg(#x, e_)); \
  } while (0)
#define NCCL_OK(x)                                    \
  do {                                                \
    ncclResult_t r_ = (x);                            \
    if (r_ != ncclSuccess) throw std::runtime_error(ncclMsg(#x, r_)); \
  } while (0)

ncclRedOp_t redOp(uint32_t op) {
  if (op == 1) {
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= 21000
    return ncclAvg;
#else
    throw std::runtime_error("avg needs NCCL >= 2.10");
#endif
  }
  return ncclSum;
}

ncclDataType_t dataType(uint32_t dtype) {
  if (dtype == 1) {
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= 21000
    return ncclBfloat16;
#else
    throw std::runtime_error("bf16 needs NCCL >= 2.10");
#endif
  }
  return ncclFloat32;
}

class Task : public Napi::AsyncWorker {
 public:
  Task(Napi::Env env, std::function<void()> fn, Napi::Value keep)
      : Napi::AsyncWorker(env, "mpo.nccl"), fn_(std::move(fn)), deferred_(Napi::Promise::Deferred::New(env)) {
    if (!keep.IsEmpty() && !keep.IsUndefined()) keep_ = Napi::Persistent(keep.As<Napi::Object>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      fn_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::function<void()> fn_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
};

class NcclCommWrap : public Napi::ObjectWrap<NcclCommWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NcclComm",
                       {InstanceMethod<&NcclCommWrap::InitComm>("init"),
                        InstanceMethod<&NcclCommWrap::AllReduceDevice>("allReduceDevice"),
                        InstanceMethod<&NcclCommWrap::AllReduceHost>("allReduceHost"),
                        InstanceMethod<&NcclCommWrap::Destroy>("destroy")});
  }

  // new NcclComm(uniqueId: Uint8Array(128), rank, world, device)
  explicit NcclCommWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NcclCommWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsTypedArray())
      throw Napi::TypeError::New(env, "NcclComm(uniqueId: Uint8Array, rank, world, device)");
    auto id = info[0].As<Napi::Uint8Array>();
    if (id.ByteLength() != sizeof(ncclUniqueId))
      throw Napi::RangeError::New(env, "uniqueId must be " + std::to_string(sizeof(ncclUniqueId)) + " bytes");
    std::memcpy(&id_, id.Data(), sizeof id_);
    rank_ = info[1].As<Napi::Number>().Int32Value();
    world_ = info[2].As<Napi::Number>().Int32Value();
    device_ = info[3].As<Napi::Number>().Int32Value();
  }

  ~NcclCommWrap() override { Release(); }

 private:
  Napi::Value Run(Napi::Env env, std::function<void()> fn, Napi::Value keep = Napi::Value()) {
    auto* t = new Task(env, std::move(fn), keep);
    Napi::Promise p = t->Promise();
    t->Queue();
    return p;
  }

  Napi::Value InitComm(const Napi::CallbackInfo& info) {
    return Run(info.Env(), [this] {
      std::lock_guard<std::mutex> lk(mu_);
      if (comm_) return;
      CUDA_OK(cudaSetDevice(device_));
      CUDA_OK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      NCCL_OK(ncclCommInitRank(&comm_, world_, id_, rank_));
    });
  }

  void Need() {
    if (!comm_) throw std::runtime_error("NCCL communicator is not initialised (await init()) or was destroyed");
  }

  // allReduceDevice(ptr: bigint, count, dtype 0 f32 | 1 bf16, op 0 sum | 1 avg)
  Napi::Value AllReduceDevice(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool lossless = false;
    uint64_t ptr = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    size_t count = size_t(info[1].As<Napi::Number>().Int64Value());
    uint32_t dtype = info[2].As<Napi::Number>().Uint32Value();
    uint32_t op = info[3].As<Napi::Number>().Uint32Value();
    return Run(env, [this, ptr, count, dtype, op] {
      std::lock_guard<std::mutex> lk(mu_);
      Need();
      CUDA_OK(cudaSetDevice(device_));
      void* p = reinterpret_cast<void*>(uintptr_t(ptr));
      NCCL_OK(ncclAllReduce(p, p, count, dataType(dtype), redOp(op), comm_, stream_));
      CUDA_OK(cudaStreamSynchronize(stream_));
    });
  }

  // allReduceHost(buf: Float32Array, op): staged through a device scratch buffer.
  Napi::Value AllReduceHost(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto arr = info[0].As<Napi::Float32Array>();
    float* data = arr.Data();
    size_t count = arr.ElementLength();
    uint32_t op = info.Length() > 1 ? info[1].As<Napi::Number>().Uint32Value() : 0;
    return Run(
        env,
        [this, data, count, op] {
          std::lock_guard<std::mutex> lk(mu_);
          Need();
          CUDA_OK(cudaSetDevice(device_));
          size_t bytes = count * sizeof(float);
          if (bytes > scratchBytes_) {
            if (scratch_) CUDA_OK(cudaFree(scratch_));
            scratch_ = nullptr;
            scratchBytes_ = 0;
            CUDA_OK(cudaMalloc(&scratch_, bytes));
            scratchBytes_ = bytes;
          }
          CUDA_OK(cudaMemcpyAsync(scratch_, data, bytes, cudaMemcpyHostToDevice, stream_));
          NCCL_OK(ncclAllReduce(scratch_, scratch_, count, ncclFloat32, redOp(op), comm_, stream_));
          CUDA_OK(cudaMemcpyAsync(data, scratch_, bytes, cudaMemcpyDeviceToHost, stream_));
          CUDA_OK(cudaStreamSynchronize(stream_));
        },
        info[0]);
  }

  void Release() {
    std::lock_guard<std::mutex> lk(mu_);
    if (comm_) ncclCommDestroy(comm_);
    comm_ = nullptr;
    if (scratch_) cudaFree(scratch_);
    scratch_ = nullptr;
    scratchBytes_ = 0;
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  ncclUniqueId id_{};
  int rank_ = 0, world_ = 1, device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;
  size_t scratchBytes_ = 0;
  std::mutex mu_;
};

Napi::Value Version(const Napi::CallbackInfo& info) {
  int v = 0;
  ncclGetVersion(&v);
  return Napi::Number::New(info.Env(), v);
}

Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  return Napi::Number::New(info.Env(), n);
}

Napi::Value GetUniqueId(const Napi::CallbackInfo& info) {
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) throw Napi::Error::New(info.Env(), ncclMsg("ncclGetUniqueId", r));
  auto out = Napi::Uint8Array::New(info.Env(), sizeof id);
  std::memcpy(out.Data(), &id, sizeof id);
  return out;
}

Napi::Value DeviceAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dev = info[0].As<Napi::Number>().Int32Value();
  size_t bytes = size_t(info[1].As<Napi::Number>().Int64Value());
  void* p = nullptr;
  cudaError_t e = cudaSetDevice(dev);
  if (e == cudaSuccess) e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) throw Napi::Error::New(env, cudaMsg("cudaMalloc", e));
  return Napi::BigInt::New(env, uint64_t(uintptr_t(p)));
}

Napi::Value DeviceFree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool lossless;
  int dev = info[0].As<Napi::Number>().Int32Value();
  void* p = reinterpret_cast<void*>(uintptr_t(info[1].As<Napi::BigInt>().Uint64Value(&lossless)));
  cudaSetDevice(dev);
  cudaError_t e = cudaFree(p);
  if (e != cudaSuccess) throw Napi::Error::New(env, cudaMsg("cudaFree", e));
  return env.Undefined();
}

Napi::Value Copy(const Napi::CallbackInfo& info, bool toDevice) {
  Napi::Env env = info.Env();
  bool lossless;
  int dev = info[0].As<Napi::Number>().Int32Value();
  Napi::TypedArray view = (toDevice ? info[2] : info[1]).As<Napi::TypedArray>();
  void* dptr = reinterpret_cast<void*>(uintptr_t((toDevice ? info[1] : info[2]).As<Napi::BigInt>().Uint64Value(&lossless)));
  void* host = static_cast<uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
  cudaError_t e = cudaSetDevice(dev);
  if (e == cudaSuccess)
    e = toDevice ? cudaMemcpy(dptr, host, view.ByteLength(), cudaMemcpyHostToDevice)
                 : cudaMemcpy(host, dptr, view.ByteLength(), cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) throw Napi::Error::New(env, cudaMsg("cudaMemcpy", e));
  return env.Undefined();
}

Napi::Value CopyToDevice(const Napi::CallbackInfo& info) { return Copy(info, true); }
Napi::Value CopyFromDevice(const Napi::CallbackInfo& info) { return Copy(info, false); }

}  // namespace

void InitNccl(Napi::Env env, Napi::Object exports) {
  Napi::Object n = Napi::Object::New(env);
  n.Set("NcclComm", NcclCommWrap::Init(env));
  n.Set("version", Napi::Function::New<Version>(env, "version"));
  n.Set("deviceCount", Napi::Function::New<DeviceCount>(env, "deviceCount"));
  n.Set("getUniqueId", Napi::Function::New<GetUniqueId>(env, "getUniqueId"));
  n.Set("deviceAlloc", Napi::Function::New<DeviceAlloc>(env, "deviceAlloc"));
  n.Set("deviceFree", Napi::Function::New<DeviceFree>(env, "deviceFree"));
  n.Set("copyToDevice", Napi::Function::New<CopyToDevice>(env, "copyToDevice"));
  n.Set("copyFromDevice", Napi::Function::New<CopyFromDevice>(env, "copyFromDevice"));
  exports.Set("nccl", n);
}
