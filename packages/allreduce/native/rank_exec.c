/* mpo-rank-exec: the launcher's exec wrapper for one rank.
 *
 *   mpo-rank-exec [--cores 0,2-3] [--pdeathsig 9] [--parent PID] -- command [args...]
 *
 * Sets the parent-death signal (PR_SET_PDEATHSIG survives execve of non-setuid programs), exits if
 * the expected parent already died, pins the CPU affinity (inherited by every thread the command
 * will ever create), then execs the command. Doing this before exec is what makes it apply to any
 * rank command - node, python, a shell script - and to threads started before user code runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void usage(void) {
  fprintf(stderr, "usage: mpo-rank-exec [--cores LIST] [--pdeathsig SIG] [--parent PID] -- command [args...]\n");
  exit(127);
}

static int parseCores(const char* s, cpu_set_t* set) {
  CPU_ZERO(set);
  int any = 0;
  while (*s) {
    char* end;
    long a = strtol(s, &end, 10);
    if (end == s || a < 0 || a >= CPU_SETSIZE) return -1;
    long b = a;
    s = end;
    if (*s == '-') {
      ++s;
      b = strtol(s, &end, 10);
      if (end == s || b < a || b >= CPU_SETSIZE) return -1;
      s = end;
    }
    for (long c = a; c <= b; ++c) CPU_SET((int)c, set);
    any = 1;
    if (*s == ',') ++s;
    else if (*s) return -1;
  }
  return any ? 0 : -1;
}

int main(int argc, char** argv) {
  const char* cores = NULL;
  int sig = 0;
  long parent = 0;
  int i = 1;
  for (; i < argc; ++i) {
    if (strcmp(argv[i], "--") == 0) {
      ++i;
      break;
    } else if (strcmp(argv[i], "--cores") == 0 && i + 1 < argc) {
      cores = argv[++i];
    } else if (strcmp(argv[i], "--pdeathsig") == 0 && i + 1 < argc) {
      sig = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--parent") == 0 && i + 1 < argc) {
      parent = atol(argv[++i]);
    } else {
      usage();
    }
  }
  if (i >= argc) usage();
  if (sig > 0) {
    if (prctl(PR_SET_PDEATHSIG, sig) != 0) {
      perror("mpo-rank-exec: prctl(PR_SET_PDEATHSIG)");
      return 127;
    }
    if (parent > 0 && getppid() != (pid_t)parent) {
      /* the launcher died before the prctl took effect */
      raise(sig);
      return 128 + sig;
    }
  }
  if (cores) {
    cpu_set_t set;
    if (parseCores(cores, &set) != 0) {
      fprintf(stderr, "mpo-rank-exec: bad core list '%s'\n", cores);
      return 127;
    }
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
      fprintf(stderr, "mpo-rank-exec: sched_setaffinity(%s): %s\n", cores, strerror(errno));
      return 127;
    }
  }
  execvp(argv[i], &argv[i]);
  fprintf(stderr, "mpo-rank-exec: cannot run '%s': %s\n", argv[i], strerror(errno));
  return 127;
}
