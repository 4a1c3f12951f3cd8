/*
 * cordon-sandbox: the first process inside Cordon's bubblewrap sandbox (pid 1 of its pid
 * namespace). It finishes what bubblewrap cannot express, then runs the agent:
 *
 *   1. remounts every granted path and /tmp noexec, in a nested user and mount namespace of
 *      its own (the dynamic loader maps code with mmap, which Landlock's EXECUTE right does
 *      not see; noexec stops PROT_EXEC mappings there too);
 *   2. starts the egress bridge: TCP 127.0.0.1:PORT inside the sandbox's network namespace,
 *      relayed to the egress proxy's Unix socket bound in from outside (restarted if it dies,
 *      a bounded number of times, each death reported on the status fd);
 *   3. forks the agent, which drops every capability, sets no_new_privs and resource limits,
 *      enters a Landlock domain (read / write / execute by path, signal and abstract-socket
 *      scoping) and a seccomp filter, then execs the command;
 *   4. stays as init: forwards signals to the agent's process group, makes it the foreground of
 *      the session's own terminal, reaps orphans, and exits with the agent's status (the kernel
 *      then kills whatever is left in the pid namespace).
 *
 * Any failure before exec is fatal (exit 125) with a message naming the step: there is no
 * weaker mode. `cordon-sandbox --probe` prints what the kernel offers, for `cordon doctor`.
 *
 * `cordon-sandbox --launch --keep-fds N [--status-fd FD] -- BWRAP ARGS...` runs OUTSIDE the
 * sandbox, started by `cordon run` in bubblewrap's place: it closes every descriptor from N up
 * that the caller of `cordon run` left open (a shell's `exec 7<file`, a connected socket: Node
 * passes on whatever is not close-on-exec), then execs bubblewrap - or, when a standard stream
 * is a terminal, runs bubblewrap on a pseudo-terminal of the session's own and relays it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <libgen.h>
#include <limits.h>
#include <linux/magic.h>
#include <termios.h>
#include <unistd.h>

/* Landlock UAPI, spelled out so the helper builds against older kernel headers. */
struct ll_ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};
struct ll_path_beneath_attr {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_EXECUTE (1ULL << 0)
#define LL_WRITE_FILE (1ULL << 1)
#define LL_READ_FILE (1ULL << 2)
#define LL_READ_DIR (1ULL << 3)
#define LL_REMOVE_DIR (1ULL << 4)
#define LL_REMOVE_FILE (1ULL << 5)
#define LL_MAKE_CHAR (1ULL << 6)
#define LL_MAKE_DIR (1ULL << 7)
#define LL_MAKE_REG (1ULL << 8)
#define LL_MAKE_SOCK (1ULL << 9)
#define LL_MAKE_FIFO (1ULL << 10)
#define LL_MAKE_BLOCK (1ULL << 11)
#define LL_MAKE_SYM (1ULL << 12)
#define LL_REFER (1ULL << 13)
#define LL_TRUNCATE (1ULL << 14)
#define LL_IOCTL_DEV (1ULL << 15)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)
#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

/* Keep in step with MIN_LANDLOCK_ABI in src/sandbox/linux/doctor.ts: 3 handles truncation. */
#define MIN_LANDLOCK_ABI 3
#define EXIT_SETUP 125

#define MAX_RULES 4096
enum rule_kind { RULE_LIST, RULE_READ, RULE_WRITE, RULE_EXEC, RULE_EXEC_TREE };
struct rule {
  enum rule_kind kind;
  const char *path;
};

static struct rule rules[MAX_RULES];
static int n_rules;
static const char *noexec_paths[MAX_RULES];
static int n_noexec;
/* Mount points the launcher planned: a file (device, inode) or a tmpfs at an exact path. */
struct expected_mount {
  const char *path;
  int tmpfs;
  unsigned long long dev, ino;
};
static struct expected_mount expects[MAX_RULES];
static int n_expects;
static int bridge_port = -1;
static const char *bridge_socket;
static int allow_unix = 0;
static int status_fd = -1;
static int go_fd = -1;
static long long rl_nproc = -1, rl_as = -1, rl_cpu = -1, rl_fsize = -1, rl_nofile = -1;
static volatile sig_atomic_t agent_pid = 0;
/* The bridge's listening socket stays open in init, so a restarted bridge serves the same
 * address and connections made meanwhile wait in its backlog. */
static int bridge_listener = -1;
/* Restarts of a bridge that keeps dying; beyond this the session ends (no network is the
 * one state an agent must not be left in unnoticed). */
#define MAX_BRIDGE_RESTARTS 5
/* The controlling terminal (-1 without one). */
static int ctty = -1;

static void die(const char *step, const char *what) {
  int e = errno;
  fprintf(stderr, "cordon-sandbox: %s: %s%s%s\n", step, what, e ? ": " : "", e ? strerror(e) : "");
  if (status_fd >= 0) dprintf(status_fd, "{\"event\":\"setup-failed\",\"step\":\"%s\",\"errno\":%d}\n", step, e);
  _exit(EXIT_SETUP);
}

static long ll_abi(void) {
  return syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
}

static uint64_t fs_rights_for_abi(long abi) {
  uint64_t all = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_READ_DIR | LL_REMOVE_DIR |
                 LL_REMOVE_FILE | LL_MAKE_CHAR | LL_MAKE_DIR | LL_MAKE_REG | LL_MAKE_SOCK |
                 LL_MAKE_FIFO | LL_MAKE_BLOCK | LL_MAKE_SYM;
  if (abi >= 2) all |= LL_REFER;
  if (abi >= 3) all |= LL_TRUNCATE;
  if (abi >= 5) all |= LL_IOCTL_DEV;
  return all;
}

/* ---- seccomp ---------------------------------------------------------------------------- */

#if defined(__x86_64__)
#define SC_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SC_ARCH AUDIT_ARCH_AARCH64
#else
#error "cordon-sandbox supports x86_64 and aarch64"
#endif

#define ARCH_NR_OFF (offsetof(struct seccomp_data, arch))
#define NR_OFF (offsetof(struct seccomp_data, nr))
#define ARG_LO(n) (offsetof(struct seccomp_data, args) + 8 * (n))
#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))

/* System calls the agent never needs and that reach past the sandbox or the kernel's attack
 * surface: debugging other processes, namespaces and mounts, kernel keyrings, eBPF, perf,
 * io_uring (it bypasses seccomp for its own operations), module and kexec loading. */
static const int denied_syscalls[] = {
    __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev, __NR_mount, __NR_umount2,
    __NR_pivot_root, __NR_chroot, __NR_unshare, __NR_setns, __NR_bpf, __NR_perf_event_open,
    __NR_keyctl, __NR_add_key, __NR_request_key, __NR_io_uring_setup, __NR_io_uring_enter,
    __NR_io_uring_register, __NR_kexec_load, __NR_kexec_file_load, __NR_init_module,
    __NR_finit_module, __NR_delete_module, __NR_open_by_handle_at, __NR_name_to_handle_at,
    __NR_userfaultfd, __NR_swapon, __NR_swapoff, __NR_reboot, __NR_syslog, __NR_acct,
    __NR_quotactl, __NR_move_mount, __NR_open_tree, __NR_fsopen, __NR_fsconfig, __NR_fsmount,
    __NR_fspick, __NR_mount_setattr, __NR_pidfd_getfd, __NR_kcmp, __NR_lookup_dcookie,
    /* The rest of what container runtimes refuse by default: the clock, NUMA policy of other
     * processes, obsolete interfaces. */
    __NR_clock_adjtime, __NR_clock_settime, __NR_settimeofday, __NR_adjtimex, __NR_mbind,
    __NR_move_pages, __NR_migrate_pages, __NR_set_mempolicy, __NR_vhangup, __NR_fanotify_init,
#ifdef __NR_sysfs
    __NR_sysfs, __NR_ustat,
#endif
#ifdef __NR_modify_ldt
    __NR_modify_ldt,
#endif
#ifdef __NR_iopl
    __NR_iopl, __NR_ioperm,
#endif
#ifdef __NR_uselib
    __NR_uselib,
#endif
#ifdef __NR_quotactl_fd
    __NR_quotactl_fd,
#endif
};

#define MFD_NOEXEC_SEAL_ 0x0008U
#define MFD_EXEC_ 0x0010U
#define MAX_FILTER 256
struct filter_buf {
  struct sock_filter ins[MAX_FILTER];
  unsigned short n;
};

static void emit(struct filter_buf *f, struct sock_filter s) {
  if (f->n >= MAX_FILTER) {
    errno = 0;
    die("seccomp", "filter too long");
  }
  f->ins[f->n++] = s;
}
/* Both emit into the filter `fp` points at. */
#define STMT(code, k) emit(fp, (struct sock_filter)BPF_STMT(code, k))
#define JUMP(code, k, jt, jf) emit(fp, (struct sock_filter)BPF_JUMP(code, k, jt, jf))

/* Deny `nr` when the low 32 bits of argument `arg` pass `test` against `k`: BPF_JEQ (equal to
 * k) or BPF_JSET (any bit of k set). The accumulator is reloaded with the syscall number. */
static void deny_arg(struct filter_buf *fp, int nr, int arg, uint16_t test, uint32_t k, int err) {
  JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 3);
  STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(arg));
  JUMP(BPF_JMP | test | BPF_K, k, 0, 1);
  STMT(BPF_RET | BPF_K, ERRNO(err));
  STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF);
}

