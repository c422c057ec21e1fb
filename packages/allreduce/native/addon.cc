// Node-API binding of the shared-memory group. Every collective of a group runs on that group's own
// worker thread, in submission order; completion comes back to the event loop through a
// thread-safe function. The event loop never blocks, and the libuv pool is never tied up by a
// collective that waits for a slow peer.
#include <napi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "shm_group.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MPO_RELAX() _mm_pause()
#else
#define MPO_RELAX() std::atomic_signal_fence(std::memory_order_seq_cst)
#endif

#ifdef MPO_WITH_NCCL
void InitNccl(Napi::Env env, Napi::Object exports);
#endif

namespace {

struct Job {
  enum Type { Join, AllReduce, ReduceScatter, AllGather, Broadcast, Barrier, Close } type;
  float* f32 = nullptr;
  uint8_t* bytes = nullptr;
  uint64_t count = 0;
  mpo::ReduceOp op = mpo::ReduceOp::Sum;
  mpo::Transport transport = mpo::Transport::F32;
  int root = 0;
  napi_ref keep = nullptr;  // keeps the buffer alive until completion
  napi_deferred deferred = nullptr;
  bool ok = true;
  std::string error;
  int culprit = -1;
};

uint32_t optU32(const Napi::Object& o, const char* key, uint32_t dflt) {
  if (!o.Has(key)) return dflt;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 4294967295.0) throw Napi::RangeError::New(o.Env(), std::string(key) + " out of range");
  return uint32_t(d);
}

uint64_t optU64(const Napi::Object& o, const char* key, uint64_t dflt) {
  if (!o.Has(key)) return dflt;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0) throw Napi::RangeError::New(o.Env(), std::string(key) + " out of range");
  return uint64_t(d);
}

