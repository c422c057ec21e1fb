// Shared-memory all-reduce across processes of one host.
//
// Segment layout (one POSIX shm object per group, "/mpo-ar-<group>"):
//   [Header: parameters, abort record, one 128-byte RankCtl per rank]
//   per rank: [small slot, parity 0][small slot, parity 1][staging slot 0][slot 1][slot 2]
//
// Every rank owns one monotonically increasing 32-bit step counter (RankCtl::seq, also its futex
// word). All ranks publish the same sequence of steps for the same sequence of calls, so "rank q has
// reached my step s" is the only synchronisation needed. A waiter spins for a bounded time and then
// sleeps in FUTEX_WAIT on q's counter (shared futex: the key is the shm page, not the address); the
// publisher issues FUTEX_WAKE only when q's waiter count is non-zero. Sleeps are sliced (livenessMs)
// so that a sleeping waiter notices a dead peer (kill(pid, 0) / zombie state), a closed peer, another
// rank's abort, or its own timeout.
//
// Small messages (count * elemBytes <= smallBytes): every rank copies its buffer into its slot of
// the current parity, publishes, waits for all, then sums all slots in rank order into its buffer.
// Double-buffered slots make one step per call enough: a rank writes parity p again only in call
// k+2, after every rank has arrived at call k+1, i.e. finished reading call k.
//
// Large messages: rounds over windows of world*C elements (C = chunkElems). In each window rank p
// owns piece p. Round j on every rank: (A) copy every foreign piece of window j into my staging
// slot j%3 and publish; wait for everybody's A(j); sum piece `rank` over ranks in rank order
// (peers' staging and my own buffer) into my buffer and my staging, publish B(j); then already
// copy in window j+1 and publish A(j+1); then collect each peer's finished piece of window j as
// soon as that peer has published B(j). Starting round j+1 before collecting round j hides the
// peers' reduce time; three slots make it safe: slot (j+1)%3 was last read in round j-2, and
// every peer finished that before its B(j-1), which this rank already waited for.
// Summation order is always rank 0..n-1 and each piece is computed once, so every rank ends with
// bit-identical results.
#include "shm_group.h"

#include "process_util.h"
#include "reduce_kernels.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MPO_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define MPO_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define MPO_CPU_RELAX() std::atomic_signal_fence(std::memory_order_seq_cst)
#endif

namespace mpo {

namespace {

constexpr uint64_t kMagic = 0x314d53524f504d4dULL;  // "MMPORSM1"
constexpr uint32_t kVersion = 3;
constexpr uint32_t kStateEmpty = 0, kStateJoined = 1, kStateClosed = 2;
constexpr uint64_t kAlign = 4096;
constexpr uint32_t kSlots = 3;   // staging slots per rank: rounds j, j+1 in flight, j-1 still being read

uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ULL + uint64_t(ts.tv_nsec);
}

bool reached(uint32_t v, uint32_t target) { return int32_t(v - target) >= 0; }

long futexWait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeoutNs) {
  timespec ts{time_t(timeoutNs / 1000000000ULL), long(timeoutNs % 1000000000ULL)};
  // Shared (non-private) futex: the words live in a MAP_SHARED mapping used by several processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

std::string fmtMs(uint64_t ns) {
  char b[64];
  if (ns >= 10000000000ULL)
    std::snprintf(b, sizeof b, "%.0f s", double(ns) / 1e9);
  else if (ns >= 1000000000ULL)
    std::snprintf(b, sizeof b, "%.1f s", double(ns) / 1e9);
  else
    std::snprintf(b, sizeof b, "%.0f ms", double(ns) / 1e6);
  return b;
}

}  // namespace

// ---- shared layout --------------------------------------------------------------------------

struct alignas(128) RankCtl {
  std::atomic<uint32_t> seq;      // futex word: steps published by this rank
  std::atomic<uint32_t> waiters;  // ranks sleeping on `seq`
  std::atomic<int32_t> pid;
  std::atomic<uint32_t> state;
  std::atomic<uint64_t> count[2];  // per call parity: element count / byte count of the call
  std::atomic<uint32_t> info[2];   // per call parity: kind | op | transport | root
  std::atomic<uint32_t> callNo;    // calls completed
  std::atomic<uint32_t> inCall;    // 1 while inside a call
  std::atomic<uint64_t> lastActiveNs;  // heartbeat: call entry/exit and while waiting
};

