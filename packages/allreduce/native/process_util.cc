// Process helpers: whether a pid lives (the group's liveness checks), error text from errno, and
// the addon's exported affinity and parent-death helpers (declared in shm_group.h).
#include "process_util.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "shm_group.h"

namespace mpo {

std::string sysError(const std::string& what) { return what + ": " + std::strerror(errno); }

// Alive = exists and is not a zombie. kill(pid, 0) alone says "alive" for an unreaped zombie.
bool pidAlive(int32_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
  FILE* f = std::fopen(path, "r");
  if (!f) return errno != ENOENT;
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* rp = std::strrchr(buf, ')');
  if (!rp || rp[1] != ' ') return true;
  char state = rp[2];
  return state != 'Z' && state != 'X' && state != 'x';
}

// ---- process helpers -------------------------------------------------------------------------

void setAffinityAllThreads(const std::vector<int>& cores) {
  if (cores.empty()) throw std::runtime_error("setAffinity: empty core list");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cores) {
    if (c < 0 || c >= CPU_SETSIZE) throw std::runtime_error("setAffinity: core " + std::to_string(c) + " out of range");
    CPU_SET(c, &set);
  }
  // sched_setaffinity(0) pins only the calling thread; Node already runs several threads (libuv
  // pool, V8 platform workers), so pin every task of the process. Threads created later inherit
  // the mask of the thread that creates them.
  DIR* d = opendir("/proc/self/task");
  if (!d) {
    if (sched_setaffinity(0, sizeof set, &set) != 0) throw std::runtime_error(sysError("sched_setaffinity"));
    return;
  }
  int pinned = 0;
  std::string firstErr;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    pid_t tid = pid_t(std::atoi(e->d_name));
    if (sched_setaffinity(tid, sizeof set, &set) == 0) {
      ++pinned;
    } else if (errno != ESRCH && firstErr.empty()) {
      firstErr = sysError("sched_setaffinity(tid " + std::to_string(tid) + ")");
    }
  }
  closedir(d);
  if (!firstErr.empty() || pinned == 0) {
    std::string allowed;
    cpu_set_t cur;
    if (sched_getaffinity(0, sizeof cur, &cur) == 0)
      for (int i = 0; i < CPU_SETSIZE; ++i)
        if (CPU_ISSET(i, &cur)) allowed += (allowed.empty() ? "" : ",") + std::to_string(i);
    throw std::runtime_error((firstErr.empty() ? std::string("setAffinity failed") : firstErr) +
                             " (allowed cores: " + allowed + ")");
  }
}

std::vector<int> getAffinity() {
  cpu_set_t cur;
  if (sched_getaffinity(0, sizeof cur, &cur) != 0) throw std::runtime_error(sysError("sched_getaffinity"));
  std::vector<int> out;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &cur)) out.push_back(i);
  return out;
}

void dieWithParent(int signal, int expectedParent) {
  if (prctl(PR_SET_PDEATHSIG, signal) != 0) throw std::runtime_error(sysError("prctl(PR_SET_PDEATHSIG)"));
  // The parent may have died before the prctl: then we were already reparented.
  if (expectedParent > 0 && getppid() != expectedParent) {
    kill(getpid(), signal);
    _exit(128 + signal);
  }
}

}  // namespace mpo
