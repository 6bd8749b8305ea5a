"""Fault injection: a real crash, or a real race, at a named point of a real job.

``R2REC_FAULT_KILL=<point>:<n>`` makes the job SIGKILL its own process group the n-th
time it passes ``point`` (counted per process). Nothing is mocked: the job, its engine
processes and the files it left are exactly what a power cut at that moment leaves, and
the test then checks what a rerun does with them. A poll from outside ("kill when the
first chunk shows up") races the job; this fires at one known point, every time.

``R2REC_FAULT_RAISE=<point>:<n>`` raises instead: a job that fails mid-way and lives to
record it (``job_runs``).

``R2REC_FAULT_BARRIER=<point>:<n>:<dir>`` makes every process that reaches ``point``
wait there until ``n`` processes have (each leaves a file in ``dir``): two writers that
both read a table's snapshot and then both commit, the race a backfill with
``max_active_runs > 1`` produces by chance, every time.

Unset (the default) each costs one dictionary lookup per call. Points in use:

* ``score.chunk_committed`` (inference.score): after a chunk's commit to score_chunks;
* ``evaluate.model_written`` (inference.evaluate): after a model's metrics are written;
* ``<sft|grpo>.checkpoint_partial`` (trainer.common): a checkpoint's weights are written,
  its trainer state not yet, i.e. a half-written checkpoint;
* ``<sft|grpo>.checkpoint_saved`` (trainer.common): after a complete checkpoint;
* ``lakehouse.before_commit`` (r2rec.lakehouse): a Spark write has read the snapshot it
  commits against (barrier).
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "R2REC_FAULT_KILL"
RAISE_ENV = "R2REC_FAULT_RAISE"
BARRIER_ENV = "R2REC_FAULT_BARRIER"
_passed: dict[str, int] = {}


class InjectedFault(RuntimeError):
    """The error ``R2REC_FAULT_RAISE`` throws: a job failing mid-way, as a bug would."""


def _target(env: str) -> tuple[str, int] | None:
    spec = os.environ.get(env, "").strip()
    if not spec:
        return None
    point, _, count = spec.rpartition(":")
    if not point or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{env} must be <point>:<n> with n >= 1, got {spec!r}")
    return point, int(count)


def checkpoint(point: str) -> None:
    """Count a pass through ``point``; on the configured pass SIGKILL the process group
    (``R2REC_FAULT_KILL``) or raise :class:`InjectedFault` (``R2REC_FAULT_RAISE``)."""
    kill, fail = _target(ENV), _target(RAISE_ENV)
    if (kill is None or kill[0] != point) and (fail is None or fail[0] != point):
        return
    _passed[point] = _passed.get(point, 0) + 1
    if fail is not None and fail[0] == point and _passed[point] == fail[1]:
        raise InjectedFault(f"{RAISE_ENV}: failing at {point} #{fail[1]}")
    if kill is None or kill[0] != point or _passed[point] < kill[1]:
        return
    target = kill
    print(f"{ENV}: killing the process group at {point} #{target[1]}", file=sys.stderr, flush=True)
    # The group, not just this process: engine workers (vLLM's core) must die with it,
    # as they would when a node is lost. A process that is not a group leader kills
    # only itself, so a test runner that called in-process is never taken down.
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def barrier(point: str, timeout: float = 120.0) -> None:
    """Wait at ``point`` until the configured number of processes have reached it."""
    import time
    from pathlib import Path

    spec = os.environ.get(BARRIER_ENV, "").strip()
    if not spec:
        return
    name, count, directory = spec.split(":", 2)
    if name != point or _passed.get(f"barrier:{point}"):
        return  # one pass per process: a retry after the race must not wait again
    _passed[f"barrier:{point}"] = 1
    here = Path(directory)
    here.mkdir(parents=True, exist_ok=True)
    (here / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(here.iterdir())) < int(count):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{BARRIER_ENV}: fewer than {count} processes reached {point}")
        time.sleep(0.05)