class GroupWrap : public Napi::ObjectWrap<GroupWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ShmGroup",
                       {
                           InstanceMethod<&GroupWrap::Join>("join"),
                           InstanceMethod<&GroupWrap::AllReduce>("allReduce"),
                           InstanceMethod<&GroupWrap::ReduceScatter>("reduceScatter"),
                           InstanceMethod<&GroupWrap::AllGather>("allGather"),
                           InstanceMethod<&GroupWrap::Broadcast>("broadcast"),
                           InstanceMethod<&GroupWrap::Barrier>("barrier"),
                           InstanceMethod<&GroupWrap::Close>("close"),
                           InstanceMethod<&GroupWrap::Info>("info"),
                       });
  }

  // new ShmGroup(name, rank, world, { timeoutMs, smallBytes, stagingBytes, spinUs, livenessMs, workerSpinUs })
  explicit GroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GroupWrap>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber())
      throw Napi::TypeError::New(env, "ShmGroup(name: string, rank: number, world: number, options?)");
    name_ = info[0].As<Napi::String>().Utf8Value();
    rank_ = info[1].As<Napi::Number>().Int32Value();
    world_ = info[2].As<Napi::Number>().Int32Value();
    if (info.Length() > 3 && info[3].IsObject()) {
      Napi::Object o = info[3].As<Napi::Object>();
      opts_.timeoutMs = optU32(o, "timeoutMs", opts_.timeoutMs);
      opts_.smallBytes = optU64(o, "smallBytes", opts_.smallBytes);
      opts_.stagingBytes = optU64(o, "stagingBytes", opts_.stagingBytes);
      opts_.spinUs = optU32(o, "spinUs", opts_.spinUs);
      opts_.livenessMs = optU32(o, "livenessMs", opts_.livenessMs);
      workerSpinUs_ = optU32(o, "workerSpinUs", workerSpinUs_);
    }
    opts_.cancel = &cancel_;
    napi_value resource;
    napi_create_string_utf8(env, "mpo.allreduce", NAPI_AUTO_LENGTH, &resource);
    napi_status st = napi_create_threadsafe_function(env, nullptr, nullptr, resource, 0, 1, nullptr, nullptr, this,
                                                     &GroupWrap::CallJs, &tsfn_);
    if (st != napi_ok) throw Napi::Error::New(env, "napi_create_threadsafe_function failed");
    napi_unref_threadsafe_function(env, tsfn_);  // referenced only while calls are pending
    napi_add_env_cleanup_hook(env, &GroupWrap::CleanupHook, this);
    thread_ = std::thread([this] { WorkerLoop(); });
  }

  ~GroupWrap() override {
    if (!hookRan_) napi_remove_env_cleanup_hook(env_, &GroupWrap::CleanupHook, this);
    Shutdown();
  }

 private:
  static void CleanupHook(void* arg) {
    auto* self = static_cast<GroupWrap*>(arg);
    self->hookRan_ = true;
    self->Shutdown();
  }

  // Stops the worker (abandoning a wait in progress), then leaves the group.
  void Shutdown() {
    if (thread_.joinable()) {
      cancel_.store(true);
      {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
      }
      cv_.notify_all();
      thread_.join();
    }
    for (Job* j : queue_) delete j;
    queue_.clear();
    group_.reset();
    if (tsfn_) {
      napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);
      tsfn_ = nullptr;
    }
  }

  Napi::Value Enqueue(Napi::Env env, std::unique_ptr<Job> job, napi_value keep) {
    napi_value promise;
    napi_create_promise(env, &job->deferred, &promise);
    if (closing_ || !tsfn_) {
      Napi::Error err = Napi::Error::New(env, "group '" + name_ + "' is closed");
      err.Set("code", Napi::String::New(env, "MPO_ALLREDUCE_CLOSED"));
      napi_reject_deferred(env, job->deferred, err.Value());
      return Napi::Value(env, promise);
    }
    if (keep) napi_create_reference(env, keep, 1, &job->keep);
    if (job->type == Job::Close) closing_ = true;
    Ref();  // keep the wrapper (and so the worker) alive until the job completes
    if (pending_++ == 0) napi_ref_threadsafe_function(env, tsfn_);
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(job.release());
      queued_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_one();
    return Napi::Value(env, promise);
  }

  void WorkerLoop() {
    for (;;) {
      if (workerSpinUs_ && queued_.load(std::memory_order_acquire) == 0) {
        // Back-to-back calls: a short spin avoids a futex sleep/wake pair between two calls.
        auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(workerSpinUs_);
        for (int i = 0; queued_.load(std::memory_order_acquire) == 0; ++i) {
          MPO_RELAX();
          if ((i & 31) == 31 && (std::chrono::steady_clock::now() >= end || cancel_.load())) break;
        }
      }
      Job* job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        job = queue_.front();
        queue_.pop_front();
        queued_.fetch_sub(1, std::memory_order_relaxed);
      }
      Run(job);
      const bool last = job->type == Job::Close;
      napi_call_threadsafe_function(tsfn_, job, napi_tsfn_nonblocking);
      if (last) return;
    }
  }

  void Run(Job* job) {
    try {
      if (job->type != Job::Join && job->type != Job::Close && !group_)
        throw mpo::GroupError("group '" + name_ + "' has not been joined (call join() first and await it)");
      switch (job->type) {
        case Job::Join:
          if (group_) throw mpo::GroupError("group '" + name_ + "' is already joined");
          group_ = std::make_unique<mpo::ShmGroup>(name_, rank_, world_, opts_);
          break;
        case Job::AllReduce:
          group_->allReduce(job->f32, job->count, job->op, job->transport);
          break;
        case Job::ReduceScatter:
          group_->reduceScatter(job->f32, job->count, uint32_t(job->root));
          break;
        case Job::AllGather:
          group_->allGather(job->f32, job->count, uint32_t(job->root));
          break;
        case Job::Broadcast:
          group_->broadcast(job->bytes, job->count, job->root);
          break;
        case Job::Barrier:
          group_->barrier();
          break;
        case Job::Close:
          if (group_) group_->close();
          break;
      }
    } catch (const mpo::GroupError& e) {
      job->ok = false;
      job->error = e.what();
      job->culprit = e.culprit;
    } catch (const std::exception& e) {
      job->ok = false;
      job->error = e.what();
    }
  }

  static void CallJs(napi_env env, napi_value, void* context, void* data) {
    auto* self = static_cast<GroupWrap*>(context);
    std::unique_ptr<Job> job(static_cast<Job*>(data));
    if (!env) return;  // environment is going away
    Napi::HandleScope scope(env);
    if (job->keep) napi_delete_reference(env, job->keep);
    if (job->ok && job->type == Job::Join) self->joined_ = true;
    if (job->ok) {
      napi_value undef;
      napi_get_undefined(env, &undef);
      napi_resolve_deferred(env, job->deferred, undef);
    } else {
      Napi::Error err = Napi::Error::New(env, job->error);
      err.Set("code", Napi::String::New(env, "MPO_ALLREDUCE"));
      if (job->culprit >= 0) err.Set("rank", Napi::Number::New(env, job->culprit));
      napi_reject_deferred(env, job->deferred, err.Value());
    }
    if (job->type == Job::Close) {
      if (self->thread_.joinable()) self->thread_.join();  // it returned right after this job
      self->group_.reset();                                // unmap
      if (self->tsfn_) {
        napi_release_threadsafe_function(self->tsfn_, napi_tsfn_release);
        self->tsfn_ = nullptr;
      }
    } else if (--self->pending_ == 0 && self->tsfn_) {
      napi_unref_threadsafe_function(env, self->tsfn_);
    }
    self->Unref();
  }

  Napi::Value Join(const Napi::CallbackInfo& info) {
    auto job = std::make_unique<Job>();
    job->type = Job::Join;
    return Enqueue(info.Env(), std::move(job), nullptr);
  }

  // allReduce(buf: Float32Array, op: 0 sum | 1 avg, transport: 0 f32 | 1 bf16)
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(env, "allReduce expects a Float32Array");
    auto arr = info[0].As<Napi::Float32Array>();
    auto job = std::make_unique<Job>();
    job->type = Job::AllReduce;
    job->f32 = arr.Data();
    job->count = arr.ElementLength();
    uint32_t op = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
    uint32_t tr = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
    if (op > 1) throw Napi::RangeError::New(env, "op must be 0 (sum) or 1 (avg)");
    if (tr > 1) throw Napi::RangeError::New(env, "transport must be 0 (f32) or 1 (bf16)");
    job->op = mpo::ReduceOp(op);
    job->transport = mpo::Transport(tr);
    return Enqueue(env, std::move(job), info[0]);
  }

  // reduceScatter / allGather(buf: Float32Array, alignLog2): contiguous shards (see shm_group.h)
  Napi::Value ShardJob(const Napi::CallbackInfo& info, Job::Type type, const char* name) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !info[1].IsNumber())
      throw Napi::TypeError::New(env, std::string(name) + "(buf: Float32Array, alignLog2: number)");
    const uint32_t alignLog2 = info[1].As<Napi::Number>().Uint32Value();
    if (alignLog2 > 30) throw Napi::RangeError::New(env, std::string(name) + ": alignLog2 must be 0..30");
    auto arr = info[0].As<Napi::Float32Array>();
    auto job = std::make_unique<Job>();
    job->type = type;
    job->f32 = arr.Data();
    job->count = arr.ElementLength();
    job->root = int(alignLog2);
    return Enqueue(env, std::move(job), info[0]);
  }
  Napi::Value ReduceScatter(const Napi::CallbackInfo& info) { return ShardJob(info, Job::ReduceScatter, "reduceScatter"); }
  Napi::Value AllGather(const Napi::CallbackInfo& info) { return ShardJob(info, Job::AllGather, "allGather"); }

  // broadcast(buf: TypedArray | Buffer, root)
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber())
      throw Napi::TypeError::New(env, "broadcast(buf: TypedArray, root: number)");
    auto arr = info[0].As<Napi::TypedArray>();
    auto job = std::make_unique<Job>();
    job->type = Job::Broadcast;
    job->bytes = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    job->count = arr.ByteLength();
    job->root = info[1].As<Napi::Number>().Int32Value();
    return Enqueue(env, std::move(job), info[0]);
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    auto job = std::make_unique<Job>();
    job->type = Job::Barrier;
    return Enqueue(info.Env(), std::move(job), nullptr);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closing_) {  // idempotent
      napi_deferred d;
      napi_value p, undef;
      napi_create_promise(env, &d, &p);
      napi_get_undefined(env, &undef);
      napi_resolve_deferred(env, d, undef);
      return Napi::Value(env, p);
    }
    auto job = std::make_unique<Job>();
    job->type = Job::Close;
    return Enqueue(env, std::move(job), nullptr);
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", name_);
    o.Set("shmName", mpo::ShmGroup::shmNameFor(name_));
    o.Set("rank", rank_);
    o.Set("world", world_);
    o.Set("closed", closing_);
    o.Set("timeoutMs", opts_.timeoutMs);
    o.Set("smallBytes", double(opts_.smallBytes));
    o.Set("stagingBytes", double(opts_.stagingBytes));
    if (joined_ && !closing_) {  // group_ was set by the worker before the join promise resolved
      o.Set("segmentBytes", double(group_->segmentBytes()));
      o.Set("chunkElems", double(group_->chunkElems()));
    }
    return o;
  }

  napi_env env_;
  std::string name_;
  int rank_ = 0, world_ = 1;
  mpo::GroupOptions opts_;
  uint32_t workerSpinUs_ = 0;
  std::unique_ptr<mpo::ShmGroup> group_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};
  std::atomic<int> queued_{0};
  napi_threadsafe_function tsfn_ = nullptr;
  int pending_ = 0;  // main thread only
  bool closing_ = false;
  bool joined_ = false;  // main thread: the join job succeeded
  bool hookRan_ = false;
};

