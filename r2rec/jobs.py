"""What every job's ``main(argv)`` shares: the common options and the error contract.

A job exits 0 on success and 1 with one ``error: ...`` line on an operator-facing
error (bad input, failed data-quality check), so Airflow marks the task failed and
retries; programming errors keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from r2rec.errors import R2RecError


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    # Validated by the job itself (exit 1 with one line), like every other bad input.
    p.add_argument("--ds", required=True, help="run date YYYY-MM-DD (uses data before it)")
    p.add_argument("--lakehouse", help="lakehouse root (default $R2REC_LAKEHOUSE or ./lakehouse)")
    return p


def run_main(
    run: Callable[[], Any],
    *,
    job: str,
    argv: Sequence[str] | None = None,
    ds: str | None = None,
    lakehouse: str | None = None,
) -> int:
    """Run a job body; print its report as one JSON line, or its error as one line.

    Either way the run is recorded (:mod:`r2rec.runlog`): a start and an end line on
    stderr and a ``job_runs`` row, failures included.
    """
    from r2rec import runlog

    runlog.begin(job, ds=ds, lakehouse=lakehouse, argv=sys.argv[1:] if argv is None else argv)
    try:
        report = run()
    except R2RecError as exc:
        runlog.finish("failed", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # a programming error keeps its traceback, and its row
        runlog.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    runlog.finish("success", report=report)
    if report is not None:
        print(json.dumps(report, sort_keys=True, default=str))
    return 0


@dataclass(frozen=True)
class CheckResult:
    """A data-quality check's outcome: how many rows failed it, and one of them."""

    name: str
    failing: int
    example: str | None = None


def record_metrics(
    lakehouse,
    job: str,
    ds: str,
    metrics: Mapping[str, float],
    checks: Sequence[CheckResult] = (),
) -> None:
    """Replace partition (ds, job) of ``job_metrics``: check results as ``dq.<name>``."""
    from r2rec.contracts import JOB_METRICS

    rows = [
        {
            "ds": ds,
            "job": job,
            "metric": f"dq.{c.name}",
            "value": float(c.failing),
            "detail": c.example,
        }
        for c in checks
    ]
    rows += [
        {"ds": ds, "job": job, "metric": k, "value": float(v), "detail": None}
        for k, v in metrics.items()
    ]
    lakehouse.overwrite(JOB_METRICS, rows, partition={"ds": ds, "job": job})