/* Refuse `nr` unless the low 32 bits of argument `arg` are one of `allowed`: an allow list, so
 * an address family the kernel gains later is refused too. The accumulator is reloaded with the
 * syscall number. */
static void allow_arg_only(struct filter_buf *fp, int nr, int arg, const uint32_t *allowed, int n, int err) {
  JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, (uint8_t)(n + 3));
  STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(arg));
  for (int i = 0; i < n; i++) JUMP(BPF_JMP | BPF_JEQ | BPF_K, allowed[i], (uint8_t)(n - i), 0);
  STMT(BPF_RET | BPF_K, ERRNO(err));
  STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF);
}

enum seccomp_role { FOR_AGENT, FOR_BRIDGE };

static void install_seccomp(enum seccomp_role role) {
  struct filter_buf f = {.n = 0};
  struct filter_buf *fp = &f;
  STMT(BPF_LD | BPF_W | BPF_ABS, ARCH_NR_OFF);
  JUMP(BPF_JMP | BPF_JEQ | BPF_K, SC_ARCH, 1, 0);
  STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF);
#if defined(__x86_64__)
  /* x32 system calls reach the same kernel entry points under other numbers. */
  JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000U, 0, 1);
  STMT(BPF_RET | BPF_K, ERRNO(EPERM));
