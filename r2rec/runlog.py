"""Every job run leaves a record: one ``job_runs`` row, a start line and an end line.

An operator reading tonight's task log sees which job ran on which date, what it read
(tables at their versions) and what it wrote; an analyst asks ``job_runs`` the same
thing a week later, failures included. The lakehouse notes each table a job reads or
writes here (:func:`note_read`, :func:`note_write`), so the record states what
happened, not what a job meant to do.

A run killed outright (SIGKILL, out of memory) cannot write its row; Airflow's task
state is the record then, and the next run's row follows.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

# The tables each job reads, so its first log line can name them with their current
# versions before anything is read. tests/core/test_runlog.py holds every job to it:
# a job that reads a table missing here fails that test.
JOB_INPUTS: dict[str, tuple[str, ...]] = {
    "ingest": ("interactions_raw", "items_raw", "interactions", "items"),
    "graph": ("interactions",),
    "samples": ("graph_edges",),
    "chains": ("samples", "graph_edges"),
    "evidence": ("samples", "candidates", "graph_edges", "serve_candidates", "items"),
    "retrieval": ("graph_edges",),
    "traces": ("samples", "candidates", "chains", "candidate_evidence", "items"),
    "sft": ("sft_examples", "model_registry"),
    "grpo": ("rl_prompts", "candidate_evidence", "items", "model_registry"),
    "promote": ("eval_metrics", "eval_outcomes", "model_registry", "model_promotions"),
    "score": ("samples", "candidates", "serve_candidates", "candidate_evidence", "items",
              "score_chunks", "model_registry", "model_promotions"),
    "evaluate": ("samples", "candidates", "candidate_evidence", "items", "graph_edges",
                 "interactions", "model_registry", "model_promotions", "eval_metrics"),
    "results": ("eval_metrics", "model_registry"),
    "backtest": ("recommendations", "serve_candidates", "graph_edges", "interactions", "items",
                 "job_metrics", "backtest_metrics"),
}  # fmt: skip

_RUN: RunRecord | None = None


@dataclass
class RunRecord:
    job: str
    ds: str | None
    lakehouse: str | None
    argv: list[str]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started: float = field(default_factory=time.time)
    reads: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)

    def describe(self, *, ds: str | None = None, lakehouse: str | None = None) -> None:
        """Fill in what a job learns only after parsing its own config (training)."""
        if ds is not None:
            self.ds = ds
        if lakehouse is not None:
            self.lakehouse = lakehouse


def current() -> RunRecord | None:
    return _RUN


def note_read(table: str, version: int) -> None:
    """The lakehouse read ``table`` at ``version`` (the first read of a table counts)."""
    if _RUN is not None and table != "job_runs":
        _RUN.reads.setdefault(table, int(version))


def note_write(table: str, version: int) -> None:
    """The lakehouse committed ``version`` of ``table`` (the last commit counts)."""
    if _RUN is not None and table != "job_runs":
        _RUN.writes[table] = int(version)


def begin(job: str, *, ds: str | None, lakehouse: str | None, argv: Sequence[str]) -> RunRecord:
    """Start recording a run and print its first line (to stderr: stdout is the report)."""
    global _RUN
    from r2rec.redact import redact_argv

    _RUN = RunRecord(job=job, ds=ds, lakehouse=lakehouse, argv=redact_argv(list(argv)))
    _log(_start_line(_RUN))
    return _RUN


def finish(status: str, *, error: str | None = None, report: Any = None) -> None:
    """Print the run's last line and append its ``job_runs`` row; never raises.

    Writing the record must not hide the job's own outcome: if the lakehouse itself is
    what failed, the row is reported as unwritten on stderr and the exit code stands.
    """
    global _RUN
    run, _RUN = _RUN, None
    if run is None:
        return
    ended = time.time()
    row = _row(run, status, ended, error, report)
    _log(_end_line(run, status, ended, error, row["peak_rss_mb"]))
    if os.environ.get("R2REC_JOB_RUNS", "1") == "0":
        return
    if status != "success" and not run.writes and not _lakehouse_exists(run.lakehouse):
        # Refused before it wrote anything (a bad path, a bad date), where no lakehouse
        # exists: creating one only to hold this row would be the refused run's write.
        return
    try:
        _append(run, row)
    except Exception as exc:  # the record is best effort by design
        _log(f"r2rec {run.job}: job_runs row not written: {type(exc).__name__}: {exc}")


# --- lines -------------------------------------------------------------------------------
def _start_line(run: RunRecord) -> str:
    inputs = ", ".join(_current_versions(run)) or "-"
    return (
        f"r2rec {run.job} ds={run.ds or '?'} run={run.run_id} start; inputs: {inputs}; "
        f"git {git_commit() or 'unknown'}"
    )


def _end_line(run: RunRecord, status: str, ended: float, error: str | None, peak: float) -> str:
    wrote = ", ".join(f"{t}@v{v}" for t, v in sorted(run.writes.items())) or "nothing"
    line = (
        f"r2rec {run.job} ds={run.ds or '?'} run={run.run_id} {status} in "
        f"{format_duration(ended - run.started)}; wrote {wrote}; peak {peak:,.0f} MiB"
    )
    if error:
        text = " ".join(error.split())
        # The whole error is the job's last line and in job_runs; this one stays short.
        line += f"; error: {text if len(text) <= 300 else text[:299] + '…'}"
    return line


def _current_versions(run: RunRecord) -> list[str]:
    """``table@vN`` of the job's declared inputs as they stand now (absent: ``-``)."""
    names = JOB_INPUTS.get(run.job, ())
    if not names:
        return []
    try:
        from r2rec.lakehouse import Lakehouse

        lake = Lakehouse(run.lakehouse)
        out = []
        for name in names:
            out.append(f"{name}@v{lake.version(name)}" if lake.exists(name) else f"{name}@-")
        return out
    except Exception as exc:  # a bad root is the job's error to report
        return [f"(versions unavailable: {type(exc).__name__})"]


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the row -----------------------------------------------------------------------------
def _row(run: RunRecord, status: str, ended: float, error: str | None, report: Any) -> dict:
    python_mb, jvm_mb = peak_memory_mb()
    return {
        "ds": run.ds,
        "job": run.job,
        "run_id": run.run_id,
        "status": status,
        "started_at": datetime.fromtimestamp(run.started, UTC),
        "ended_at": datetime.fromtimestamp(ended, UTC),
        "elapsed_s": round(ended - run.started, 3),
        "inputs": dict(run.reads),
        "outputs": dict(run.writes),
        "config": json.dumps(run.argv),
        "report": None if report is None else json.dumps(report, sort_keys=True, default=str),
        "error": error,
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "peak_rss_mb": python_mb,
        "jvm_peak_rss_mb": jvm_mb,
    }


