"""Typed configuration shared by every stage.

Values come from the dataclass defaults, then from environment variables (``R2REC_*``),
then from explicit arguments; no string-keyed dicts travel between layers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from r2rec.errors import R2RecError

DEFAULT_LAKEHOUSE = "./lakehouse"
_DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def lakehouse_root(explicit: str | None = None) -> str:
    """Root of all Delta tables: argument > $R2REC_LAKEHOUSE > ./lakehouse.

    Local paths are made absolute (Spark executors and delta-rs must agree on them);
    object-store URIs (s3://, abfss://, gs://, ...) pass through untouched.
    """
    root = explicit or os.environ.get("R2REC_LAKEHOUSE") or DEFAULT_LAKEHOUSE
    if "://" in root and not root.startswith("file://"):
        return root.rstrip("/")
    root = root.removeprefix("file://")
    return str(Path(root).expanduser().resolve())


def parse_ds(ds: str | date | None) -> str:
    """Validate a run date and return it as ``YYYY-MM-DD``.

    A job never invents "today": a missing ds is an error, so a manual run without a
    logical date cannot silently write the wrong partition.
    """
    if ds is None or ds == "":
        raise R2RecError("a run date (--ds YYYY-MM-DD) is required; jobs never default to today")
    if isinstance(ds, datetime):
        ds = ds.date()
    if isinstance(ds, date):
        return ds.isoformat()
    if not _DS_RE.match(ds):
        raise R2RecError(f"run date '{ds}' is not of the form YYYY-MM-DD")
    try:
        return date.fromisoformat(ds).isoformat()
    except ValueError as exc:
        raise R2RecError(f"run date '{ds}' is not a calendar date: {exc}") from None


def ds_start(ds: str) -> datetime:
    """Midnight UTC at the start of the run date: the as-of cut-off (ts < this)."""
    return datetime.fromisoformat(parse_ds(ds)).replace(tzinfo=UTC)


def ds_end(ds: str) -> datetime:
    """Midnight UTC after the run date: events at or after this are in the future."""
    return ds_start(ds) + timedelta(days=1)


@dataclass(frozen=True)
class SparkConfig:
    master: str = field(default_factory=lambda: os.environ.get("R2REC_SPARK_MASTER", "local[2]"))
    driver_memory: str = field(
        default_factory=lambda: os.environ.get("R2REC_SPARK_DRIVER_MEMORY", "2g")
    )
    shuffle_partitions: int = field(
        default_factory=lambda: int(os.environ.get("R2REC_SPARK_SHUFFLE_PARTITIONS", "8"))
    )
    # Local mode runs every task inside the driver JVM. With a 2 GB heap, G1 fails
    # Spark's 32 MB memory pages as humongous allocations once the heap is fragmented
    # (the 5M-interaction benchmark died at 1.4 of 2 GB used); the compacting
    # throughput collector has no humongous regions and finishes the same job.
    driver_java_options: str = field(
        default_factory=lambda: os.environ.get(
            "R2REC_SPARK_DRIVER_JAVA_OPTIONS", "-XX:+UseParallelGC"
        )
    )
    app_name: str = "r2rec"