#endif
  for (size_t i = 0; i < sizeof denied_syscalls / sizeof denied_syscalls[0]; i++) {
    JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)denied_syscalls[i], 0, 1);
    STMT(BPF_RET | BPF_K, ERRNO(EPERM));
  }
  /* clone3 passes its flags in memory, which a filter cannot read: ENOSYS makes libc fall back
   * to clone, whose flags are checked below. */
  JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
  STMT(BPF_RET | BPF_K, ERRNO(ENOSYS));
  deny_arg(fp, __NR_clone, 0, BPF_JSET,
                CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC |
                    CLONE_NEWUTS | CLONE_NEWCGROUP,
                EPERM);
  /* A memfd is on an internal file system Landlock does not see: a binary copied into one and
   * run with fexecve would escape commandsAllowed. Only memfds sealed non-executable
   * (MFD_NOEXEC_SEAL, Linux 6.3+) may be created. */
  JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 0, 4);
  STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1));
  STMT(BPF_ALU | BPF_AND | BPF_K, MFD_NOEXEC_SEAL_ | MFD_EXEC_);
  JUMP(BPF_JMP | BPF_JEQ | BPF_K, MFD_NOEXEC_SEAL_, 1, 0);
  STMT(BPF_RET | BPF_K, ERRNO(EPERM));
  STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF);
  /* Faking terminal input (TIOCSTI) would type commands into the shell that reads the terminal
   * after the agent: the session's terminal is its own, and this stays refused all the same. */
  deny_arg(fp, __NR_ioctl, 1, BPF_JEQ, TIOCSTI, EPERM);
  deny_arg(fp, __NR_ioctl, 1, BPF_JEQ, TIOCLINUX, EPERM);
  /* Socket families by allow list. The network namespace isolates only IP (and what rides on
   * it): vsock reaches the hypervisor, netlink the kernel's configuration, packet sockets and
   * the rest their own subsystems. The agent gets IP, which leads nowhere but the bridge on
   * loopback, and socketpair's unnamed Unix sockets (pipes with two ends, used by shells and
   * runtimes); named Unix sockets only with --allow-unix. The bridge connects to the proxy's
   * Unix socket and nothing else (its listener was opened before the filter). */
  static const uint32_t agent_families[] = {AF_INET, AF_INET6, AF_UNIX};
  static const uint32_t bridge_families[] = {AF_UNIX};
  static const uint32_t pair_families[] = {AF_UNIX};
  if (role == FOR_AGENT)
    allow_arg_only(fp, __NR_socket, 0, agent_families, allow_unix ? 3 : 2, EAFNOSUPPORT);
  else
    allow_arg_only(fp, __NR_socket, 0, bridge_families, 1, EAFNOSUPPORT);
  allow_arg_only(fp, __NR_socketpair, 0, pair_families, 1, EAFNOSUPPORT);
  STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);

  struct sock_fprog prog = {.len = f.n, .filter = f.ins};
  if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
    die("seccomp", "cannot install the system call filter");
}

/* ---- Landlock ---------------------------------------------------------------------------- */

static void add_rule(int ruleset, const char *path, uint64_t access) {
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) {
    /* A grant whose path does not exist grants nothing; bubblewrap did not mount it either. */
    if (errno == ENOENT) return;
    die("landlock", path);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) die("landlock", path);
  if (!S_ISDIR(st.st_mode))
    access &= LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV;
  struct ll_path_beneath_attr attr = {.allowed_access = access, .parent_fd = fd};
  if (syscall(__NR_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &attr, 0) != 0)
    die("landlock", path);
  close(fd);
}

/* The agent's domain holds the grants; the egress bridge's holds none (it only relays bytes
 * between two sockets it has already been handed or may connect to). */
static void enter_landlock(int with_grants) {
  long abi = ll_abi();
  if (abi < MIN_LANDLOCK_ABI) {
    if (abi > 0) errno = 0;
    die("landlock", abi > 0 ? "the kernel's Landlock ABI is too old (need 3: Linux 6.2)" : "the kernel does not offer Landlock");
  }
  uint64_t handled = fs_rights_for_abi(abi);
  struct ll_ruleset_attr attr = {.handled_access_fs = handled, .handled_access_net = 0, .scoped = 0};
  size_t size = offsetof(struct ll_ruleset_attr, handled_access_net);
  if (abi >= 4) size = offsetof(struct ll_ruleset_attr, scoped);
  if (abi >= 6) {
    attr.scoped = LL_SCOPE_SIGNAL | LL_SCOPE_ABSTRACT_UNIX_SOCKET;
    size = sizeof attr;
  }
  int rs = (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0);
  if (rs < 0) die("landlock", "cannot create the ruleset");
  const uint64_t read = LL_READ_FILE | LL_READ_DIR;
  const uint64_t write = read | LL_WRITE_FILE | LL_REMOVE_DIR | LL_REMOVE_FILE | LL_MAKE_DIR |
                         LL_MAKE_REG | LL_MAKE_SYM | LL_MAKE_FIFO | LL_MAKE_SOCK | LL_REFER |
                         LL_TRUNCATE;
  for (int i = 0; with_grants && i < n_rules; i++) {
    uint64_t a = 0;
    switch (rules[i].kind) {
      case RULE_LIST: a = LL_READ_DIR; break;
      case RULE_READ: a = read; break;
      case RULE_WRITE: a = write; break;
      case RULE_EXEC: a = LL_EXECUTE | LL_READ_FILE; break;
      case RULE_EXEC_TREE: a = LL_EXECUTE | read; break;
    }
    add_rule(rs, rules[i].path, a & handled);
  }
  /* Terminals and /dev/null are written to and configured with ioctls. */
  if (with_grants) add_rule(rs, "/dev", (read | LL_WRITE_FILE | LL_IOCTL_DEV) & handled);
  if (syscall(__NR_landlock_restrict_self, rs, 0) != 0) die("landlock", "cannot enter the domain");
  close(rs);
}

/* ---- capabilities, limits, mounts --------------------------------------------------------- */

static void drop_capabilities(void) {
  for (int c = 0; c <= 63; c++) {
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) die("capabilities", "bounding set");
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) die("capabilities", "ambient set");
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  if (syscall(SYS_capset, &h, d) != 0) die("capabilities", "capset");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs", "prctl");
}

