"""Ingest: source files -> bronze (raw), silver (typed, deduplicated) and quarantine."""

from spark_jobs.ingest.job import IngestConfig, IngestReport, main, run_ingest

__all__ = ["IngestConfig", "IngestReport", "main", "run_ingest"]
