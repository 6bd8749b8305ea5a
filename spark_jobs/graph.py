"""Graph job: the user-item interaction graph as of run date D, and its degree statistics.

    python -m spark_jobs.graph --ds 2026-11-25

Reads silver ``interactions`` rows ingested up to D with events before D (the as-of
rule), writes partition ds=D of ``graph_edges`` and ``graph_stats``.
"""

from __future__ import annotations

import sys

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from r2rec.config import ds_start, parse_ds
from r2rec.contracts import GRAPH_EDGES, GRAPH_STATS, INTERACTIONS
from r2rec.jobs import base_parser, record_metrics, run_main
from r2rec.lakehouse import Lakehouse
from spark_jobs import quality

JOB = "graph"


def interactions_as_of(interactions: DataFrame, ds: str) -> DataFrame:
    """Events known by D (ingested at or before D) that happened before D."""
    cutoff = F.lit(ds_start(ds)).cast("timestamp")
    return interactions.filter((F.col("ds") <= F.lit(ds)) & (F.col("ts") < cutoff))


def build_edges(interactions: DataFrame, ds: str) -> DataFrame:
    """One edge per (user, item): its first interaction (highest rating on a tie)."""
    first = Window.partitionBy("user_id", "item_id").orderBy(
        F.col("ts").asc(), F.col("rating").desc_nulls_last()
    )
    return (
        interactions_as_of(interactions, ds)
        .withColumn("_rn", F.row_number().over(first))
        .filter(F.col("_rn") == 1)
        .select(
            F.lit(ds).alias("ds"),
            "user_id",
            "item_id",
            "rating",
            "ts",
            F.coalesce(F.col("rating"), F.lit(1.0)).alias("weight"),
        )
    )


def degree_stats(edges: DataFrame, ds: str) -> DataFrame:
    frames = []
    for entity, col in (("user", "user_id"), ("item", "item_id")):
        degrees = edges.groupBy(col).agg(F.count("*").alias("degree"))
        q = F.percentile(F.col("degree"), F.array(F.lit(0.5), F.lit(0.9), F.lit(0.99)))
        frames.append(
            degrees.agg(
                F.count("*").alias("nodes"),
                F.sum("degree").alias("edges"),
                F.min("degree").alias("min_degree"),
                q.alias("q"),
                F.max("degree").alias("max_degree"),
                F.avg("degree").alias("mean_degree"),
            ).select(
                F.lit(ds).alias("ds"),
                F.lit(entity).alias("entity"),
                "nodes",
                "edges",
                "min_degree",
                F.col("q")[0].alias("p50_degree"),
                F.col("q")[1].alias("p90_degree"),
                F.col("q")[2].alias("p99_degree"),
                "max_degree",
                "mean_degree",
            )
        )
    return frames[0].unionByName(frames[1])


def edge_checks(edges: DataFrame) -> dict[str, DataFrame]:
    dup = edges.groupBy("user_id", "item_id").count().filter(F.col("count") > 1)
    return {
        "edges_key_not_null": edges.filter(
            F.col("user_id").isNull() | F.col("item_id").isNull() | F.col("ts").isNull()
        ),
        "edges_unique": dup,
    }


def read_edges(spark, lakehouse: Lakehouse, ds: str) -> DataFrame:
    return lakehouse.read_spark(spark, GRAPH_EDGES, partitions=[("ds", "=", ds)])


def run(spark, lakehouse: Lakehouse, ds: str) -> dict:
    ds = parse_ds(ds)
    from pyspark import StorageLevel

    from r2rec.errors import DataQualityError

    interactions = lakehouse.read_spark(spark, INTERACTIONS, partitions=[("ds", "<=", ds)])
    edges = build_edges(interactions, ds).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # Refuse before writing: an empty graph would replace a good partition of D.
        if edges.isEmpty():
            raise DataQualityError(f"graph {ds}: no interactions before {ds}; run ingest first")
        results = quality.run_checks(edge_checks(edges))
        quality.enforce(JOB, ds, results)
        part = {"ds": ds}
        version = lakehouse.overwrite(GRAPH_EDGES, edges, partition=part)
        # Two rows: computed once and written from the driver, not aggregated again by a
        # Spark write.
        stats = [r.asDict() for r in degree_stats(edges, ds).collect()]
        lakehouse.overwrite(GRAPH_STATS, stats, partition=part)
        summary = {r["entity"]: r for r in stats}
    finally:
        edges.unpersist()
    extra = {
        f"{entity}.{k}": float(v)
        for entity, row in summary.items()
        for k, v in row.items()
        if k not in ("ds", "entity")
    }
    record_metrics(lakehouse, JOB, ds, extra, results)
    return {"ds": ds, "graph_edges_version": version, **extra}


def main(argv: list[str] | None = None) -> int:
    args = base_parser("python -m spark_jobs.graph", __doc__.splitlines()[0]).parse_args(argv)

    def body():
        from spark_jobs.session import get_spark

        return run(get_spark(), Lakehouse(args.lakehouse), args.ds)

    return run_main(body, job="graph", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