static void set_limit(int resource, long long value, const char *name) {
  if (value < 0) return;
  struct rlimit r;
  if (getrlimit(resource, &r) != 0) die("rlimit", name);
  rlim_t v = (rlim_t)value;
  if (r.rlim_max != RLIM_INFINITY && v > r.rlim_max) v = r.rlim_max;
  r.rlim_cur = v;
  r.rlim_max = v;
  if (setrlimit(resource, &r) != 0) die("rlimit", name);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("noexec", path);
  ssize_t n = write(fd, text, strlen(text));
  if (n != (ssize_t)strlen(text)) die("noexec", path);
  close(fd);
}

/* Remounting needs CAP_SYS_ADMIN over the mount namespace. bubblewrap's own namespace is not
 * ours to change when it runs unprivileged, so the helper enters a nested user and mount
 * namespace of its own (mapping only the current ids) and remounts there. Adding noexec is
 * allowed on mounts whose other flags are locked; removing a flag would not be. */
static void enter_private_mounts(void) {
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) die("noexec", "cannot enter a private mount namespace");
  char map[64];
  write_file("/proc/self/setgroups", "deny");
  snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
  write_file("/proc/self/uid_map", map);
  snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
  write_file("/proc/self/gid_map", map);
}

static void remount_noexec(const char *path) {
  struct statvfs sv;
  if (statvfs(path, &sv) != 0) {
    if (errno == ENOENT) return;
    die("noexec", path);
  }
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOEXEC | MS_NOSUID | MS_NODEV;
  if (sv.f_flag & ST_RDONLY) flags |= MS_RDONLY;
  if (sv.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (sv.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  if (sv.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (mount(NULL, path, NULL, flags, NULL) != 0) die("noexec", path);
}

/* ---- egress bridge ------------------------------------------------------------------------ */

static void relay(int a, int b) {
  char buf[65536];
  struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
  int open_dirs = 2;
  while (open_dirs > 0) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < 2; i++) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int from = i == 0 ? a : b, to = i == 0 ? b : a;
      ssize_t n = read(from, buf, sizeof buf);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        shutdown(to, SHUT_WR);
        p[i].fd = -1;
        open_dirs--;
        continue;
      }
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0) {
          if (errno == EINTR) continue;
          return;
        }
        off += w;
      }
    }
  }
}

static void run_bridge(int listener) {
  struct sigaction sa = {.sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT};
  sigaction(SIGCHLD, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  for (;;) {
    int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      _exit(1);
    }
    pid_t p = fork();
    if (p == 0) {
      close(listener);
      int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      struct sockaddr_un sa_un = {.sun_family = AF_UNIX};
      strncpy(sa_un.sun_path, bridge_socket, sizeof sa_un.sun_path - 1);
      if (u < 0 || connect(u, (struct sockaddr *)&sa_un, sizeof sa_un) != 0) _exit(1);
      relay(c, u);
      _exit(0);
    }
    close(c);
  }
}

static int open_bridge_listener(void) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0) die("bridge", "socket");
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)bridge_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0) die("bridge", "bind 127.0.0.1");
  if (listen(l, 128) != 0) die("bridge", "listen");
  return l;
}

/* Fork a bridge on the listener. Signals stay blocked across the fork: the child must not run
 * init's forwarding handler before it has reset it. */
static pid_t start_bridge(void) {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  pid_t b = fork();
  if (b == 0) {
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    drop_capabilities();
    enter_landlock(0);
    install_seccomp(FOR_BRIDGE);
    run_bridge(bridge_listener);
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  return b;
}

/* ---- descriptors ------------------------------------------------------------------------------ */

/* Close every descriptor from `from` up except those in keep[] (each >= from, or -1). */
static void close_strays(int from, const int *keep, int n_keep) {
  unsigned int lo = (unsigned int)from;
  for (;;) {
    /* The next kept descriptor at or above lo. */
    int next = -1;
    for (int k = 0; k < n_keep; k++)
      if (keep[k] >= (int)lo && (next < 0 || keep[k] < next)) next = keep[k];
    unsigned int hi = next < 0 ? ~0U : (unsigned int)next - 1;
    if (next < 0 || (unsigned int)next > lo) {
      if (close_range(lo, hi, 0) != 0) die("descriptors", "close_range");
    }
    if (next < 0) return;
    lo = (unsigned int)next + 1;
  }
}

/* ---- init ------------------------------------------------------------------------------------ */

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};

/* Signals sent to the sandbox (by `cordon run`, passing on its own) go to the agent's process
 * group. Signals the kernel generates for the terminal (Ctrl-C, hang-up) already reach the
 * agent, which owns the terminal: passing them on again would deliver them twice. */
static void forward(int sig, siginfo_t *info, void *ctx) {
  (void)ctx;
  if (info != NULL && info->si_code == SI_KERNEL) return;
  if (agent_pid <= 0) return;
  /* Job control. The shell's `fg` and `bg` both continue the whole job; only `cordon run`,
   * outside this pid namespace, can tell which (its process group is invisible from here), so
   * it answers with RESUME_FOREGROUND or RESUME_BACKGROUND and the agent is continued then. */
  if (sig == SIGCONT) return;
  if (sig == SIGRTMIN + 1 || sig == SIGRTMIN + 2) {
    if (sig == SIGRTMIN + 1 && ctty >= 0) tcsetpgrp(ctty, agent_pid);
    kill(-agent_pid, SIGCONT);
    return;
  }
  kill(-agent_pid, sig);
}

static int probe(void) {
  long abi = ll_abi();
  int seccomp_ok = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
  printf("{\"landlockAbi\":%ld,\"landlockErrno\":%d,\"seccomp\":%s,\"arch\":\"%s\"}\n", abi < 0 ? 0 : abi,
         abi < 0 ? errno : 0, seccomp_ok ? "true" : "false",
#if defined(__x86_64__)
         "x86_64"
#else
         "aarch64"
#endif
  );
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: cordon-sandbox [--list P] [--read P] [--write P] [--exec P] [--exec-tree P] [--noexec P]\n"
          "         [--bridge PORT:SOCKET] [--allow-unix] [--status-fd FD] [--go-fd FD] [--nproc N] [--as BYTES]\n"
          "         [--cpu SECONDS] [--fsize BYTES] [--nofile N]\n"
          "         [--expect-mount DEV:INO:PATH] [--expect-tmpfs PATH] -- COMMAND [ARGS...]\n"
          "       cordon-sandbox --probe\n"
          "       cordon-sandbox --launch [--keep-fds N] [--status-fd FD] -- /path/to/bwrap ARGS...\n");
  exit(2);
}