def _append(run: RunRecord, row: dict) -> None:
    import pyarrow as pa
    from deltalake.exceptions import CommitFailedError

    from r2rec.contracts import JOB_RUNS
    from r2rec.lakehouse import Lakehouse

    lake = Lakehouse(run.lakehouse)
    # Parallel shards of one job finish together: blind appends may still race on the
    # first commit that creates the table, so retry a few times.
    for attempt in range(1, 6):
        try:
            lake.append(JOB_RUNS, pa.Table.from_pylist([row], schema=JOB_RUNS.arrow_schema()))
            return
        except CommitFailedError:
            if attempt == 5:
                raise
            time.sleep(0.1 * attempt)


def _lakehouse_exists(root: str | None) -> bool:
    if not root:
        return False
    if "://" in root and not root.startswith("file://"):
        return True  # an object store: let the append decide
    return Path(root.removeprefix("file://")).exists()


def peak_memory_mb() -> tuple[float, float | None]:
    """Peak resident memory of this process (or its largest finished child: a vLLM
    engine core), and of the Spark driver JVM when this job started or joined one."""
    own = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    python_mb = round(own / 1024, 1)  # ru_maxrss is in KiB on Linux
    jvm = _jvm_pid()
    return python_mb, (None if jvm is None else _vm_hwm_mb(jvm))


def _jvm_pid() -> int | None:
    if "pyspark" not in sys.modules:
        return None
    from r2rec.spark import launched_by_spark_submit

    if launched_by_spark_submit():
        return os.getppid()  # spark-submit's JVM runs the driver and started us
    from pyspark import SparkContext

    gateway = getattr(SparkContext, "_gateway", None)
    proc = getattr(gateway, "proc", None)
    return getattr(proc, "pid", None)


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


@cache
def git_commit() -> str | None:
    """The deployed code's commit: $R2REC_GIT_COMMIT, else the checkout's HEAD."""
    if os.environ.get("R2REC_GIT_COMMIT"):
        return os.environ["R2REC_GIT_COMMIT"][:40]
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