Napi::Value SetAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "setAffinity(cores: number[])");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<int> cores;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, "setAffinity: cores must be numbers");
    cores.push_back(v.As<Napi::Number>().Int32Value());
  }
  try {
    mpo::setAffinityAllThreads(cores);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
}

Napi::Value GetAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int> cores;
  try {
    cores = mpo::getAffinity();
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  Napi::Array a = Napi::Array::New(env, cores.size());
  for (size_t i = 0; i < cores.size(); ++i) a.Set(uint32_t(i), cores[i]);
  return a;
}

// dieWithParent(signal = SIGKILL, expectedParentPid = 0)
Napi::Value DieWithParent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sig = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 9;
  int parent = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  try {
    mpo::dieWithParent(sig, parent);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
}

Napi::Value ShmNameFor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "shmNameFor(group: string)");
  return Napi::String::New(env, mpo::ShmGroup::shmNameFor(info[0].As<Napi::String>().Utf8Value()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("ShmGroup", GroupWrap::Init(env));
  exports.Set("setAffinity", Napi::Function::New<SetAffinity>(env, "setAffinity"));
  exports.Set("getAffinity", Napi::Function::New<GetAffinity>(env, "getAffinity"));
  exports.Set("dieWithParent", Napi::Function::New<DieWithParent>(env, "dieWithParent"));
  exports.Set("shmNameFor", Napi::Function::New<ShmNameFor>(env, "shmNameFor"));
  exports.Set("maxRanks", Napi::Number::New(env, mpo::kMaxRanks));
#ifdef MPO_WITH_NCCL
  exports.Set("hasNccl", Napi::Boolean::New(env, true));
  InitNccl(env, exports);
#else
  exports.Set("hasNccl", Napi::Boolean::New(env, false));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(mpo_allreduce, Init)