static unsigned long long mount_id(int fd) {
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) != 0) return 0;
  return (sx.stx_mask & STATX_MNT_ID) ? sx.stx_mnt_id : 0;
}

/* bubblewrap follows symbolic links in mount sources and destinations. The launcher planned
 * every mount on link-free paths, but a path can be swapped for a link (and back) between that
 * plan and the mount by anyone who can write there. So, before anything else runs: each
 * planned path must resolve to exactly itself, be a mount point, and hold the planned file (or
 * a tmpfs). Anything else stops the sandbox. */
static void verify_mounts(void) {
  for (int k = 0; k < n_expects; k++) {
    const struct expected_mount *x = &expects[k];
    int ok = 0;
    int fd = open(x->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      char proc[64], seen[PATH_MAX], parent[PATH_MAX];
      struct stat st;
      struct statfs sf;
      snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
      ssize_t n = readlink(proc, seen, sizeof seen - 1);
      if (n >= 0) seen[n] = 0;
      ok = n >= 0 && strcmp(seen, x->path) == 0 && fstat(fd, &st) == 0 && !S_ISLNK(st.st_mode);
      if (ok && x->tmpfs)
        ok = S_ISDIR(st.st_mode) && fstatfs(fd, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
      else if (ok)
        ok = (unsigned long long)st.st_dev == x->dev && (unsigned long long)st.st_ino == x->ino;
      if (ok && strcmp(x->path, "/") != 0) {
        snprintf(parent, sizeof parent, "%s", x->path);
        int pfd = open(dirname(parent), O_PATH | O_DIRECTORY | O_CLOEXEC);
        unsigned long long mine = mount_id(fd);
        ok = pfd >= 0 && mine != 0 && mine != mount_id(pfd);
        if (pfd >= 0) close(pfd);
      }
      close(fd);
    }
    if (!ok) {
      errno = 0;
      die("mounts", x->path);
    }
  }
}

static long long parse_num(const char *s, const char *flag) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < 0) {
    fprintf(stderr, "cordon-sandbox: %s needs a non-negative integer, got \"%s\"\n", flag, s);
    exit(2);
  }
  return v;
}

/* ---- the session's own terminal (launch step, outside the sandbox) ----------------------- */

/* The agent never holds a descriptor of the user's terminal: with a terminal on 0-2, bubblewrap
 * runs in a new session on a pseudo-terminal of its own, and this process relays bytes between
 * the two (as sudo's use_pty and ssh do). Whatever the agent does to its terminal - tcsetpgrp,
 * TIOCSTI, reading after the user suspended it - reaches only that pseudo-terminal; the user's
 * terminal is read only while the session is the foreground job and not suspended. */
static int user_tty = -1;     /* the terminal found on 0-2: termios, size, job control */
static int user_out = -1;     /* where the session's output goes (a terminal among 1-2, else user_tty) */
static struct termios user_modes;
static int raw_on = 0;
static int sig_pipe[2] = {-1, -1};

static void note_signal(int sig) {
  int e = errno;
  unsigned char c = (unsigned char)sig;
  if (write(sig_pipe[1], &c, 1) < 0) { /* full: a wake-up is already pending */ }
  errno = e;
}

/* Whether the session is the foreground job of the user's terminal. A terminal that is not this
 * process's controlling terminal has no job control at all: the session then owns it. */
static int in_foreground(void) {
  pid_t fg = tcgetpgrp(user_tty);
  if (fg < 0) return errno == ENOTTY;
  return fg == getpgrp();
}

static void enter_raw(void) {
  if (raw_on || tcgetattr(user_tty, &user_modes) != 0) return;
  struct termios t = user_modes;
  cfmakeraw(&t);
  if (tcsetattr(user_tty, TCSADRAIN, &t) == 0) raw_on = 1;
}

/* Only ever from the foreground: from the background, tcsetattr would overwrite the modes of
 * whoever has the terminal now (and stop this process with SIGTTOU). */
static void leave_raw(void) {
  if (!raw_on) return;
  if (in_foreground()) tcsetattr(user_tty, TCSADRAIN, &user_modes);
  raw_on = 0;
}

static void copy_size(int to) {
  struct winsize ws;
  if (ioctl(user_tty, TIOCGWINSZ, &ws) == 0) ioctl(to, TIOCSWINSZ, &ws);
}

