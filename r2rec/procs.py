"""Child processes that do not outlive the job that started them.

vLLM runs its engine core in a child process (spawned, on CPU), and the core starts its
workers. A job that exits or is stopped normally shuts them down. A job killed with
SIGKILL (the kernel's OOM killer, ``kill -9``) cannot: the engine core, holding its KV
cache (gigabytes), keeps running under init with its workers, and the next run starts
with that memory gone (found after an OOM kill in issue 15's results run).

Linux's parent-death signal (``PR_SET_PDEATHSIG``) must be requested by the child, and
a spawned vLLM child runs none of our code. So :func:`children_die_with_me` starts a
small watchdog process instead. The job tells it, through a pipe, which processes the
``with`` block started (its new descendants, by pid and start time); the pipe reaches
end-of-file when the job dies, however it dies, and the watchdog then SIGKILLs those
that still run. After a clean exit vLLM has already stopped them, and there is nothing
to kill. Not covered: a job killed while the block itself runs (the engine starting),
and a killed watchdog. Linux only (it reads ``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Runs in a fresh interpreter: reads "pid start" lines until EOF, then kills what matches.
_WATCHDOG = """
import os, signal, sys
def start(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None
wanted = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
for pid, started in wanted:
    if start(int(pid)) == started:  # the same process, not a reused pid
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
"""


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _resource_tracker(pid: int) -> bool:
    """multiprocessing's tracker: it exits by itself once its users are gone, and must be
    let to, because that is when it frees their leaked shared memory and semaphores."""
    for _ in range(40):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if cmdline:
            return b"multiprocessing.resource_tracker" in cmdline
        time.sleep(0.05)  # empty while a just-spawned process is still inside exec()
    return False


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(kids - found)
            found |= kids
    return found


_watchdogs: list[subprocess.Popen] = []  # never waited for: they outlive us by design


@contextlib.contextmanager
def children_die_with_me() -> Iterator[None]:
    """Processes started inside this block are SIGKILLed when this process dies."""
    if not sys.platform.startswith("linux"):
        yield
        return
    me = os.getpid()
    before = descendants(me)
    yield
    new = sorted(p for p in descendants(me) - before if not _resource_tracker(p))
    lines = [f"{pid} {start}\n" for pid in new if (start := _start_time(pid))]
    if not lines:
        return
    # Started after the block, so a child forked inside it cannot hold the pipe open.
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG], stdin=subprocess.PIPE, text=True, close_fds=True
    )
    watchdog.stdin.write("".join(lines))
    watchdog.stdin.flush()
    # The write end stays open for the life of this process: its closing, at exit or at
    # death, is the signal.
    _watchdogs.append(watchdog)