struct Header {
  uint64_t magic;
  uint32_t version;
  uint32_t world;
  uint64_t smallBytes;
  uint64_t stagingBytes;
  uint64_t segBytes;
  std::atomic<int32_t> creatorPid;
  std::atomic<uint32_t> ready;
  std::atomic<uint32_t> nameUnlinked;
  std::atomic<uint32_t> abortState;  // 0 none, 1 being written, 2 written
  std::atomic<int32_t> abortRank;
  std::atomic<int32_t> abortReporter;
  char abortMsg[1024];
  RankCtl ranks[kMaxRanks];
};

static_assert(std::atomic<uint32_t>::is_always_lock_free, "need lock-free 32-bit atomics");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "need lock-free 64-bit atomics");

// ---- ShmGroup --------------------------------------------------------------------------------

std::string ShmGroup::shmNameFor(const std::string& group) { return "/mpo-ar-" + group; }

RankCtl& ShmGroup::ctl(int r) const { return hdr_->ranks[r]; }

uint8_t* ShmGroup::smallSlot(int r, uint32_t parity) const {
  return base_ + dataOff_ + uint64_t(r) * perRankBytes_ + parity * opts_.smallBytes;
}

uint8_t* ShmGroup::staging(int r, uint32_t slot) const {
  return base_ + dataOff_ + uint64_t(r) * perRankBytes_ + alignUp(2 * opts_.smallBytes, kAlign) +
         slot * (opts_.stagingBytes / kSlots);
}

uint64_t ShmGroup::chunkElems() const {
  // f32 elements per piece of one round (bf16 fits twice as many in the same bytes).
  return (opts_.stagingBytes / kSlots) / (uint64_t(world_) * 4) / 16 * 16;
}

namespace {

// Sleeps `backoffUs` and doubles it, up to 5 ms: polling for a segment or for peers to join.
void backoffPause(uint64_t& backoffUs) {
  std::this_thread::sleep_for(std::chrono::microseconds(backoffUs));
  backoffUs = std::min<uint64_t>(backoffUs * 2, 5000);
}

}  // namespace

ShmGroup::ShmGroup(const std::string& name, int rank, int world, const GroupOptions& opts)
    : name_(name), shmName_(shmNameFor(name)), rank_(rank), world_(world), opts_(opts) {
  if (name.empty() || name.size() > 200)
    throw GroupError("group name must be 1..200 characters, got " + std::to_string(name.size()));
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      throw GroupError("group name '" + name + "' may only contain [A-Za-z0-9._-]");
  }
  if (world < 1 || world > kMaxRanks)
    throw GroupError("world size must be 1.." + std::to_string(kMaxRanks) + ", got " + std::to_string(world));
  if (rank < 0 || rank >= world)
    throw GroupError("rank " + std::to_string(rank) + " out of range for world size " + std::to_string(world));
  if (opts_.timeoutMs == 0) opts_.timeoutMs = 1;
  if (opts_.livenessMs == 0) opts_.livenessMs = 1;
  opts_.smallBytes = std::max<uint64_t>(alignUp(opts_.smallBytes, 64), 64);
  // kSlots slots, each holding one 64-byte-aligned piece per rank
  const uint64_t unit = uint64_t(world) * 64 * kSlots;
  opts_.stagingBytes = std::max<uint64_t>(opts_.stagingBytes, unit) / unit * unit;
  if (world == 1) return;  // a group of one needs no shared memory: every collective is the identity

  dataOff_ = alignUp(sizeof(Header), kAlign);
  perRankBytes_ = alignUp(2 * opts_.smallBytes, kAlign) + alignUp(opts_.stagingBytes, kAlign);
  segBytes_ = dataOff_ + uint64_t(world) * perRankBytes_;

  const uint64_t deadline = nowNs() + uint64_t(opts_.timeoutMs) * 1000000ULL;
  if (rank == 0)
    create(deadline);
  else
    attach(deadline);
  join(deadline);
  // Everybody has the segment mapped: the name is no longer needed. Unlinking it now means that no
  // crash from here on can leave anything under /dev/shm.
  if (rank_ == 0) unlinkName();
}