static void write_all(int fd, const char *buf, ssize_t n) {
  for (ssize_t off = 0; off < n;) {
    ssize_t w = write(fd, buf + off, (size_t)(n - off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return; /* the user's terminal is gone: output has nowhere to go */
    }
    off += w;
  }
}

/* Read what the session wrote to its terminal and pass it on; 0 once the pseudo-terminal has
 * no writer left. */
static int pass_output(int master) {
  char buf[16384];
  ssize_t n = read(master, buf, sizeof buf);
  if (n > 0) {
    write_all(user_out, buf, n);
    return 1;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
  return 0;
}

static const int relay_signals[] = {SIGCHLD, SIGWINCH, SIGCONT, SIGTSTP, SIGTERM,
                                    SIGINT,  SIGHUP,   SIGQUIT, SIGUSR2};

static int relay_terminal(char **cmd, int keep, int status) {
  pid_t parent = getppid();
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) die("terminal", "cannot allocate a pseudo-terminal");
  const char *name = ptsname(master);
  int slave = name == NULL ? -1 : open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) die("terminal", "cannot open the pseudo-terminal");
  /* The session's terminal starts as the user's is now (cooked modes, size); the user's goes
   * raw while the session is in the foreground, so every key reaches the session's line
   * discipline once: Ctrl-C and Ctrl-Z signal the agent, not Cordon. */
  if (tcgetattr(user_tty, &user_modes) == 0) tcsetattr(slave, TCSANOW, &user_modes);
  copy_size(slave);
  if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) die("terminal", "pipe");
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  for (size_t k = 0; k < sizeof relay_signals / sizeof relay_signals[0]; k++) {
    struct sigaction sa = {.sa_handler = note_signal, .sa_flags = SA_RESTART};
    sigfillset(&sa.sa_mask);
    sigaction(relay_signals[k], &sa, NULL);
  }
  /* Cordon dying must not leave the terminal raw: the parent's death arrives as SIGTERM. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(EXIT_SETUP);
  /* Cordon learns on the helper's status pipe that Ctrl-Z must go through this process. */
  if (status >= 0) dprintf(status, "{\"event\":\"terminal\",\"relay\":true}\n");
  int fg = in_foreground();
  if (fg) enter_raw();
  int was_tty[3];
  for (int fd = 0; fd < 3; fd++) was_tty[fd] = isatty(fd);

  pid_t child = fork();
  if (child < 0) {
    leave_raw();
    die("terminal", "fork");
  }
  if (child == 0) {
    for (size_t k = 0; k < sizeof relay_signals / sizeof relay_signals[0]; k++) signal(relay_signals[k], SIG_DFL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) != 0) die("terminal", "cannot make the pseudo-terminal the session's");
    /* Exactly the streams that were the terminal become the session's terminal; redirected
     * ones stay as they are. */
    for (int fd = 0; fd < 3; fd++)
      if (was_tty[fd] && dup2(slave, fd) != fd) die("terminal", "dup2");
    execv(cmd[0], cmd);
    fprintf(stderr, "cordon-sandbox: cannot run %s: %s\n", cmd[0], strerror(errno));
    _exit(EXIT_SETUP);
  }
  close(slave);
  /* bubblewrap holds Cordon's pipes now; this process keeps none of them. */
  for (int fd = 3; fd < keep; fd++) close(fd);
  int fl = fcntl(master, F_GETFL);
  fcntl(master, F_SETFL, fl | O_NONBLOCK);
  sigprocmask(SIG_SETMASK, &old, NULL);

  char in_buf[4096];
  ssize_t in_len = 0, in_off = 0;
  int input_open = 1, output_open = 1, status_word = 0, done = 0;
  while (!done) {
    struct pollfd p[3] = {{.fd = sig_pipe[0], .events = POLLIN},
                          {.fd = output_open ? master : -1, .events = (short)(POLLIN | (in_len > in_off ? POLLOUT : 0))},
                          /* Polled with no events too: a hang-up is reported anyway. */
                          {.fd = input_open ? user_tty : -1,
                           .events = (short)(fg && in_len == in_off ? POLLIN : 0)}};
    /* A job the shell continued with `bg` and later brings back with `fg` is not sent SIGCONT
     * (it is running): in the background, look every 200 ms whether it is the foreground. */
    int ready = poll(p, 3, fg ? -1 : 200);
    if (ready < 0) {
      if (errno == EINTR) continue;
      /* Cannot happen with valid descriptors; relaying stops, the session still ends as its
       * sandbox does. */
      waitpid(child, &status_word, 0);
      break;
    }
    if (!fg && in_foreground()) {
      fg = 1;
      enter_raw();
      copy_size(master);
    }
    if (ready == 0) continue;
    int hung_up = 0;
    if (p[2].revents & POLLIN) {
      ssize_t n = read(user_tty, in_buf, sizeof in_buf);
      if (n > 0) {
        in_len = n;
        in_off = 0;
      } else if (n == 0 || errno == EIO) hung_up = 1;
      else if (errno != EINTR && errno != EAGAIN) input_open = 0; /* a stream that cannot be read */
    } else if (p[2].revents & (POLLHUP | POLLERR)) hung_up = 1;
    if (hung_up) {
      /* The user's terminal is gone (its window closed): hang up the session's terminal too, so
       * the agent gets SIGHUP as it would have from a terminal of its own. */
      input_open = 0;
      if (output_open) {
        close(master);
        output_open = 0;
      }
    }
    if (output_open && (p[1].revents & POLLOUT) && in_len > in_off) {
      ssize_t w = write(master, in_buf + in_off, (size_t)(in_len - in_off));
      if (w > 0) in_off += w;
    }
    if (output_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) output_open = pass_output(master);
    if (!(p[0].revents & POLLIN)) continue;
    unsigned char sigs[64];
    ssize_t ns = read(sig_pipe[0], sigs, sizeof sigs);
    for (ssize_t k = 0; k < ns; k++) {
      switch (sigs[k]) {
        case SIGCHLD: {
          int st;
          if (waitpid(child, &st, WNOHANG) == child) {
            status_word = st;
            done = 1;
          }
          break;
        }
        case SIGWINCH:
          if (fg) copy_size(master);
          break;
        case SIGTSTP:
          /* The agent stopped (Cordon passes the helper's report on), or the job was told to
           * stop: give the user's terminal back as it was, then stop the whole job so the shell
           * takes the terminal. Nothing reads it until the job is continued in the foreground. */
          leave_raw();
          fg = 0;
          kill(0, SIGSTOP);
          break;
        case SIGCONT:
          /* `fg` or `bg`: only in the foreground is the terminal touched and read again. */
          fg = in_foreground();
          if (fg) {
            enter_raw();
            copy_size(master);
          }
          break;
        case SIGTERM:
          if (getppid() != parent) {
            leave_raw();
            kill(child, SIGKILL);
          }
          break;
        default:
          /* SIGINT, SIGHUP, SIGQUIT, SIGUSR2 sent to the job: Cordon passes them to the agent. */
          break;
      }
    }
  }
  /* bubblewrap has exited, and with it everything in the sandbox: pass on what the session
   * wrote last, give the terminal back, and end as bubblewrap did. */
  while (output_open && pass_output(master)) {
    struct pollfd q = {.fd = master, .events = POLLIN};
    if (poll(&q, 1, 0) <= 0) break;
  }
  leave_raw();
  if (WIFSIGNALED(status_word)) {
    int sig = WTERMSIG(status_word);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    kill(getpid(), sig);
    return 128 + sig;
  }
  return WIFEXITED(status_word) ? WEXITSTATUS(status_word) : EXIT_SETUP;
}

