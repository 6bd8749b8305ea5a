"""Retrieval job: serve-mode candidates for every active user as of run date D.

    python -m spark_jobs.retrieval --ds 2026-11-25 [--candidates 20] [--history-len 10]
        [--fanout 20] [--popular-pool 200] [--active-days 0] [--seed 0]

Nightly recommendations must be real next items, not a test protocol: each active user
(an edge before D; with ``--active-days``, one in the last days before D) gets up to N
items they have not interacted with as of D. First the items interaction chains reach
from the user's recent history (u0 → i0 → u1 → i1: users who share a recent item, and
what else they took), scored by the number of such paths; then, to fill N, the most
popular unseen items. Fan-out is bounded like the chains job (at most F users per item
and F items per user, seeded), so a blockbuster costs F, not its whole audience.

Writes partition D of ``serve_candidates``: history (last L items, oldest first),
items in a seeded shuffled display order with labels C1..Cn, their sources and scores.
A user with no unseen candidate at all goes to ``quarantine`` (job=retrieval).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from r2rec.config import ds_start, parse_ds
from r2rec.contracts import NO_SOURCE, QUARANTINE, SERVE_CANDIDATES, SOURCE_PRIORITY
from r2rec.errors import R2RecError
from r2rec.jobs import base_parser, record_metrics, run_main
from r2rec.lakehouse import Lakehouse
from r2rec.prompt import SHAPE
from spark_jobs import quality
from spark_jobs.graph import read_edges
from spark_jobs.samples import label_array

JOB = "retrieval"


@dataclass(frozen=True)
class RetrievalParams:
    n: int = SHAPE.candidates  # per user
    history_len: int = SHAPE.history_len  # L recent items: the chains' starts and the prompt
    fanout: int = 20  # F users per item and items per user while expanding
    popular_pool: int = 200  # most popular items considered for the top-up
    active_days: int = 0  # 0 = every user with an edge before D
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n, self.history_len, self.fanout, self.popular_pool) < 1:
            raise R2RecError("need candidates, history-len, fanout and popular-pool >= 1")
        if self.active_days < 0:
            raise R2RecError("--active-days must be >= 0")


def _hash_rank(partition: str, *key: str, seed: int) -> F.Column:
    """Seeded order within a partition: the same draw on every executor and rerun."""
    order = F.xxhash64(F.lit(seed), F.col(partition), *[F.col(k) for k in key])
    return F.row_number().over(Window.partitionBy(partition).orderBy(order, *key))


def recent_history(edges: DataFrame, params: RetrievalParams) -> DataFrame:
    """(user_id, rn, item_id, ts) for the L most recent items, rn 1 = latest."""
    latest = Window.partitionBy("user_id").orderBy(F.col("ts").desc(), F.col("item_id").desc())
    return edges.select("user_id", "item_id", "ts", F.row_number().over(latest).alias("rn")).filter(
        F.col("rn") <= params.history_len
    )


def active_users(edges: DataFrame, ds: str, params: RetrievalParams) -> DataFrame:
    users = edges
    if params.active_days:
        since = F.lit(ds_start(ds)).cast("timestamp") - F.expr(
            f"INTERVAL {params.active_days} DAYS"
        )
        users = edges.filter(F.col("ts") >= since)
    return users.select("user_id").distinct()


def chain_candidates(edges: DataFrame, recent: DataFrame, params: RetrievalParams) -> DataFrame:
    """(user_id, item_id, score=paths) for unseen items reached by u0 → i0 → u1 → i1."""
    pairs = edges.select("user_id", "item_id")
    audience = pairs.withColumn("k", _hash_rank("item_id", "user_id", seed=params.seed)).filter(
        F.col("k") <= params.fanout
    )
    taste = pairs.withColumn("k", _hash_rank("user_id", "item_id", seed=params.seed + 1)).filter(
        F.col("k") <= params.fanout
    )
    paths = (
        recent.select(F.col("user_id").alias("u0"), F.col("item_id").alias("i0"))
        .join(audience.select(F.col("item_id").alias("i0"), F.col("user_id").alias("u1")), "i0")
        .filter(F.col("u0") != F.col("u1"))
        .join(taste.select(F.col("user_id").alias("u1"), F.col("item_id").alias("i1")), "u1")
        .groupBy("u0", "i1")
        .agg(F.count("*").cast("double").alias("score"))
        .select(F.col("u0").alias("user_id"), F.col("i1").alias("item_id"), "score")
    )
    return paths.join(pairs, ["user_id", "item_id"], "left_anti")


def popular_candidates(edges: DataFrame, users: DataFrame, params: RetrievalParams) -> DataFrame:
    total = edges.count()
    popular = (
        edges.groupBy("item_id")
        .agg((F.count("*") / F.lit(max(total, 1))).alias("score"))
        .orderBy(F.col("score").desc(), "item_id")
        .limit(params.popular_pool)
    )
    return users.crossJoin(F.broadcast(popular)).join(
        edges.select("user_id", "item_id"), ["user_id", "item_id"], "left_anti"
    )


def build_candidates(edges: DataFrame, ds: str, params: RetrievalParams) -> DataFrame:
    recent = recent_history(edges, params)
    users = active_users(edges, ds, params)
    chained = chain_candidates(edges, recent.join(users, "user_id"), params).join(users, "user_id")
    pool = (
        chained.withColumn("source", F.lit("chain"))
        .withColumn("priority", F.lit(SOURCE_PRIORITY.index("chain")))
        .unionByName(
            popular_candidates(edges, users, params)
            .withColumn("source", F.lit("popular"))
            .withColumn("priority", F.lit(SOURCE_PRIORITY.index("popular")))
        )
    )
    best = Window.partitionBy("user_id").orderBy("priority", F.col("score").desc(), "item_id")
    once = Window.partitionBy("user_id", "item_id").orderBy("priority")
    chosen = (
        pool.withColumn("dup", F.row_number().over(once))
        .filter(F.col("dup") == 1)
        .withColumn("pick", F.row_number().over(best))
        .filter(F.col("pick") <= params.n)
    )
    # Seeded display order: where an item stands carries no signal about its source.
    shown = chosen.withColumn(
        "order", F.xxhash64(F.lit(params.seed), F.lit(ds), F.col("user_id"), F.col("item_id"))
    )
    labels = label_array(params.n)  # at most n picked, so every place has its label
    lists = shown.groupBy("user_id").agg(
        F.array_sort(F.collect_list(F.struct("order", "item_id", "source", "score"))).alias("c")
    )
    history = recent.groupBy("user_id").agg(
        F.array_sort(F.collect_list(F.struct(F.col("rn") * -1, "item_id"))).alias("h")
    )
    return (
        users.join(lists, "user_id", "left")
        .join(history, "user_id", "left")
        .select(
            F.lit(ds).alias("ds"),
            "user_id",
            F.transform("h", lambda x: x["item_id"]).alias("history"),
            F.transform("c", lambda x: x["item_id"]).alias("items"),
            F.transform("c", lambda x, i: F.get(labels, i)).alias("labels"),
            F.transform("c", lambda x: x["source"]).alias("sources"),
            F.transform("c", lambda x: x["score"]).alias("retrieval_scores"),
        )
    )


def checks(candidates: DataFrame, edges: DataFrame, n: int) -> dict[str, DataFrame]:
    exploded = candidates.select("user_id", F.explode("items").alias("item_id"))
    return {
        "retrieval_user_not_null": candidates.filter(F.col("user_id").isNull()),
        "retrieval_at_most_n_distinct": candidates.filter(
            (F.size("items") > n) | (F.size(F.array_distinct("items")) != F.size("items"))
        ),
        "retrieval_item_unseen": exploded.join(
            edges.select("user_id", "item_id"), ["user_id", "item_id"]
        ),
    }


def run(spark, lakehouse: Lakehouse, ds: str, params: RetrievalParams | None = None) -> dict:
    from pyspark import StorageLevel

    ds, params = parse_ds(ds), params or RetrievalParams()
    edges = read_edges(spark, lakehouse, ds).persist(StorageLevel.MEMORY_AND_DISK)
    built = build_candidates(edges, ds, params).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        empty = built.filter(F.col("items").isNull())
        good = built.filter(F.col("items").isNotNull())
        results = quality.run_checks(checks(good, edges, params.n))
        stats = good.agg(
            F.count("*").alias("users"),
            F.avg(F.size("items")).alias("mean_candidates"),
            F.sum((F.size("items") < params.n).cast("int")).alias("users_short"),
            F.avg(F.size(F.filter("sources", lambda s: s == "chain")) / F.size("sources")).alias(
                "chain_share"
            ),
        ).first()
        quarantined = empty.count()
        lakehouse.overwrite(
            QUARANTINE,
            quality.quarantine_frame(
                empty,
                ds,
                JOB,
                "user",
                F.struct("user_id"),
                "no_unseen_candidates",
                "the user has seen every reachable and popular item",
            ),
            partition={"ds": ds, "job": JOB, "source": NO_SOURCE},
        )
        metrics = {
            "users": float(stats["users"] or 0),
            "mean_candidates": float(stats["mean_candidates"] or 0),
            "users_short": float(stats["users_short"] or 0),
            "chain_share": float(stats["chain_share"] or 0),
            "quarantined": float(quarantined),
        }
        record_metrics(lakehouse, JOB, ds, metrics, results)
        quality.enforce(JOB, ds, results)
        version = lakehouse.overwrite(SERVE_CANDIDATES, good, partition={"ds": ds})
    finally:
        built.unpersist()
        edges.unpersist()
    return {"ds": ds, "serve_candidates_version": version, **metrics}


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m spark_jobs.retrieval", __doc__.splitlines()[0])
    d = RetrievalParams()
    p.add_argument("--candidates", type=int, default=d.n, help="N per user")
    p.add_argument("--history-len", type=int, default=d.history_len, help="L")
    p.add_argument("--fanout", type=int, default=d.fanout, help="F")
    p.add_argument("--popular-pool", type=int, default=d.popular_pool)
    p.add_argument("--active-days", type=int, default=d.active_days, help="0 = all users")
    p.add_argument("--seed", type=int, default=d.seed)
    args = p.parse_args(argv)

    def body():
        from spark_jobs.session import get_spark

        params = RetrievalParams(
            args.candidates,
            args.history_len,
            args.fanout,
            args.popular_pool,
            args.active_days,
            args.seed,
        )
        return run(get_spark(), Lakehouse(args.lakehouse), args.ds, params)

    return run_main(body, job="retrieval", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
