// Shared-memory collective group: ranks are processes on one host that join a POSIX shm segment by
// name. No Node-API here: this is the plain C++ core that the addon drives from a worker thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mpo {

constexpr int kMaxRanks = 64;

// Thrown for every failure. `culprit` is the rank the failure is attributed to (-1: none/unknown).
struct GroupError : std::runtime_error {
  int culprit;
  GroupError(const std::string& msg, int culprit_ = -1) : std::runtime_error(msg), culprit(culprit_) {}
};

struct GroupOptions {
  uint32_t timeoutMs = 60000;           // per wait: a peer that makes no progress for this long fails the call
  uint64_t smallBytes = 64 << 10;       // per-rank slot for the direct (small-message) path; x2 (double-buffered)
  uint64_t stagingBytes = 1 << 20;      // per-rank staging for reduce-scatter/all-gather rounds (3 slots)
  uint32_t spinUs = 50;                 // bounded spinning before sleeping on the futex
  uint32_t livenessMs = 5;              // how often a sleeping waiter checks that the awaited pid still lives
  const std::atomic<bool>* cancel = nullptr;  // set by the owner (another thread) to abandon waits
};

enum class ReduceOp : uint32_t { Sum = 0, Avg = 1 };
enum class Transport : uint32_t { F32 = 0, BF16 = 1 };

struct Header;
struct RankCtl;

class ShmGroup {
 public:
  // Joins (creating or opening) the group's segment and waits until all `world` ranks are there.
  ShmGroup(const std::string& name, int rank, int world, const GroupOptions& opts);
  ~ShmGroup();
  ShmGroup(const ShmGroup&) = delete;
  ShmGroup& operator=(const ShmGroup&) = delete;

  // In place over `count` floats at `data` (any host memory: a JS ArrayBuffer, libtorch storage...).
  void allReduce(float* data, uint64_t count, ReduceOp op, Transport transport);
  // ZeRO's two halves over contiguous shards: rank p owns [p*S, min((p+1)*S, count)) with
  // S = shardElems(count, world, 2^alignLog2). reduceScatter leaves the rank-order sum of all ranks'
  // `data` in my shard (the same bits allReduce gives there) and the rest of `data` untouched;
  // allGather copies every rank's shard into the others' `data`.
  void reduceScatter(float* data, uint64_t count, uint32_t alignLog2);
  void allGather(float* data, uint64_t count, uint32_t alignLog2);
  static uint64_t shardElems(uint64_t count, int world, uint64_t align);
  // Copies root's `bytes` bytes into every other rank's `data`.
  void broadcast(uint8_t* data, uint64_t bytes, int root);
  void barrier();
  // Leaves the group: marks this rank closed and unlinks the name if it is still linked. The
  // mapping itself is released by the destructor.
  void close();

  int rank() const { return rank_; }
  int world() const { return world_; }
  const std::string& name() const { return name_; }
  const std::string& shmName() const { return shmName_; }
  uint64_t segmentBytes() const { return segBytes_; }
  uint64_t chunkElems() const;  // per-rank piece of one reduce-scatter round (f32 elements)
  bool closed() const { return closed_; }

  static std::string shmNameFor(const std::string& group);

 private:
  // Joining, from the constructor: rank 0 creates the segment, the others attach to it, then every
  // rank registers and waits for the rest. `deadline` is on the monotonic clock, in ns.
  void create(uint64_t deadline);
  void attach(uint64_t deadline);
  bool attachSegment(uint64_t deadline);
  void join(uint64_t deadline);

  // Call protocol (every rank publishes the same number of steps per call).
  enum Kind : uint32_t { kAllReduce = 1, kBroadcast = 2, kBarrier = 3, kReduceScatter = 4, kAllGather = 5 };
  void beginCall(Kind kind, uint64_t count, uint32_t info);
  void checkArrivals(Kind kind, uint64_t count, uint32_t info);
  void endCall();
  void publish();
  void waitFor(int q, uint32_t target, const char* phase);
  void waitAll(uint32_t target, const char* phase);
  [[noreturn]] void fail(int culprit, const std::string& msg);
  [[noreturn]] void rethrowAbort();
  bool aborted() const;
  std::string peerDescription(int q, uint64_t nowNs) const;
  bool peerDead(int q) const;
  void wakeAll();
  void unlinkName();
  void unmap();
  void checkCancel() const;
  bool alone() const;  // world 1: collectives are no-ops (throws when closed)

  void smallAllReduce(float* data, uint64_t count, ReduceOp op, Transport t, uint32_t info);
  void largeAllReduce(float* data, uint64_t count, ReduceOp op, Transport t, uint32_t info);

  uint8_t* smallSlot(int r, uint32_t parity) const;
  uint8_t* staging(int r, uint32_t slot) const;
  RankCtl& ctl(int r) const;

  std::string name_, shmName_;
  int rank_, world_;
  GroupOptions opts_;
  uint8_t* base_ = nullptr;
  uint64_t segBytes_ = 0;
  uint64_t perRankBytes_ = 0, dataOff_ = 0;
  Header* hdr_ = nullptr;
  uint32_t seq_ = 0;         // my published step count (mirrors ctl(rank_).seq)
  uint32_t calls_ = 0;       // calls made (small-path parity)
  uint64_t rounds_ = 0;      // reduce-scatter rounds made (staging slot rotation; 64-bit: never wraps)
  bool closed_ = false;
};

// Process helpers exported by the addon.
void setAffinityAllThreads(const std::vector<int>& cores);  // throws std::runtime_error
std::vector<int> getAffinity();
void dieWithParent(int signal, int expectedParent);  // throws std::runtime_error

}  // namespace mpo
