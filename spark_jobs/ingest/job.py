"""Ingest job: a source's files for run date D -> bronze, silver and quarantine tables.

    python -m spark_jobs.ingest --source movielens-100k --ds 2026-11-25
    r2rec ingest --source movielens-latest --path ~/data/ml-latest-small --ds 2026-11-25

Writes exactly partition (ds=D, source=S) of interactions_raw, items_raw, interactions
and items, (ds=D, job=ingest, source=S) of quarantine and (ds=D, job=ingest.S) of
job_metrics, so a rerun replaces that date and nothing else.

Replay: the files may hold events after the end of D (a log replayed date by date, or a
dump re-read nightly). Those are *deferred*: counted, neither quarantined nor written,
and brought by the run of their own date. Events no earlier run brought are written
once, however late they appear (counted as ``late`` when they fall before the end of
the previous ingested date). Items are written only when new or changed.

Order matters for "nothing already written is lost": bronze and quarantine are written
first; silver only if the quarantined share is within limits, so a bad batch leaves
yesterday's silver untouched and today's reasons inspectable.
``--path`` and ``--items-path`` must lie under ``$R2REC_INGEST_ROOTS`` (r2rec.ingest_roots).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field

from r2rec.config import ds_end, parse_ds
from r2rec.contracts import INTERACTIONS, INTERACTIONS_RAW, ITEMS, ITEMS_RAW, QUARANTINE
from r2rec.errors import DataQualityError, R2RecError
from r2rec.ingest_roots import check_ingest_path
from r2rec.jobs import record_metrics, run_main
from r2rec.lakehouse import Lakehouse
from spark_jobs.ingest.sources import SOURCES, ColumnMapping, SourceFormat, resolve_source


@dataclass(frozen=True)
class IngestConfig:
    source: SourceFormat
    ds: str
    max_quarantine_share: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_quarantine_share <= 1.0:
            raise R2RecError("max quarantine share must be within [0, 1]")
        object.__setattr__(self, "ds", parse_ds(self.ds))


@dataclass
class EntityReport:
    records: int = 0
    written: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)

    @property
    def malformed(self) -> int:
        from spark_jobs.ingest.transforms import DUPLICATE_REASONS

        return sum(n for r, n in self.quarantined.items() if r not in DUPLICATE_REASONS)

    @property
    def malformed_share(self) -> float:
        return self.malformed / self.records if self.records else 0.0


@dataclass
class IngestReport:
    ds: str
    source: str
    interactions: EntityReport
    items: EntityReport
    already_ingested: int = 0
    deferred: int = 0  # valid events after the end of D, left for their own date
    late: int = 0  # events written now that fall before the end of the previous run's date
    items_unchanged: int = 0  # items already known with the same metadata
    versions: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The report as job_metrics rows (ingest.<source>)."""
        out = {
            "interactions.records": self.interactions.records,
            "interactions.written": self.interactions.written,
            "interactions.already_ingested": self.already_ingested,
            "interactions.deferred": self.deferred,
            "interactions.late": self.late,
            "items.records": self.items.records,
            "items.written": self.items.written,
            "items.unchanged": self.items_unchanged,
        }
        for kind in ("interactions", "items"):
            for reason, n in getattr(self, kind).quarantined.items():
                out[f"{kind}.quarantined.{reason}"] = n
        return {k: float(v) for k, v in out.items()}


