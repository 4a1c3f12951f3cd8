"""Run a command on a new pseudo-terminal, as a terminal emulator would, for the sandbox tests.

Usage: on-pty.py WIDTHxHEIGHT -- COMMAND ARGS...
Waits for "ready", resizes the terminal to WIDTHxHEIGHT (the kernel then signals SIGWINCH to
the terminal's foreground process group), waits for the command to print "size=HEIGHT WIDTH",
sends Ctrl-C, and prints everything the command wrote and its exit status.
"""
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

cols, rows = (int(x) for x in sys.argv[1].split("x"))
argv = sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out = b""


def wait_for(token, timeout=15.0):
    global out
    end = time.time() + timeout
    while token not in out:
        if time.time() > end:
            sys.stdout.write(out.decode(errors="replace"))
            sys.exit("timed out waiting for %r" % token)
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break


wait_for(b"ready")
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
wait_for(("size=%d %d" % (rows, cols)).encode())
os.write(fd, b"\x03")
_, status = os.waitpid(pid, 0)
try:
    while True:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        out += chunk
except OSError:
    pass
sys.stdout.write(out.decode(errors="replace"))
sys.stdout.write("\nstatus=%d\n" % os.waitstatus_to_exitcode(status))
