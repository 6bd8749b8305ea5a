"""Data-quality checks run after each job, before anything downstream trusts its output.

A check is a name and a DataFrame of offending rows; the job fails with a message that
names every failing check and its count. Results are also recorded in ``job_metrics``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from r2rec.errors import DataQualityError
from r2rec.jobs import CheckResult


def run_checks(checks: dict[str, DataFrame]) -> list[CheckResult]:
    from r2rec.progress import step

    results = []
    step(f"data-quality checks: {', '.join(checks)}")
    for name, offending in checks.items():
        failing = offending.count()
        example = str(offending.limit(1).collect()[0].asDict()) if failing else None
        results.append(CheckResult(name, failing, example))
    return results


def enforce(job: str, ds: str, results: list[CheckResult]) -> None:
    failed = [r for r in results if r.failing]
    if failed:
        detail = "; ".join(
            f"'{r.name}' failed for {r.failing} row(s), e.g. {r.example}" for r in failed
        )
        raise DataQualityError(f"{job} {ds}: data-quality check {detail}")


def quarantine_frame(
    rows: DataFrame, ds: str, job: str, entity: str, record: Column, reason: str, detail: str
) -> DataFrame:
    """Rows a non-ingest job refuses, shaped as ``quarantine`` rows (source ``-``)."""
    from r2rec.contracts import NO_SOURCE

    return rows.select(
        F.lit(ds).alias("ds"),
        F.lit(job).alias("job"),
        F.lit(NO_SOURCE).alias("source"),
        F.lit(entity).alias("entity"),
        F.lit(None).cast("string").alias("source_file"),
        F.lit(None).cast("long").alias("line_number"),
        F.to_json(record).alias("raw_record"),
        F.lit(reason).alias("reason"),
        F.lit(detail).alias("detail"),
    )