def run_ingest(spark, lakehouse: Lakehouse, config: IngestConfig) -> IngestReport:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from spark_jobs.ingest import transforms as tf

    fmt, ds = config.source, config.ds
    part = {"ds": ds, "source": fmt.name}
    qpart = {"ds": ds, "job": tf.JOB, "source": fmt.name}
    report = IngestReport(ds, fmt.name, EntityReport(), EntityReport())
    entities = [("interactions", INTERACTIONS_RAW, fmt.interaction_files)]
    if fmt.item_files:
        entities.append(("items", ITEMS_RAW, fmt.item_files))

    # 1. bronze: every record as read.
    for kind, table, files in entities:
        frames = [
            tf.read_columnar(spark, f, fmt, kind)
            if fmt.kind == "parquet"
            else tf.parse_lines(tf.read_lines(spark, f, fmt.encoding), fmt, kind)
            for f in files
        ]
        parsed = frames[0]
        for frame in frames[1:]:
            parsed = parsed.unionByName(frame)
        report.versions[table.name] = lakehouse.overwrite(
            table, tf.to_bronze(parsed, ds, fmt.name), partition=part
        )

    # 2. normalise from bronze (read back through the Delta log, not re-parsed).
    bronze_inter = lakehouse.read_spark(spark, INTERACTIONS_RAW, partitions=_eq(part))
    norm_inter = tf.normalize_interactions(bronze_inter, fmt, ds).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    normalized = {"interactions": norm_inter}
    quarantine = tf.quarantine_rows(norm_inter, ds, fmt.name, "interaction")
    if fmt.item_files:
        bronze_items = lakehouse.read_spark(spark, ITEMS_RAW, partitions=_eq(part))
        norm_items = tf.normalize_items(bronze_items).persist(StorageLevel.MEMORY_AND_DISK)
        normalized["items"] = norm_items
        quarantine = quarantine.unionByName(tf.quarantine_rows(norm_items, ds, fmt.name, "item"))

    try:
        for kind, df in normalized.items():
            entity: EntityReport = getattr(report, kind)
            deferred = F.col("deferred") if "deferred" in df.columns else F.lit(False)
            counts = df.groupBy("reason", deferred.alias("deferred")).count().collect()
            entity.records = sum(r["count"] for r in counts)
            entity.quarantined = {}
            for r in counts:
                if r["reason"]:
                    entity.quarantined[r["reason"]] = (
                        entity.quarantined.get(r["reason"], 0) + r["count"]
                    )
            if kind == "interactions":
                report.deferred = sum(r["count"] for r in counts if r["deferred"])

        # 3. quarantine, always: the reasons must be inspectable even when we fail below.
        report.versions[QUARANTINE.name] = lakehouse.overwrite(
            QUARANTINE, quarantine, partition=qpart
        )
        for kind in normalized:
            entity = getattr(report, kind)
            if entity.malformed_share > config.max_quarantine_share:
                top = sorted(entity.quarantined.items(), key=lambda kv: (-kv[1], kv[0]))[:4]
                raise DataQualityError(
                    f"ingest {fmt.name} {ds}: {entity.malformed} of {entity.records} {kind} "
                    f"records ({entity.malformed_share:.2%}) quarantined, over the "
                    f"{config.max_quarantine_share:.2%} limit; reasons: "
                    + ", ".join(f"{r}={n}" for r, n in top)
                    + f'. Inspect: r2rec sql "select reason, detail, raw_record from quarantine '
                    f"where ds = '{ds}' and job = 'ingest' and source = '{fmt.name}'\""
                )

        # 4. silver.
        before = [("ds", "<", ds), ("source", "=", fmt.name)]
        earlier = _earlier(spark, lakehouse, INTERACTIONS, before)
        silver = tf.silver_interactions(norm_inter, earlier, ds, fmt.name).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        report.interactions.written = silver.count()
        valid = report.interactions.records - sum(report.interactions.quarantined.values())
        report.already_ingested = valid - report.deferred - report.interactions.written
        previous = _previous_ds(lakehouse, fmt.name, ds)
        if previous is not None:
            cutoff = F.lit(ds_end(previous)).cast("timestamp")
            report.late = silver.filter(F.col("ts") < cutoff).count()
        report.versions[INTERACTIONS.name] = lakehouse.overwrite(
            INTERACTIONS, silver, partition=part
        )
        silver.unpersist()
        if report.interactions.written == 0 and report.deferred:
            print(
                f"ingest {fmt.name} {ds}: no event before the end of {ds}; all "
                f"{report.deferred} valid events are later and deferred to their dates",
                file=sys.stderr,
            )
        if "items" in normalized:
            items = tf.silver_items(
                normalized["items"], ds, fmt.name, _earlier(spark, lakehouse, ITEMS, before)
            ).persist(StorageLevel.MEMORY_AND_DISK)
            report.items.written = items.count()
            report.items_unchanged = (
                report.items.records - sum(report.items.quarantined.values()) - report.items.written
            )
            report.versions[ITEMS.name] = lakehouse.overwrite(ITEMS, items, partition=part)
            items.unpersist()
        record_metrics(lakehouse, f"{tf.JOB}.{fmt.name}", ds, report.metrics())
    finally:
        for df in normalized.values():
            df.unpersist()
    return report


