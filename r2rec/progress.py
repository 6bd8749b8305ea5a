"""Progress of a long job, for a person at a terminal and for a log alike.

On a terminal it is a bar with units done, rate and ETA. Anywhere else (an Airflow
task log, CI, a pipe) it is one plain line at most every ``R2REC_PROGRESS_EVERY_S``
seconds (default 30), and one at the end, with the same figures, so a slow job can be
told from a stuck one without flooding the log:

    score ds=2026-11-25: 64/943 users (6.8%), 0.52 users/s, elapsed 2m03s, ETA 28m10s

A Spark job reports its steps instead (:func:`step`, and :class:`SparkWatch` for its
active stages): Spark's own progress bar is off, and its raw stage output is too
fine-grained to mean anything to an operator.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO

from r2rec.runlog import format_duration

DEFAULT_EVERY_S = 30.0


def every_s() -> float:
    raw = os.environ.get("R2REC_PROGRESS_EVERY_S", "")
    try:
        value = float(raw) if raw else DEFAULT_EVERY_S
    except ValueError:
        value = DEFAULT_EVERY_S
    return max(0.0, value)


class Progress:
    """Count units of work (users, rankings, steps) toward a known total."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "items",
        *,
        stream: IO[str] | None = None,
        interval_s: float | None = None,
        interactive: bool | None = None,
        clock=time.monotonic,
    ):
        self.label = label
        self.total = max(0, int(total))
        self.unit = unit
        self.done = 0
        self.note = ""  # e.g. the latest training loss, appended to each line
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = every_s() if interval_s is None else interval_s
        self.clock = clock
        self.started = clock()
        self._last_line = self.started
        self._closed = False
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = self._start_bar() if interactive and self.total else None

    # --- counting ----------------------------------------------------------------------
    def start_at(self, done: int) -> None:
        """Resume: ``done`` units were finished by an earlier run (not in the rate)."""
        if done <= 0:
            return
        self.total = max(0, self.total - done)
        self.label = f"{self.label} (from {done})"

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            bar, task = self._bar
            bar.update(task, completed=self.done)
            return
        now = self.clock()
        if now - self._last_line >= self.interval_s and self.done < self.total:
            self._last_line = now
            self._write(self.line(now))

    def close(self) -> None:
        """The final line (or the finished bar); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar[0].stop()
        self._write(self.line(self.clock(), final=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- figures -----------------------------------------------------------------------
    def rate(self, now: float | None = None) -> float:
        elapsed = (self.clock() if now is None else now) - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self, now: float | None = None) -> float | None:
        rate = self.rate(now)
        if rate <= 0:
            return None
        return max(0, self.total - self.done) / rate

    def line(self, now: float | None = None, *, final: bool = False) -> str:
        now = self.clock() if now is None else now
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        rate = self.rate(now)
        text = (
            f"{self.label}: {self.done}/{self.total} {self.unit}{share}, "
            f"{_rate(rate)} {self.unit}/s, elapsed {format_duration(now - self.started)}"
        )
        if self.note:
            text += f", {self.note}"
        if final:
            return text + ", done" if self.done >= self.total else text + ", stopped"
        eta = self.eta_s(now)
        return text + (f", ETA {format_duration(eta)}" if eta is not None else ", ETA unknown")

    # --- output ------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def _start_bar(self):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar
        from rich.text import Text

        unit = self.unit

        class Rate(ProgressColumn):
            def render(self, task) -> Text:
                speed = task.finished_speed or task.speed
                return Text(f"{_rate(speed)} {unit}/s" if speed else f"? {unit}/s")

        bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TaskProgressColumn(),
            Rate(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=True,  # the final plain line replaces it
        )
        task = bar.add_task(self.label, total=self.total)
        bar.start()
        return bar, task


def _rate(rate: float) -> str:
    return f"{rate:.2f}" if rate < 100 else f"{rate:,.0f}"


def step(name: str) -> None:
    """One line as a job enters a named step (a Spark job's read, build, checks, write)."""
    from r2rec import runlog

    run = runlog.current()
    who = f"{run.job} ds={run.ds}" if run is not None else "r2rec"
    elapsed = f" (at {format_duration(time.time() - run.started)})" if run is not None else ""
    print(f"{who}: {name}{elapsed}", file=sys.stderr, flush=True)


class SparkWatch:
    """Report the Spark stages running longer than the progress interval.

    Polls Spark's status tracker from a daemon thread, so even one long shuffle shows
    its tasks done and total while it runs; quiet jobs print nothing.
    """

    def __init__(self, spark, interval_s: float | None = None):
        import threading

        self.tracker = spark.sparkContext.statusTracker()
        self.interval_s = every_s() if interval_s is None else interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="r2rec-spark-watch", daemon=True)

    def start(self) -> SparkWatch:
        if self.interval_s > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def lines(self) -> list[str]:
        from r2rec import runlog

        run = runlog.current()
        who = f"{run.job} ds={run.ds}" if run is not None else "spark"
        out = []
        for stage_id in sorted(self.tracker.getActiveStageIds()):
            info = self.tracker.getStageInfo(stage_id)
            if info is None or info.numTasks == 0:
                continue
            name = " ".join(str(info.name).split())[:60]
            out.append(
                f"{who}: Spark stage {stage_id} ({name}) {info.numCompletedTasks}/"
                f"{info.numTasks} tasks, {info.numActiveTasks} running"
            )
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                for line in self.lines():
                    print(line, file=sys.stderr, flush=True)
            except Exception:  # the JVM is going away at exit: stop quietly
                return