// Rank 0: a fresh segment under the group's name (a leftover of a crashed run is unlinked; a live
// group of that name is an error), sized, mapped, and its header written, `ready` last.
void ShmGroup::create(uint64_t deadline) {
  const pid_t self = getpid();
  int fd;
  for (;;) {
    fd = shm_open(shmName_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd >= 0) break;
    if (errno != EEXIST) throw GroupError(sysError("shm_open(" + shmName_ + ")"));
    // A segment of this name exists: a leftover of a crashed run (unlink it) or a live group.
    int fd2 = shm_open(shmName_.c_str(), O_RDWR, 0);
    if (fd2 < 0) {
      if (errno == ENOENT) continue;
      throw GroupError(sysError("shm_open(" + shmName_ + ")"));
    }
    struct stat st;
    int32_t livePid = 0;
    if (fstat(fd2, &st) == 0 && uint64_t(st.st_size) >= sizeof(Header)) {
      void* p = mmap(nullptr, sizeof(Header), PROT_READ, MAP_SHARED, fd2, 0);
      if (p != MAP_FAILED) {
        auto* h = static_cast<Header*>(p);
        int32_t owner = h->creatorPid.load();
        if (h->magic == kMagic && owner != self && pidAlive(owner)) livePid = owner;
        munmap(p, sizeof(Header));
      }
    }
    ::close(fd2);
    if (livePid != 0)
      throw GroupError("group '" + name_ + "' is already in use by a live group (rank 0 is pid " +
                       std::to_string(livePid) + "); use a distinct group name per job");
    shm_unlink(shmName_.c_str());  // stale: its rank 0 is gone
    if (nowNs() > deadline) throw GroupError("could not create shm segment " + shmName_);
  }
  if (ftruncate(fd, off_t(segBytes_)) != 0) {
    int e = errno;
    ::close(fd);
    shm_unlink(shmName_.c_str());
    errno = e;
    throw GroupError(sysError("ftruncate(" + shmName_ + ", " + std::to_string(segBytes_) + ")"));
  }
  void* p = mmap(nullptr, segBytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(shmName_.c_str());
    throw GroupError(sysError("mmap(" + shmName_ + ")"));
  }
  base_ = static_cast<uint8_t*>(p);
  hdr_ = reinterpret_cast<Header*>(base_);
  hdr_->version = kVersion;
  hdr_->world = uint32_t(world_);
  hdr_->smallBytes = opts_.smallBytes;
  hdr_->stagingBytes = opts_.stagingBytes;
  hdr_->segBytes = segBytes_;
  hdr_->creatorPid.store(self);
  hdr_->magic = kMagic;
  hdr_->ready.store(1, std::memory_order_release);
}

// Other ranks: maps rank 0's segment once it is ready and its creator lives, then checks that its
// parameters are this rank's (attachSegment, one try).
void ShmGroup::attach(uint64_t deadline) {
  uint64_t backoff = 100;
  for (;;) {
    if (nowNs() > deadline)
      throw GroupError("timed out after " + std::to_string(opts_.timeoutMs) +
                           " ms waiting for rank 0 to create group '" + name_ + "' (" + shmName_ + ")",
                       0);
    checkCancel();
    if (attachSegment(deadline)) return;
    backoffPause(backoff);
  }
}

