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


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _resource_tracker(pid: int, wait: bool = True) -> bool:
    """multiprocessing's tracker: it exits by itself once its users are gone, and must be
    let to, because that is when it frees their leaked shared memory and semaphores."""
    for _ in range(40 if wait else 1):
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


def _watch(job: int, job_start: str | None, before: list[int]) -> None:
    """The watchdog's body, in its own interpreter (``python -c``, stdin from the job).

    Until the job's "end" line it notes the job's new descendants itself every half
    second; "end" hands over the job's own list (the "pid start" lines before it). Then
    it waits for the job's death and SIGKILLs what still runs of that list."""
    import select
    import signal

    mine = set(before) | {os.getpid()}
    try:
        death = os.pidfd_open(job)  # readable once the job has exited
    except (AttributeError, OSError):
        death = None  # old kernel, or the job already gone: poll its start time instead
    seen: dict[int, str] = {}
    watching, text, alive = True, "", True
    while alive:
        waits = [0] if death is None else [0, death]
        ready = select.select(waits, [], [], 0.5 if watching or death is None else None)[0]
        alive = _start_time(job) == job_start and not (death is not None and death in ready)
        if 0 in ready or not alive:
            # Read all the job wrote, its last words too: it may die right after the list.
            while select.select([0], [], [], 0)[0]:
                chunk = os.read(0, 65536).decode()
                if not chunk:  # the pipe closed: the job (and every child it forked) is gone
                    alive = False
                    break
                text += chunk
            if watching and text.endswith("end\n"):
                watching = False
                seen = {int(pid): start for pid, start in
                        (line.split() for line in text.splitlines()[:-1])}  # fmt: skip
                if not seen:
                    return
        elif watching:
            for pid in descendants(job) - mine:
                if pid not in seen and (started := _start_time(pid)):
                    seen[pid] = started
    for pid, started in seen.items():
        # The same process (not a reused pid), and not multiprocessing's resource
        # tracker, which frees the shared memory of its users once they are gone.
        if _start_time(pid) == started and not _resource_tracker(pid, wait=False):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


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
    # Where this module is, since the watchdog's working directory and path are the job's.
    root = str(Path(__file__).resolve().parents[1])
    code = (f"import sys; sys.path.insert(0, {root!r}); from r2rec.procs import _watch; "
            f"_watch({me}, {_start_time(me)!r}, {sorted(before)!r})")  # fmt: skip
    watchdog = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, text=True, close_fds=True
    )
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
