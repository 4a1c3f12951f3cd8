/* Test probe run inside the sandbox: tries system calls an escaping agent would use and prints
 * one line per attempt, "name ok" or "name errno-name". Built by the sandbox tests with gcc. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void report(const char *name, long r) {
  if (r >= 0) printf("%s ok\n", name);
  else printf("%s %s\n", name, strerrorname_np(errno));
  fflush(stdout);
}

/* `probe fork-bomb N`: fork up to N children that wait, and report how far it got. */
static int fork_bomb(int max) {
  static pid_t kids[65536];
  int n = 0;
  if (max > 65536) max = 65536;
  for (; n < max; n++) {
    pid_t p = fork();
    if (p == 0) {
      pause();
      _exit(0);
    }
    if (p < 0) {
      printf("fork-bomb %s %d\n", strerrorname_np(errno), n);
      break;
    }
    kids[n] = p;
  }
  if (n == max) printf("fork-bomb ok %d\n", n);
  fflush(stdout);
  for (int k = 0; k < n; k++) kill(kids[k], SIGKILL);
  while (wait(NULL) > 0) {}
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 2 && strcmp(argv[1], "fork-bomb") == 0) return fork_bomb(atoi(argv[2]));
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  report("ptrace-attach", ptrace(PTRACE_ATTACH, child, 0, 0));
  report("ptrace-traceme", ptrace(PTRACE_TRACEME, 0, 0, 0));
  struct iovec local = {0}, remote = {0};
  report("process_vm_readv", syscall(SYS_process_vm_readv, child, &local, 1, &remote, 1, 0));
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  report("unshare-user", unshare(CLONE_NEWUSER));
  report("unshare-net", unshare(CLONE_NEWNET));
  long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, NULL, 0);
  report("clone-newuser", pid);
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_NEWUSER;
  ca.exit_signal = SIGCHLD;
  pid = syscall(SYS_clone3, &ca, sizeof ca);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, NULL, 0);
  report("clone3-newuser", pid);
  report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
  report("umount", umount2("/proc", MNT_DETACH));
  report("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
  report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
  report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
  report("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3));
  report("io_uring_setup", syscall(SYS_io_uring_setup, 8, NULL));
  report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
  report("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
  report("set_mempolicy", syscall(SYS_set_mempolicy, 0, NULL, 0));
  report("modify_ldt", syscall(SYS_modify_ldt, 0, NULL, 0));
  report("socket-unix", socket(AF_UNIX, SOCK_STREAM, 0));
  report("socket-netlink", socket(AF_NETLINK, SOCK_RAW, 0));
  report("socket-packet", socket(AF_PACKET, SOCK_RAW, 0));
  report("socket-inet", socket(AF_INET, SOCK_STREAM, 0));
  report("socket-inet6", socket(AF_INET6, SOCK_DGRAM, 0));
  /* Families the network namespace does not isolate, or that the kernel gains later. */
  report("socket-vsock", socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
  report("socket-alg", socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0));
  report("socket-bluetooth", socket(31 /* AF_BLUETOOTH */, SOCK_RAW, 1));
  report("socket-key", socket(15 /* AF_KEY */, SOCK_RAW, 2));
  report("socket-xdp", socket(44 /* AF_XDP */, SOCK_RAW, 0));
  report("socket-unknown", socket(1000, SOCK_STREAM, 0));
  int sv[2];
  report("socketpair-unix", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  report("socketpair-inet", socketpair(AF_INET, SOCK_STREAM, 0, sv));
  report("socketpair-vsock", socketpair(40, SOCK_STREAM, 0, sv));
  char c = 'x';
  int tty = open("/dev/tty", O_RDWR);
  report("tiocsti", tty < 0 ? (errno = ENOTTY, -1) : ioctl(tty, TIOCSTI, &c));
  /* A binary copied into anonymous memory and executed from there (memfd + fexecve). */
  report("memfd_create", memfd_create("plain", MFD_CLOEXEC));
  report("memfd_create-exec", memfd_create("exec", MFD_CLOEXEC | 0x0010U));
  int mfd = memfd_create("x", MFD_CLOEXEC | 0x0008U /* MFD_NOEXEC_SEAL */);
  report("memfd_create-noexec", mfd);
  int src = open("/usr/bin/cat", O_RDONLY);
  char buf[65536];
  ssize_t n;
  while (mfd >= 0 && src >= 0 && (n = read(src, buf, sizeof buf)) > 0) write(mfd, buf, (size_t)n);
  pid = fork();
  if (pid == 0) {
    char *args[] = {"cat", "/etc/hostname", NULL};
    char *envp[] = {NULL};
    fexecve(mfd, args, envp);
    printf("memfd-exec %s\n", strerrorname_np(errno));
    fflush(stdout);
    _exit(0);
  }
  waitpid((pid_t)pid, NULL, 0);
  report("proc-1-mem", open("/proc/1/mem", O_RDWR));
  report("kill-1", kill(1, 0));
  if (argc > 1) report("kill-host", kill(atoi(argv[1]), 0));
  return 0;
}