def _eq(partition: dict[str, str]) -> list[tuple[str, str, str]]:
    return [(k, "=", v) for k, v in partition.items()]


def _earlier(spark, lakehouse: Lakehouse, table, partitions):
    if lakehouse.exists(table):
        return lakehouse.read_spark(spark, table, partitions=partitions)
    return spark.createDataFrame([], table.spark_schema())


def _previous_ds(lakehouse: Lakehouse, source: str, ds: str) -> str | None:
    """The latest date before D that ingested this source's interactions."""
    if not lakehouse.exists(INTERACTIONS):
        return None
    dates = [
        p["ds"]
        for p in lakehouse.partitions(INTERACTIONS)
        if p.get("source") == source and p["ds"] < ds
    ]
    return max(dates) if dates else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spark_jobs.ingest",
        description="Ingest a source's files for run date --ds into bronze, silver and quarantine.",
    )
    p.add_argument("--source", required=True, choices=SOURCES)
    p.add_argument(
        "--ds",
        required=True,
        help="run date YYYY-MM-DD; events after it are deferred to their date",
    )
    p.add_argument(
        "--path",
        help="interactions file or dataset directory "
        "(default for movielens-100k: the recbole wheel); must lie under $R2REC_INGEST_ROOTS",
    )
    p.add_argument(
        "--items-path",
        help="item metadata file (amazon-reviews-2023 meta JSONL, csv, parquet); "
        "must lie under $R2REC_INGEST_ROOTS",
    )
    p.add_argument("--lakehouse", help="lakehouse root (default $R2REC_LAKEHOUSE or ./lakehouse)")
    p.add_argument(
        "--max-quarantine-share",
        type=float,
        default=0.01,
        help="fail when more than this share of records is malformed (default 0.01)",
    )
    g = p.add_argument_group("generic csv/parquet sources")
    g.add_argument("--user-col", default="user_id")
    g.add_argument("--item-col", default="item_id")
    g.add_argument("--rating-col", default="rating", help="'' for implicit feedback")
    g.add_argument("--ts-col", default="timestamp")
    g.add_argument(
        "--ts-unit", choices=["s", "ms", "iso"], help="epoch seconds, milliseconds or ISO-8601"
    )
    g.add_argument("--title-col", default="title")
    g.add_argument("--genres-col", default="genres")
    g.add_argument("--year-col")
    g.add_argument("--genre-sep", default="|")
    g.add_argument("--delimiter", default=",")
    g.add_argument("--rating-min", type=float)
    g.add_argument("--rating-max", type=float)
    return p


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    if (args.rating_min is None) != (args.rating_max is None):
        raise R2RecError("give both --rating-min and --rating-max, or neither")
    # Before anything reads them (not even an existence check): only configured roots.
    given = {"--path": args.path, "--items-path": args.items_path}
    for option, path in given.items():
        if path:
            check_ingest_path(path, option)
    mapping = ColumnMapping(
        user=args.user_col,
        item=args.item_col,
        rating=args.rating_col or None,
        ts=args.ts_col,
        item_title=args.title_col or None,
        item_genres=args.genres_col or None,
        item_year=args.year_col,
        genre_separator=args.genre_sep,
    )
    rating_range = None if args.rating_min is None else (args.rating_min, args.rating_max)
    fmt = resolve_source(
        # '' means the source's default (the DAG passes its path param through as is).
        args.source,
        args.path or None,
        args.items_path or None,
        mapping,
        args.ts_unit,
        rating_range,
        args.delimiter,
    )
    if args.path or args.items_path:
        # The files a dataset directory names (ml-1m/ratings.dat) may be links out of it.
        for file in (*fmt.interaction_files, *fmt.item_files):
            check_ingest_path(file, "file")
    return IngestConfig(fmt, args.ds, args.max_quarantine_share)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> dict:
        config = config_from_args(args)
        from spark_jobs.session import get_spark

        return asdict(run_ingest(get_spark(), Lakehouse(args.lakehouse), config))

    return run_main(body, job="ingest", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