// One try at rank 0's segment: false when it is not there or not ready yet (or a dead creator's
// leftover); throws when its parameters differ from this rank's.
bool ShmGroup::attachSegment(uint64_t deadline) {
  int fd = shm_open(shmName_.c_str(), O_RDWR, 0);
  if (fd < 0) {
    if (errno != ENOENT) throw GroupError(sysError("shm_open(" + shmName_ + ")"));
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || uint64_t(st.st_size) < sizeof(Header)) {
    ::close(fd);
    return false;
  }
  void* p = mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw GroupError(sysError("mmap(" + shmName_ + ")"));
  auto* h = static_cast<Header*>(p);
  const uint64_t mapped = uint64_t(st.st_size);
  bool ok = false;
  // rank 0 sets `ready` right after sizing the segment; a segment whose creator is dead is a
  // leftover that the live rank 0 is about to replace.
  while (nowNs() < deadline) {
    checkCancel();
    if (h->ready.load(std::memory_order_acquire) == 1) {
      ok = pidAlive(h->creatorPid.load());
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  if (!ok) {
    munmap(p, mapped);
    return false;
  }
  if (h->magic != kMagic || h->version != kVersion || h->world != uint32_t(world_) ||
      h->smallBytes != opts_.smallBytes || h->stagingBytes != opts_.stagingBytes || h->segBytes != segBytes_ ||
      mapped != segBytes_) {
    std::ostringstream os;
    os << "group '" << name_ << "' parameters differ from rank 0's: rank 0 has world=" << h->world
       << " smallBytes=" << h->smallBytes << " stagingBytes=" << h->stagingBytes << ", rank " << rank_
       << " has world=" << world_ << " smallBytes=" << opts_.smallBytes << " stagingBytes=" << opts_.stagingBytes;
    if (h->magic != kMagic || h->version != kVersion) {
      munmap(p, mapped);
      throw GroupError(os.str(), 0);
    }
    // Abort the group so that the other ranks fail now instead of at the join timeout.
    base_ = static_cast<uint8_t*>(p);
    hdr_ = h;
    segBytes_ = mapped;
    try {
      fail(rank_, os.str());
    } catch (...) {
      unmap();
      closed_ = true;
      throw;
    }
  }
  base_ = static_cast<uint8_t*>(p);
  hdr_ = h;
  return true;
}

// Registers this rank in the mapped segment, then waits until every rank has (a rank that died
// meanwhile, or the deadline, fails the group).
void ShmGroup::join(uint64_t deadline) {
  const pid_t self = getpid();
  RankCtl& me = ctl(rank_);
  int32_t prev = me.pid.load();
  if (me.state.load() == kStateJoined && prev != 0 && prev != self && pidAlive(prev)) {
    unmap();
    throw GroupError("rank " + std::to_string(rank_) + " of group '" + name_ + "' is already taken by live pid " +
                         std::to_string(prev),
                     rank_);
  }
  me.seq.store(0);
  me.callNo.store(0);
  me.inCall.store(0);
  me.pid.store(self);
  me.lastActiveNs.store(nowNs());
  me.state.store(kStateJoined, std::memory_order_seq_cst);

  try {
    uint64_t backoff = 50;
    for (;;) {
      checkCancel();
      if (aborted()) rethrowAbort();
      std::vector<int> missing;
      for (int q = 0; q < world_; ++q) {
        uint32_t s = ctl(q).state.load(std::memory_order_acquire);
        if (s == kStateClosed) continue;  // joined, and already done with the group
        if (s != kStateJoined) {
          missing.push_back(q);
        } else if (!pidAlive(ctl(q).pid.load())) {
          fail(q, "rank " + std::to_string(q) + " (pid " + std::to_string(ctl(q).pid.load()) + ") died while group '" +
                      name_ + "' was being joined");
        }
      }
      if (missing.empty()) break;
      if (nowNs() > deadline) {
        std::ostringstream os;
        os << "timed out after " << opts_.timeoutMs << " ms joining group '" << name_ << "': rank"
           << (missing.size() > 1 ? "s " : " ");
        for (size_t i = 0; i < missing.size(); ++i) os << (i ? ", " : "") << missing[i];
        os << " never joined";
        fail(missing[0], os.str());
      }
      backoffPause(backoff);
    }
  } catch (...) {
    unlinkName();
    unmap();
    closed_ = true;
    throw;
  }
}

ShmGroup::~ShmGroup() {
  try {
    close();
  } catch (...) {
  }
  unmap();
}

void ShmGroup::unmap() {
  if (base_) munmap(base_, segBytes_);
  base_ = nullptr;
  hdr_ = nullptr;
}

void ShmGroup::checkCancel() const {
  if (opts_.cancel && opts_.cancel->load(std::memory_order_relaxed))
    throw GroupError("group '" + name_ + "': operation cancelled (the owning environment is shutting down)");
}

void ShmGroup::unlinkName() {
  if (!hdr_) return;
  uint32_t expected = 0;
  if (hdr_->nameUnlinked.compare_exchange_strong(expected, 1)) shm_unlink(shmName_.c_str());
}

void ShmGroup::close() {
  if (closed_) return;
  closed_ = true;
  if (!hdr_) return;
  RankCtl& me = ctl(rank_);
  me.state.store(kStateClosed, std::memory_order_seq_cst);
  wakeAll();
  unlinkName();
}

bool ShmGroup::aborted() const { return hdr_->abortState.load(std::memory_order_acquire) != 0; }

void ShmGroup::wakeAll() {
  for (int q = 0; q < world_; ++q) futexWake(&ctl(q).seq);
}

void ShmGroup::fail(int culprit, const std::string& msg) {
  if (hdr_) {
    uint32_t expected = 0;
    if (hdr_->abortState.compare_exchange_strong(expected, 1)) {
      std::snprintf(hdr_->abortMsg, sizeof hdr_->abortMsg, "%s", msg.c_str());
      hdr_->abortRank.store(culprit);
      hdr_->abortReporter.store(rank_);
      hdr_->abortState.store(2, std::memory_order_release);
    }
    wakeAll();
    unlinkName();
  }
  throw GroupError(msg, culprit);
}

void ShmGroup::rethrowAbort() {
  for (int i = 0; i < 1000000 && hdr_->abortState.load(std::memory_order_acquire) != 2; ++i) MPO_CPU_RELAX();
  std::string msg(hdr_->abortMsg, strnlen(hdr_->abortMsg, sizeof hdr_->abortMsg));
  int culprit = hdr_->abortRank.load();
  int reporter = hdr_->abortReporter.load();
  unlinkName();
  if (reporter != rank_) msg += " (reported by rank " + std::to_string(reporter) + ")";
  throw GroupError(msg, culprit);
}

bool ShmGroup::peerDead(int q) const { return !pidAlive(ctl(q).pid.load()); }

std::string ShmGroup::peerDescription(int q, uint64_t now) const {
  const RankCtl& c = ctl(q);
  uint64_t last = c.lastActiveNs.load();
  std::ostringstream os;
  os << "pid " << c.pid.load() << ", still alive, "
     << (c.inCall.load() ? "inside call #" + std::to_string(c.callNo.load() + 1)
                         : "not in a collective (" + std::to_string(c.callNo.load()) + " calls completed)")
     << ", last active " << (last && now > last ? fmtMs(now - last) : std::string("0 ms")) << " ago";
  return os.str();
}

void ShmGroup::publish() {
  ++seq_;
  RankCtl& me = ctl(rank_);
  me.seq.store(seq_, std::memory_order_seq_cst);
  if (me.waiters.load(std::memory_order_seq_cst) != 0) futexWake(&me.seq);
}

void ShmGroup::waitFor(int q, uint32_t target, const char* phase) {
  RankCtl& c = ctl(q);
  if (reached(c.seq.load(std::memory_order_acquire), target)) return;
  const uint64_t t0 = nowNs();
  const uint64_t spinEnd = t0 + uint64_t(opts_.spinUs) * 1000;
  for (uint32_t i = 0;; ++i) {
    MPO_CPU_RELAX();
    if (reached(c.seq.load(std::memory_order_acquire), target)) return;
    if ((i & 63) == 63) {
      if (aborted()) rethrowAbort();
      checkCancel();
      if (nowNs() >= spinEnd) break;
    }
  }
  const uint64_t deadline = t0 + uint64_t(opts_.timeoutMs) * 1000000ULL;
  const uint64_t slice = uint64_t(opts_.livenessMs) * 1000000ULL;
  uint64_t nextLive = 0;
  for (;;) {
    if (aborted()) rethrowAbort();
    checkCancel();
    c.waiters.fetch_add(1, std::memory_order_seq_cst);
    uint32_t v = c.seq.load(std::memory_order_seq_cst);
    if (!reached(v, target)) {
      uint64_t now = nowNs();
      uint64_t left = deadline > now ? deadline - now : 0;
      futexWait(&c.seq, v, std::max<uint64_t>(std::min(slice, left), 1000));
    }
    c.waiters.fetch_sub(1, std::memory_order_seq_cst);
    if (reached(c.seq.load(std::memory_order_acquire), target)) return;
    const uint64_t now = nowNs();
    ctl(rank_).lastActiveNs.store(now, std::memory_order_relaxed);
    if (now >= nextLive) {
      nextLive = now + slice;
      const char* callName = phase;
      if (peerDead(q))
        fail(q, "rank " + std::to_string(q) + " (pid " + std::to_string(c.pid.load()) + ") of group '" + name_ +
                    "' died (exited or was killed) while rank " + std::to_string(rank_) + " waited for it in call #" +
                    std::to_string(calls_ + 1) + " [" + callName + "]");
      if (c.state.load() == kStateClosed)
        fail(q, "rank " + std::to_string(q) + " closed group '" + name_ + "' while rank " + std::to_string(rank_) +
                    " waited for it in call #" + std::to_string(calls_ + 1) + " [" + callName + "]");
    }
    if (now >= deadline)
      fail(q, "timed out after " + std::to_string(opts_.timeoutMs) + " ms waiting for rank " + std::to_string(q) + " (" +
                  peerDescription(q, now) + ") in call #" + std::to_string(calls_ + 1) + " [" + phase + "] of group '" +
                  name_ + "'");
  }
}

void ShmGroup::waitAll(uint32_t target, const char* phase) {
  for (int q = 0; q < world_; ++q)
    if (q != rank_) waitFor(q, target, phase);
}

void ShmGroup::beginCall(Kind kind, uint64_t count, uint32_t info) {
  if (closed_) throw GroupError("group '" + name_ + "' is closed");
  if (aborted()) rethrowAbort();
  RankCtl& me = ctl(rank_);
  const uint32_t p = calls_ & 1;
  me.count[p].store(count, std::memory_order_relaxed);
  me.info[p].store((uint32_t(kind) << 24) | info, std::memory_order_relaxed);
  me.inCall.store(1, std::memory_order_relaxed);
  me.lastActiveNs.store(nowNs(), std::memory_order_relaxed);
}

void ShmGroup::endCall() {
  ++calls_;
  RankCtl& me = ctl(rank_);
  me.callNo.store(calls_, std::memory_order_relaxed);
  me.inCall.store(0, std::memory_order_relaxed);
  me.lastActiveNs.store(nowNs(), std::memory_order_relaxed);
}

namespace {
std::string describeCall(uint32_t info, uint64_t count) {
  uint32_t kind = info >> 24, op = (info >> 16) & 0xff, tr = (info >> 8) & 0xff, root = info & 0xff;
  std::ostringstream os;
  if (kind == 1)
    os << "allReduce(" << count << " float32, " << (op ? "avg" : "sum") << (tr ? ", bf16 transport" : "") << ")";
  else if (kind == 2)
    os << "broadcast(" << count << " bytes, root " << root << ")";
  else if (kind == 3)
    os << "barrier()";
  else if (kind == 4 || kind == 5)
    os << (kind == 4 ? "reduceScatter(" : "allGather(") << count << " float32, shard alignment " << (1ull << root)
       << ")";
  else
    os << "unknown call";
  return os.str();
}
}  // namespace

void ShmGroup::checkArrivals(Kind kind, uint64_t count, uint32_t info) {
  const uint32_t p = calls_ & 1;
  const uint32_t mine = (uint32_t(kind) << 24) | info;
  bool infosEqual = true, countsEqual = true;
  for (int q = 0; q < world_; ++q) {
    infosEqual = infosEqual && ctl(q).info[p].load(std::memory_order_relaxed) == mine;
    countsEqual = countsEqual && ctl(q).count[p].load(std::memory_order_relaxed) == count;
  }
  if (infosEqual && countsEqual) return;
  std::ostringstream os;
  os << (infosEqual ? "size mismatch" : "mismatched collective calls") << " in group '" << name_ << "' call #"
     << (calls_ + 1) << ": ";
  int culprit = -1;
  const uint64_t c0 = ctl(0).count[p].load();
  const uint32_t i0 = ctl(0).info[p].load();
  for (int q = 0; q < world_; ++q) {
    uint64_t qc = ctl(q).count[p].load();
    uint32_t qi = ctl(q).info[p].load();
    if (culprit < 0 && (qc != c0 || qi != i0)) culprit = q;
    os << (q ? ", " : "") << "rank " << q << " called " << describeCall(qi, qc);
  }
  fail(culprit, os.str());
}

void ShmGroup::allReduce(float* data, uint64_t count, ReduceOp op, Transport t) {
  if (alone()) return;
  const uint32_t info = (uint32_t(op) << 16) | (uint32_t(t) << 8);
  const uint64_t eb = t == Transport::BF16 ? 2 : 4;
  if (count * eb <= opts_.smallBytes)
    smallAllReduce(data, count, op, t, info);
  else
    largeAllReduce(data, count, op, t, info);
}

void ShmGroup::smallAllReduce(float* data, uint64_t count, ReduceOp op, Transport t, uint32_t info) {
  beginCall(kAllReduce, count, info);
  const uint32_t p = calls_ & 1;
  toTransport(smallSlot(rank_, p), data, count, t);
  publish();
  waitAll(seq_, "arrive");
  checkArrivals(kAllReduce, count, info);
  Src srcs[kMaxRanks];
  for (int q = 0; q < world_; ++q) srcs[q] = Src{smallSlot(q, p), t == Transport::BF16, false};
  reduceInto(srcs, world_, count, op, t, data, nullptr);
  endCall();
}

void ShmGroup::largeAllReduce(float* data, uint64_t count, ReduceOp op, Transport t, uint32_t info) {
  beginCall(kAllReduce, count, info);
  const uint64_t eb = t == Transport::BF16 ? 2 : 4;
  const uint64_t C = chunkElems() * (4 / eb);  // elements per piece
  const uint64_t W = C * uint64_t(world_);
  const uint64_t pl0 = (W + uint64_t(world_) * 16 - 1) / (uint64_t(world_) * 16) * 16;
  const bool bf = t == Transport::BF16;
  const uint64_t nRounds = (count + W - 1) / W;
  const uint64_t g0 = rounds_;
  // Window j covers [j*W, min((j+1)*W, count)); rank p owns piece p of it.
  auto windowLen = [&](uint64_t j) { return std::min(W, count - j * W); };
  auto pieceLen = [&](uint64_t w, uint64_t pl, int p) -> uint64_t {
    uint64_t b = uint64_t(p) * pl;
    return b >= w ? 0 : std::min(pl, w - b);
  };
  auto pieceStride = [&](uint64_t w) {
    return w == W ? pl0 : (w + uint64_t(world_) * 16 - 1) / (uint64_t(world_) * 16) * 16;
  };
  // Phase A of round j: hand every foreign piece to its owner through my staging slot.
  auto copyIn = [&](uint64_t j) {
    const uint64_t w = windowLen(j), pl = pieceStride(w);
    float* win = data + j * W;
    uint8_t* mine = staging(rank_, uint32_t((g0 + j) % kSlots));
    for (int p = 0; p < world_; ++p) {
      if (p == rank_) continue;
      uint64_t n = pieceLen(w, pl, p);
      if (n) toTransport(mine + uint64_t(p) * C * eb, win + uint64_t(p) * pl, n, t);
    }
  };
  Src srcs[kMaxRanks];
  copyIn(0);
  publish();  // A(0) is the call's arrival
  for (uint64_t j = 0; j < nRounds; ++j) {
    const uint32_t slot = uint32_t((g0 + j) % kSlots);
    const uint64_t w = windowLen(j), pl = pieceStride(w);
    float* win = data + j * W;
    waitAll(seq_, j == 0 ? "arrive" : "reduce-scatter");  // everybody's A(j)
    if (j == 0) checkArrivals(kAllReduce, count, info);
    // Reduce my piece, in rank order, into my buffer and my staging.
    const uint64_t n = pieceLen(w, pl, rank_);
    if (n) {
      for (int q = 0; q < world_; ++q) {
        if (q == rank_)
          srcs[q] = Src{win + uint64_t(rank_) * pl, false, bf};
        else
          srcs[q] = Src{staging(q, slot) + uint64_t(rank_) * C * eb, bf, false};
      }
      reduceInto(srcs, world_, n, op, t, win + uint64_t(rank_) * pl, staging(rank_, slot) + uint64_t(rank_) * C * eb);
    }
    publish();  // B(j)
    const uint32_t doneB = seq_;
    // Start the next round before collecting this one: peers get time to finish their reduce.
    // Slot (j+1)%3 was last read in round j-2, finished before the peers' B(j-1), which this
    // rank waited for while gathering round j-1.
    if (j + 1 < nRounds) {
      copyIn(j + 1);
      publish();  // A(j+1)
    }
    // Phase B: collect each owner's finished piece as soon as that owner is done.
    for (int k = 1; k < world_; ++k) {
      int q = (rank_ + k) % world_;
      uint64_t m = pieceLen(w, pl, q);
      waitFor(q, doneB, "all-gather");
      if (m) fromTransport(win + uint64_t(q) * pl, staging(q, slot) + uint64_t(q) * C * eb, m, t);
    }
  }
  rounds_ += nRounds;
  endCall();
}

uint64_t ShmGroup::shardElems(uint64_t count, int world, uint64_t align) {
  const uint64_t unit = uint64_t(world) * align;
  return (count + unit - 1) / unit * align;
}

// A one-rank group has nothing to exchange: every collective returns at once (after the closed check).
bool ShmGroup::alone() const {
  if (world_ != 1) return false;
  if (closed_) throw GroupError("group '" + name_ + "' is closed");
  return true;
}

namespace {
// The shard collectives' bookkeeping: rank p owns [p*S, min((p+1)*S, count)), moved in rounds of C
// elements; piece (p, j) is round j of p's shard.
struct ShardRounds {
  float* data;
  uint64_t count, S, C;
  uint64_t rounds() const { return std::max<uint64_t>(1, (S + C - 1) / C); }
  uint64_t pieceLen(int p, uint64_t j) const {
    const uint64_t b = uint64_t(p) * S + j * C, e = std::min({uint64_t(p) * S + S, count, b + C});
    return b >= e ? 0 : e - b;
  }
  float* piece(int p, uint64_t j) const { return data + uint64_t(p) * S + j * C; }
};
}  // namespace

// Both shard collectives run in rounds of C elements of every shard (round j: elements
// [j*C, (j+1)*C) of each rank's shard), through the same three rotating staging slots as
// largeAllReduce. A rank writes slot (j)%3 only after it has seen every peer's A(j-1) (reduce-scatter:
// A(j-1) of this call's previous round; all-gather: the same), and a peer publishes A(j-1) only after
// it finished reading slot (j-3)%3 = j%3, so no slot is overwritten while it is read.
void ShmGroup::reduceScatter(float* data, uint64_t count, uint32_t alignLog2) {
  if (alone()) return;
  beginCall(kReduceScatter, count, alignLog2);
  const ShardRounds r{data, count, shardElems(count, world_, 1ull << alignLog2), chunkElems()};
  const uint64_t C = r.C, nRounds = r.rounds(), g0 = rounds_;
  Src srcs[kMaxRanks];
  for (uint64_t j = 0; j < nRounds; ++j) {
    const uint32_t slot = uint32_t((g0 + j) % kSlots);
    uint8_t* mine = staging(rank_, slot);
    for (int p = 0; p < world_; ++p) {
      const uint64_t n = p == rank_ ? 0 : r.pieceLen(p, j);
      if (n) std::memcpy(mine + uint64_t(p) * C * 4, r.piece(p, j), n * 4);
    }
    publish();  // A(j)
    waitAll(seq_, j == 0 ? "arrive" : "reduce-scatter");
    if (j == 0) checkArrivals(kReduceScatter, count, alignLog2);
    const uint64_t n = r.pieceLen(rank_, j);
    if (n) {
      for (int q = 0; q < world_; ++q)
        srcs[q] = q == rank_ ? Src{r.piece(rank_, j), false, false}
                             : Src{staging(q, slot) + uint64_t(rank_) * C * 4, false, false};
      reduceInto(srcs, world_, n, ReduceOp::Sum, Transport::F32, r.piece(rank_, j), nullptr);
    }
    publish();  // B(j): my reads of the peers' slot j are done
  }
  rounds_ += nRounds;
  endCall();
}

void ShmGroup::allGather(float* data, uint64_t count, uint32_t alignLog2) {
  if (alone()) return;
  beginCall(kAllGather, count, alignLog2);
  const ShardRounds r{data, count, shardElems(count, world_, 1ull << alignLog2), chunkElems()};
  const uint64_t C = r.C, nRounds = r.rounds(), g0 = rounds_;
  for (uint64_t j = 0; j < nRounds; ++j) {
    const uint32_t slot = uint32_t((g0 + j) % kSlots);
    const uint64_t n = r.pieceLen(rank_, j);
    if (n) std::memcpy(staging(rank_, slot) + uint64_t(rank_) * C * 4, r.piece(rank_, j), n * 4);
    publish();  // A(j): my piece j is in my slot
    if (j == 0) {
      waitAll(seq_, "arrive");
      checkArrivals(kAllGather, count, alignLog2);
    }
    for (int k = 1; k < world_; ++k) {
      const int q = (rank_ + k) % world_;
      waitFor(q, seq_, "all-gather");
      const uint64_t m = r.pieceLen(q, j);
      if (m) std::memcpy(r.piece(q, j), staging(q, slot) + uint64_t(q) * C * 4, m * 4);
    }
    publish();  // B(j)
  }
  rounds_ += nRounds;
  endCall();
}

void ShmGroup::broadcast(uint8_t* data, uint64_t bytes, int root) {
  if (root < 0 || root >= world_)
    throw GroupError("broadcast root " + std::to_string(root) + " out of range for world size " + std::to_string(world_));
  if (alone()) return;
  const uint32_t info = uint32_t(root);
  beginCall(kBroadcast, bytes, info);
  // A full arrival first: after it nobody still reads the root's staging from an earlier call.
  publish();
  waitAll(seq_, "arrive");
  checkArrivals(kBroadcast, bytes, info);
  // Then rounds through the root's staging slot 0, each drained before the next is written.
  const uint64_t cap = opts_.stagingBytes / kSlots;
  uint8_t* buf = staging(root, 0);
  for (uint64_t off = 0; off < bytes; off += cap) {
    const uint64_t n = std::min(cap, bytes - off);
    if (rank_ == root) std::memcpy(buf, data + off, n);
    publish();  // root: chunk written
    if (rank_ != root) {
      waitFor(root, seq_, "broadcast");
      std::memcpy(data + off, buf, n);
    }
    publish();  // chunk read
    if (rank_ == root) waitAll(seq_, "broadcast");
  }
  endCall();
}

void ShmGroup::barrier() {
  if (alone()) return;
  beginCall(kBarrier, 0, 0);
  publish();
  waitAll(seq_, "barrier");
  checkArrivals(kBarrier, 0, 0);
  endCall();
}

}  // namespace mpo
