#!/usr/bin/env python3
"""tests/e2e/pty_session.py: drives a program on a pseudo-terminal as a person at a terminal would.

Usage: pty_session.py [--timeout S] [--log FILE] STEP... -- PROGRAM [ARGS...]
Steps, in order:
  --expect REGEX   wait until the output since the last match matches REGEX (Python re, DOTALL)
  --send TEXT      type TEXT and Enter
  --eof            type Ctrl-D at the start of a line, once the output has been quiet for 0.3 s
                   (the line editor is waiting then). While a following --status waits, Ctrl-U
                   Ctrl-D is typed again every 2 s, up to 4 times: libedit can take a Ctrl-D that
                   arrives while it switches the terminal's mode as a character of the line (it
                   shows "^D", and a second Ctrl-D on that non-empty line does nothing), and a
                   person would clear the line and press it again
  --status N       then wait for the program to exit with status N
The whole terminal output (carriage returns removed) goes to --log FILE, or to stdout. Exits 0
when every step happened in time, 1 with the reason on stderr otherwise. Standard library only.
"""
import os
import pty
import re
import select
import signal
import sys
import time


def main():
    args = sys.argv[1:]
    if "--" not in args:
        sys.exit("usage: pty_session.py [--timeout S] [--log FILE] STEP... -- PROGRAM [ARGS...]")
    cut = args.index("--")
    opts, prog = args[:cut], args[cut + 1:]
    timeout, log, steps = 60.0, None, []
    i = 0
    while i < len(opts):
        o = opts[i]
        if o == "--timeout":
            timeout = float(opts[i + 1]); i += 2
        elif o == "--log":
            log = opts[i + 1]; i += 2
        elif o in ("--expect", "--send", "--status"):
            steps.append((o, opts[i + 1])); i += 2
        elif o == "--eof":
            steps.append((o, None)); i += 1
        else:
            sys.exit(f"pty_session.py: unknown option {o}")

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(prog[0], prog)
    out = bytearray()
    seen = 0  # where the next --expect starts looking
    status = None

    def read_some(until):
        nonlocal status
        r, _, _ = select.select([fd], [], [], max(0.0, min(0.1, until - time.time())))
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the program closed the terminal
                data = b""
            out.extend(data)
            return bool(data)
        return True

    def text():
        return out.decode("utf-8", "replace").replace("\r", "")

    def finish(ok, why=""):
        if status is None:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        t = text()
        if log:
            with open(log, "w") as f:
                f.write(t)
        else:
            sys.stdout.write(t)
        if not ok:
            sys.stderr.write(f"pty_session.py: {why}\n")
        sys.exit(0 if ok else 1)

    eof_at, eof_again = None, 0  # the last Ctrl-D typed, and how many more may follow
    for kind, val in steps:
        deadline = time.time() + timeout
        if kind == "--expect":
            pat = re.compile(val, re.DOTALL)
            while True:
                m = pat.search(text(), seen)
                if m:
                    seen = m.end()
                    break
                if time.time() > deadline:
                    finish(False, f"timed out after {timeout} s waiting for {val!r}")
                if not read_some(deadline):
                    m = pat.search(text(), seen)
                    if m:
                        seen = m.end()
                        break
                    finish(False, f"the program ended before printing {val!r}")
        elif kind == "--send":
            os.write(fd, val.encode() + b"\n")
        elif kind == "--eof":
            quiet_from = time.time()
            while time.time() - quiet_from < 0.3 and time.time() < deadline:
                before = len(out)
                read_some(time.time() + 0.1)
                if len(out) != before:
                    quiet_from = time.time()
            os.write(fd, b"\x04")
            eof_at, eof_again = time.time(), 4
        elif kind == "--status":
            while True:
                wpid, st = os.waitpid(pid, os.WNOHANG)
                if wpid == pid:
                    status = os.waitstatus_to_exitcode(st)
                    break
                if time.time() > deadline:
                    finish(False, f"timed out after {timeout} s waiting for the program to exit")
                if eof_at is not None and eof_again > 0 and time.time() - eof_at > 2:
                    os.write(fd, b"\x15\x04")
                    eof_at, eof_again = time.time(), eof_again - 1
                read_some(min(deadline, time.time() + 0.5))
            while read_some(time.time() + 0.05) and select.select([fd], [], [], 0)[0]:
                pass
            if status != int(val):
                finish(False, f"the program exited with status {status}, expected {val}")
    finish(True)


if __name__ == "__main__":
    main()