static int launch(int argc, char **argv) {
  int keep = 3, status = -1, i = 2;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (strcmp(argv[i], "--keep-fds") == 0 && i + 1 < argc) {
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 3 || v > 64) usage();
      keep = (int)v;
    } else if (strcmp(argv[i], "--status-fd") == 0 && i + 1 < argc) {
      status = (int)parse_num(argv[++i], "--status-fd");
    } else usage();
  }
  if (i >= argc || argv[i][0] != '/') usage();
  close_strays(keep, NULL, 0);
  for (int fd = 0; fd < 3 && user_tty < 0; fd++)
    if (isatty(fd)) user_tty = fd;
  if (user_tty >= 0) {
    user_out = isatty(1) ? 1 : isatty(2) ? 2 : user_tty;
    return relay_terminal(&argv[i], keep, status);
  }
  /* No terminal on 0-2, but perhaps a controlling terminal (`cordon run <in >out` typed at a
   * shell): a session of its own leaves bubblewrap and the agent without one, so /dev/tty
   * inside opens nothing. Terminal signals reach `cordon run`, which passes them on. */
  if (setsid() < 0) die("terminal", "setsid");
  execv(argv[i], &argv[i]);
  fprintf(stderr, "cordon-sandbox: cannot run %s: %s\n", argv[i], strerror(errno));
  return EXIT_SETUP;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--launch") == 0) return launch(argc, argv);
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "--probe") == 0) return probe();
    if (strcmp(a, "--allow-unix") == 0) {
      allow_unix = 1;
      continue;
    }
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    enum rule_kind kind = RULE_READ;
    int is_rule = 1;
    if (strcmp(a, "--list") == 0) kind = RULE_LIST;
    else if (strcmp(a, "--read") == 0) kind = RULE_READ;
    else if (strcmp(a, "--write") == 0) kind = RULE_WRITE;
    else if (strcmp(a, "--exec") == 0) kind = RULE_EXEC;
    else if (strcmp(a, "--exec-tree") == 0) kind = RULE_EXEC_TREE;
    else is_rule = 0;
    if (is_rule) {
      if (n_rules >= MAX_RULES) usage();
      rules[n_rules].kind = kind;
      rules[n_rules++].path = v;
    } else if (strcmp(a, "--expect-tmpfs") == 0 || strcmp(a, "--expect-mount") == 0) {
      if (n_expects >= MAX_RULES) usage();
      struct expected_mount *x = &expects[n_expects++];
      x->tmpfs = a[9] == 't';
      x->path = v;
      if (!x->tmpfs) {
        char *end;
        errno = 0;
        x->dev = strtoull(v, &end, 10);
        if (errno || *end != ':') usage();
        x->ino = strtoull(end + 1, &end, 10);
        if (errno || *end != ':' || end[1] != '/') usage();
        x->path = end + 1;
      }
    } else if (strcmp(a, "--noexec") == 0) {
      if (n_noexec >= MAX_RULES) usage();
      noexec_paths[n_noexec++] = v;
    } else if (strcmp(a, "--bridge") == 0) {
      const char *colon = strchr(v, ':');
      if (colon == NULL) usage();
      char port[8] = {0};
      size_t len = (size_t)(colon - v);
      if (len == 0 || len >= sizeof port) usage();
      memcpy(port, v, len);
      bridge_port = (int)parse_num(port, "--bridge");
      if (bridge_port < 1 || bridge_port > 65535) usage();
      bridge_socket = colon + 1;
      if (strlen(bridge_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) usage();
    } else if (strcmp(a, "--go-fd") == 0) {
      go_fd = (int)parse_num(v, a);
      if (fcntl(go_fd, F_SETFD, FD_CLOEXEC) != 0) die("go-fd", v);
    } else if (strcmp(a, "--status-fd") == 0) {
      status_fd = (int)parse_num(v, a);
      if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) != 0) die("status-fd", v);
    } else if (strcmp(a, "--nproc") == 0) rl_nproc = parse_num(v, a);
    else if (strcmp(a, "--as") == 0) rl_as = parse_num(v, a);
    else if (strcmp(a, "--cpu") == 0) rl_cpu = parse_num(v, a);
    else if (strcmp(a, "--fsize") == 0) rl_fsize = parse_num(v, a);
    else if (strcmp(a, "--nofile") == 0) rl_nofile = parse_num(v, a);
    else usage();
  }
  if (i >= argc) usage();
  char **cmd = &argv[i];
  if (getpid() != 1) {
    errno = 0;
    die("init", "must run as pid 1 of a new pid namespace (bwrap --unshare-pid --as-pid-1)");
  }
  /* Whatever bubblewrap passed on besides the standard streams and the two pipes named on the
   * command line (its own status descriptor, anything its caller leaked) reaches neither the
   * bridge nor the agent. */
  const int kept[] = {status_fd, go_fd};
  close_strays(3, kept, 2);

  verify_mounts();
  if (n_noexec > 0) enter_private_mounts();
  for (int k = 0; k < n_noexec; k++) remount_noexec(noexec_paths[k]);

  pid_t bridge_pid = -1;
  int bridge_restarts = 0, bridge_failed = 0;
  if (bridge_port > 0) {
    bridge_listener = open_bridge_listener();
    bridge_pid = start_bridge();
    if (bridge_pid < 0) die("bridge", "fork");
  }

  /* Everything is ready; the agent starts only once Cordon has recorded its launch (one byte
   * on the go fd). Cordon writes that record while bubblewrap builds the sandbox. */
  if (go_fd >= 0) {
    char go = 0;
    ssize_t n;
    while ((n = read(go_fd, &go, 1)) < 0 && errno == EINTR) {}
    if (n != 1 || go != 'g') {
      errno = 0;
      die("start", "cordon did not clear the start (the launch could not be recorded)");
    }
    close(go_fd);
  }

  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  /* The controlling terminal, whichever standard stream (if any) is attached to it: the agent
   * becomes its foreground process group, so terminal signals reach the agent alone. */
  int tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  ctty = tty;
  int sync_pipe[2];
  if (pipe2(sync_pipe, O_CLOEXEC) != 0) die("init", "pipe");
  pid_t child = fork();
  if (child < 0) die("init", "fork");
  if (child == 0) {
    close(sync_pipe[1]);
    setpgid(0, 0);
    char go;
    /* Wait until the parent has handed over the terminal. */
    while (read(sync_pipe[0], &go, 1) < 0 && errno == EINTR) {}
    close(sync_pipe[0]);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    set_limit(RLIMIT_NPROC, rl_nproc, "processes");
    set_limit(RLIMIT_AS, rl_as, "address space");
    set_limit(RLIMIT_CPU, rl_cpu, "cpu time");
    set_limit(RLIMIT_FSIZE, rl_fsize, "file size");
    set_limit(RLIMIT_NOFILE, rl_nofile, "open files");
    set_limit(RLIMIT_CORE, 0, "core dumps");
    drop_capabilities();
    enter_landlock(1);
    install_seccomp(FOR_AGENT);
    execv(cmd[0], cmd);
    int e = errno;
    fprintf(stderr, "cordon-sandbox: cannot run %s: %s\n", cmd[0], strerror(e));
    if (status_fd >= 0) dprintf(status_fd, "{\"event\":\"exec-failed\",\"errno\":%d}\n", e);
    _exit(e == ENOENT ? 127 : 126);
  }
  close(sync_pipe[0]);
  setpgid(child, child);
  agent_pid = child;
  if (tty >= 0) tcsetpgrp(tty, child);
  close(sync_pipe[1]);
  if (status_fd >= 0)
    dprintf(status_fd, "{\"event\":\"started\",\"pid\":%d,\"resumeForeground\":%d,\"resumeBackground\":%d}\n",
            (int)child, SIGRTMIN + 1, SIGRTMIN + 2);

  for (size_t k = 0; k < sizeof forwarded / sizeof forwarded[0]; k++) {
    struct sigaction sa = {.sa_sigaction = forward, .sa_flags = SA_RESTART | SA_SIGINFO};
    sigaction(forwarded[k], &sa, NULL);
  }
  for (int rt = 1; rt <= 2; rt++) {
    struct sigaction sa = {.sa_sigaction = forward, .sa_flags = SA_RESTART | SA_SIGINFO};
    sigaction(SIGRTMIN + rt, &sa, NULL);
  }
  /* The helper hands the terminal back and forth; it must not be stopped for doing so. */
  signal(SIGTTOU, SIG_IGN);
  sigset_t run_mask;
  sigemptyset(&run_mask);
  sigprocmask(SIG_SETMASK, &run_mask, NULL);

  int status = 0;
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WUNTRACED);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p == child && WIFSTOPPED(st)) {
      /* Ctrl-Z: `cordon run` stops itself so the user's shell sees a stopped job and takes the
       * terminal back, as it does for any job. */
      if (status_fd >= 0) dprintf(status_fd, "{\"event\":\"stopped\",\"signal\":%d}\n", WSTOPSIG(st));
      continue;
    }
    if (p == child) {
      status = st;
      break;
    }
    if (p == bridge_pid && !bridge_failed) {
      /* The agent has no network without the bridge: report each death and restart it; a
       * bridge that keeps dying ends the session. */
      int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0, code = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
      bridge_pid = -1;
      if (bridge_restarts < MAX_BRIDGE_RESTARTS) bridge_pid = start_bridge();
      if (bridge_pid > 0) {
        bridge_restarts++;
        if (status_fd >= 0)
          dprintf(status_fd,
                  "{\"event\":\"bridge-restarted\",\"signal\":%d,\"code\":%d,\"restarts\":%d,\"maxRestarts\":%d,\"pid\":%d}\n",
                  sig, code, bridge_restarts, MAX_BRIDGE_RESTARTS, (int)bridge_pid);
        continue;
      }
      bridge_failed = 1;
      if (status_fd >= 0)
        dprintf(status_fd, "{\"event\":\"bridge-failed\",\"signal\":%d,\"code\":%d,\"restarts\":%d}\n", sig,
                code, bridge_restarts);
      kill(-agent_pid, SIGKILL);
      kill(child, SIGKILL);
    }
  }
  agent_pid = 0;
  /* The terminal stays with the finished agent's group until the shell takes it back when
   * `cordon run` exits: the job's own group lives outside this pid namespace. */
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  /* Ended by Cordon, not by the agent: the session could not be kept governed. */
  if (bridge_failed) code = EXIT_SETUP;
  if (status_fd >= 0)
    dprintf(status_fd, "{\"event\":\"exited\",\"code\":%d,\"signal\":%d}\n", code,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  /* pid 1 leaving ends the namespace: the kernel kills every process the agent left behind. */
  return code;
}
