"""A job killed with SIGKILL or SIGTERM, after the guarded block or inside it, takes the
children it started under the guard with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")

ROOT = Path(__file__).resolve().parents[2]

JOB = textwrap.dedent(
    """
    import multiprocessing as mp
    import os
    import signal
    import sys
    import time

    from r2rec.procs import children_die_with_me


    def sleeper():
        time.sleep(300)


    def parent_of_one(up):  # a child that starts its own, as vLLM's engine core does
        inner = mp.get_context("spawn").Process(target=sleeper)
        inner.start()
        print("grandchild", inner.pid, flush=True)
        up.set()
        time.sleep(300)


    def report(spawned, forked, after):  # what the test watches; after=0: none started
        for name, pid in (("spawned", spawned.pid), ("forked", forked.pid), ("after", after)):
            print(name, pid, flush=True)


    if __name__ == "__main__":
        inside = sys.argv[1] == "inside"  # killed while the engine is still starting
        at_once = sys.argv[1] == "at-once"  # dead as soon as the block has ended
        with children_die_with_me():
            up = mp.get_context("spawn").Event()
            spawned = mp.get_context("spawn").Process(target=parent_of_one, args=(up,))  # vLLM
            spawned.start()
            forked = mp.get_context("fork").Process(target=sleeper)
            forked.start()
            assert up.wait(120)  # the block ends once the engine is up
            if inside:
                time.sleep(2)  # the watchdog looks every half second
                report(spawned, forked, 0)
                time.sleep(300)
        if at_once:
            report(spawned, forked, 0)
            os.kill(os.getpid(), signal.SIGKILL)
        after = mp.get_context("spawn").Process(target=sleeper)
        after.start()
        report(spawned, forked, after.pid)
        time.sleep(300)
    """
)


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped, or no process, counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize(
    ("where", "sig"),
    [
        ("after", signal.SIGKILL),
        ("after", signal.SIGTERM),
        ("inside", signal.SIGKILL),
        ("at-once", signal.SIGKILL),  # its own
    ],
)
def test_a_killed_job_takes_what_the_block_started_and_only_that(tmp_path, where, sig):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen(
        [sys.executable, str(script), where], stdout=subprocess.PIPE, text=True, env=env,
        cwd=ROOT,
    )  # fmt: skip
    pids: dict[str, int] = {}
    try:
        while len(pids) < 4:
            line = job.stdout.readline()
            assert line, f"the job ended early (rc {job.poll()})"
            name, pid = line.split()
            pids[name] = int(pid)
        if where != "at-once":  # there the watchdog may already have done its work
            assert all(alive(p) for p in pids.values() if p)
        os.kill(job.pid, sig)
        job.wait(30)
        deadline = time.monotonic() + 30  # a loaded CPU delivers late, not never
        inside = ("spawned", "forked", "grandchild")
        while any(alive(pids[name]) for name in inside):
            left = [name for name in inside if alive(pids[name])]
            assert time.monotonic() < deadline, f"{left} outlived the job killed by {sig!r}"
            time.sleep(0.2)
        if pids["after"]:
            assert alive(pids["after"])  # started after the block: not the block's to kill
    finally:
        job.kill()
        for pid in filter(None, pids.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_multiprocessing_resource_tracker_is_left_to_clean_up_after_its_users():
    from r2rec import procs

    # A fresh process and its own tracker: this test process's tracker may be one a
    # forked parent started, or gone, depending on what ran before it.
    code = (
        "from multiprocessing import resource_tracker as r; r.ensure_running(); "
        "print(r._resource_tracker._pid, flush=True); import time; time.sleep(60)"
    )
    user = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        tracker = int(user.stdout.readline())
        assert procs._resource_tracker(tracker)
        assert not procs._resource_tracker(user.pid)
    finally:
        user.kill()
        user.wait(30)
