"""Child processes that do not outlive the job that started them.

vLLM runs its engine core in a child process (spawned, on CPU), and the core starts its
workers. A job that exits or is stopped normally shuts them down. A job killed with
SIGKILL (the kernel's OOM killer, ``kill -9``) cannot: the engine core, holding its KV
cache (gigabytes), keeps running under init with its workers, and the next run starts
with that memory gone (found after an OOM kill in issue 15's results run).

Linux's parent-death signal (``PR_SET_PDEATHSIG``) must be requested by the child, and
a spawned vLLM child runs none of our code. So :func:`children_die_with_me` starts a
small watchdog process before the block. While the block runs (the engine starting: a
minute or two on a loaded CPU, long enough to be killed in) the watchdog itself notes
every new descendant of the job, by pid and start time; when the block ends the job
sends it the exact list. The watchdog waits on a pidfd of the job, not on a pipe's
end-of-file: a child forked by the job holds a copy of any pipe, and would keep the
watchdog waiting after the job died. When the job dies, however it dies, the watchdog
SIGKILLs those processes that still run. After a clean exit vLLM has already stopped
them, and there is nothing to kill. Not covered: a killed watchdog. Linux only (it reads
``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Runs in a fresh interpreter: argv = the job's pid, its start time, the pids it already had.
# Until "end", it records the job's new descendants itself every half second; "end" hands
# over the job's own list ("pid start" lines before it). Then it waits for the job's death.
_WATCHDOG = """
import os, select, signal, sys
from pathlib import Path
job, job_start = int(sys.argv[1]), sys.argv[2]
before = {int(p) for p in sys.argv[3].split(",") if p} | {os.getpid()}
def start(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None
def tracker(pid):  # multiprocessing's resource tracker frees shared memory once alone
    try:
        return b"multiprocessing.resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
def descendants(pid):
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(kids - found)
            found |= kids
    return found
try:
    death = os.pidfd_open(job)
except (AttributeError, OSError):
    death = None
seen, watching, text, alive = {}, True, "", True
while alive:
    ready = select.select([0] + ([death] if death is not None else []), [], [],
                          0.5 if watching or death is None else None)[0]
    alive = start(job) == job_start and not (death is not None and death in ready)
    if 0 in ready or not alive:
        # Read all the job wrote, its last words too: it may die right after the list.
        while select.select([0], [], [], 0)[0]:
            chunk = os.read(0, 65536).decode()
            if not chunk:  # the pipe closed: the job (and every child it forked) is gone
                alive = False
                break
            text += chunk
        if watching and text.endswith("end\\n"):
            watching = False
            seen = dict(line.split() for line in text.splitlines()[:-1])
            if not seen:
                sys.exit(0)
    elif watching:
        for pid in descendants(job) - before:
            if pid not in seen and (started := start(pid)):
                seen[pid] = started
for pid, started in seen.items():
    if start(int(pid)) == started and not tracker(int(pid)):  # the same process, not a reused pid
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
    """Processes started inside this block are SIGKILLed when this process dies, also
    when it dies inside the block."""
    if not sys.platform.startswith("linux"):
        yield
        return
    me = os.getpid()
    before = descendants(me)
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(me), _start_time(me) or "",
         ",".join(map(str, sorted(before)))],
        stdin=subprocess.PIPE, text=True, close_fds=True,
    )  # fmt: skip
    try:
        yield
    finally:
        # The job's own list is exact (the watchdog's samples may miss a process started
        # and gone between two looks, or see a resource tracker it cannot yet tell apart).
        new = sorted(p for p in descendants(me) - before - {watchdog.pid}
                     if not _resource_tracker(p))  # fmt: skip
        lines = [f"{pid} {start}\n" for pid in new if (start := _start_time(pid))]
        with contextlib.suppress(OSError):  # a watchdog already gone cannot be told
            watchdog.stdin.write("".join(lines) + "end\n")
            watchdog.stdin.flush()
        if lines:
            # Its stdin stays open for the life of this process: a collected Popen would
            # close it, and the watchdog would take that for this process's death.
            _watchdogs.append(watchdog)
        else:  # nothing to watch: it exits now, and is reaped here
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=30)
