"""Samples job: time-ordered leave-one-out samples and their candidate lists as of D.

    python -m spark_jobs.samples --ds 2026-11-25 [--history-len 10] [--max-train 20]
        [--candidates 20] [--seeds 0,1,2] [--sampler uniform|popularity]

Reads ``graph_edges`` partition D; writes partition D of ``samples`` and
``candidates`` (definitions: docs/METHOD.md §1, §10). Samples whose user has too few
unseen items for a full candidate list go to ``quarantine`` (job=samples).
"""

from __future__ import annotations

import sys

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from r2rec.config import parse_ds
from r2rec.contracts import CANDIDATES, NO_SOURCE, QUARANTINE, SAMPLES
from r2rec.jobs import base_parser, record_metrics, run_main
from r2rec.lakehouse import Lakehouse
from spark_jobs import quality
from spark_jobs.graph import read_edges
from spark_jobs.params import CandidateParams, SampleParams

JOB = "samples"


def build_samples(edges: DataFrame, ds: str, params: SampleParams) -> DataFrame:
    """One sample per eligible position, with window functions over each user's edges.

    Windows keep the cost at O(edges x L): building a per-user array and exploding its
    positions would copy the whole sequence into every sample row, which is quadratic in
    a heavy user's degree (a user with 400k edges ran the driver out of memory).
    """
    by_time = Window.partitionBy("user_id").orderBy("ts", "item_id")  # the (ts, item) tie-break
    pos, n = F.col("position"), F.col("n")
    split = F.when(pos == n - 1, "test").when(pos == n - 2, "valid").otherwise("train")
    positioned = edges.select(
        "user_id",
        "item_id",
        "ts",
        (F.row_number().over(by_time) - 1).alias("position"),
        F.count("*").over(Window.partitionBy("user_id")).alias("n"),
    )
    keep = pos >= params.min_history
    if params.max_train:
        keep = keep & (pos >= n - 2 - params.max_train)
        # Only the last M+2 positions and the L edges before them matter: drop the rest
        # before the history window, so a user with 400k edges costs M+2+L rows there.
        positioned = positioned.filter(pos >= n - 2 - params.max_train - params.history_len)
    # The history frame reads the rows before each sample; filter samples after it.
    with_history = positioned.withColumn(
        "history",
        F.collect_list("item_id").over(by_time.rowsBetween(-params.history_len, -1)),
    )
    return with_history.filter(keep).select(
        F.lit(ds).alias("ds"),
        split.alias("split"),
        F.concat_ws(":", "user_id", pos.cast("string")).alias("sample_id"),
        "user_id",
        pos.cast("int").alias("position"),
        "history",
        F.col("item_id").alias("target_item_id"),
        F.col("ts").alias("target_ts"),
    )


_DRAW_SCHEMA = T.StructType(
    [
        T.StructField("split", T.StringType()),
        T.StructField("sample_id", T.StringType()),
        T.StructField("seed", T.LongType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("target_item_id", T.StringType()),
        T.StructField("items", T.ArrayType(T.StringType())),
    ]
)


def user_positives(edges: DataFrame) -> DataFrame:
    """(user_id, positives): every item each user has an edge with, as one set."""
    return edges.groupBy("user_id").agg(F.collect_set("item_id").alias("positives"))


def build_candidates(
    spark,
    edges: DataFrame,
    samples: DataFrame,
    ds: str,
    params: CandidateParams,
    positives: DataFrame,
) -> DataFrame:
    """Candidate rows per (sample, seed); ``items`` is null where too few negatives exist.

    The vocabulary (items with an edge, sorted) and their degrees are broadcast: every
    executor builds the same sampler, so a draw depends only on (seed, user, sample, D).
    """
    from spark_jobs.sampling import CandidateSampler

    vocab = edges.groupBy("item_id").count().orderBy("item_id").collect()
    vocabulary = [r["item_id"] for r in vocab]
    degrees = [r["count"] for r in vocab] if params.sampler == "popularity" else None
    shared = spark.sparkContext.broadcast((vocabulary, degrees))
    # One row per user: a heavy user's item set travels to Python once, not per sample.
    todo = samples.groupBy("user_id").agg(
        F.collect_list(F.struct("split", "sample_id", "target_item_id")).alias("todo")
    )
    work = todo.join(positives, on="user_id", how="inner")
    first_seed, all_seeds = params.seeds[:1], params.seeds

    def draw(batches):
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(_DRAW_SCHEMA)
        vocab_list, degs = shared.value
        samplers = {
            seed: CandidateSampler(
                vocab_list, seed=seed, ds=ds, n=params.n, degrees=degs, alpha=params.alpha
            )
            for seed in all_seeds
        }
        for batch in batches:
            out = {name: [] for name in _DRAW_SCHEMA.fieldNames()}
            for row in batch.to_pylist():
                user, seen = row["user_id"], set(row["positives"])
                unseen = samplers[all_seeds[0]].unseen(seen)
                for s in row["todo"]:
                    for seed in first_seed if s["split"] == "train" else all_seeds:
                        items = samplers[seed].draw(
                            user, s["sample_id"], s["target_item_id"], seen, unseen
                        )
                        out["split"].append(s["split"])
                        out["sample_id"].append(s["sample_id"])
                        out["seed"].append(seed)
                        out["user_id"].append(user)
                        out["target_item_id"].append(s["target_item_id"])
                        out["items"].append(items)
            yield pa.RecordBatch.from_pydict(out, schema=schema)

    return work.mapInArrow(draw, _DRAW_SCHEMA)


def label_array(n: int) -> Column:
    """``r2rec.prompt.candidate_labels(n)`` as a Spark array literal."""
    from r2rec.prompt import candidate_labels

    return F.array(*[F.lit(label) for label in candidate_labels(n)])


def candidate_rows(drawn: DataFrame, ds: str, params: CandidateParams) -> DataFrame:
    labels = label_array(params.n)
    idx = F.array_position("items", F.col("target_item_id"))
    return drawn.filter(F.col("items").isNotNull()).select(
        F.lit(ds).alias("ds"),
        "split",
        "sample_id",
        "seed",
        "user_id",
        "target_item_id",
        "items",
        labels.alias("labels"),
        F.element_at(labels, idx.cast("int")).alias("target_label"),
        F.lit(params.sampler).alias("sampler"),
    )


def quarantine_rows(drawn: DataFrame, ds: str, params: CandidateParams) -> DataFrame:
    return quality.quarantine_frame(
        drawn.filter(F.col("items").isNull()),
        ds,
        JOB,
        "sample",
        F.struct("sample_id", "seed", "user_id", "target_item_id"),
        "not_enough_negatives",
        f"the user has fewer than {params.n - 1} unseen items",
    )


def sample_checks(samples: DataFrame) -> dict[str, DataFrame]:
    return {
        "samples_key_not_null": samples.filter(
            F.col("sample_id").isNull()
            | F.col("user_id").isNull()
            | F.col("target_item_id").isNull()
        ),
        "samples_unique": samples.groupBy("sample_id").count().filter(F.col("count") > 1),
        "samples_target_not_in_history": samples.filter(
            F.array_contains("history", F.col("target_item_id"))
        ),
    }


def candidate_checks(candidates: DataFrame, positives: DataFrame, n: int) -> dict[str, DataFrame]:
    """``positives``: :func:`user_positives` of the edges."""
    # Each user's items as one set, met by the user's few candidate lists: exploding the
    # lists to one row per item and joining them to the edges shuffled 20 times the rows.
    negatives = F.array_remove("items", F.col("target_item_id"))
    negatives_seen = (
        candidates.join(positives, on="user_id", how="inner")
        .select(
            "sample_id",
            "seed",
            "user_id",
            "target_item_id",
            F.array_intersect(negatives, "positives").alias("seen_negatives"),
        )
        .filter(F.size("seen_negatives") > 0)
    )
    return {
        "candidates_exactly_n": candidates.filter(
            (F.size("items") != n) | (F.size(F.array_distinct("items")) != n)
        ),
        # Without a lambda (interpreted per element): removing the target shortens the
        # list by the number of times it is there.
        "candidates_target_once": candidates.filter(F.size("items") - F.size(negatives) != 1),
        "candidates_label_matches_target": candidates.filter(
            F.element_at("items", F.array_position("labels", F.col("target_label")).cast("int"))
            != F.col("target_item_id")
        ),
        "candidates_negative_is_positive": negatives_seen,
    }


def run(
    spark,
    lakehouse: Lakehouse,
    ds: str,
    sample_params: SampleParams | None = None,
    candidate_params: CandidateParams | None = None,
) -> dict:
    from pyspark import StorageLevel

    ds = parse_ds(ds)
    sp, cp = sample_params or SampleParams(), candidate_params or CandidateParams()
    part = {"ds": ds}
    cached = []

    def keep(df: DataFrame) -> DataFrame:
        cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return cached[-1]

    edges = keep(read_edges(spark, lakehouse, ds))
    try:
        samples = keep(build_samples(edges, ds, sp))
        positives = keep(user_positives(edges))
        drawn = keep(build_candidates(spark, edges, samples, ds, cp, positives))
        candidates = candidate_rows(drawn, ds, cp)
        results = quality.run_checks(
            {**sample_checks(samples), **candidate_checks(candidates, positives, cp.n)}
        )
        counts = {
            f"samples.{r['split']}": r["count"] for r in samples.groupBy("split").count().collect()
        }
        quarantined = drawn.filter(F.col("items").isNull()).count()
        lakehouse.overwrite(
            QUARANTINE,
            quarantine_rows(drawn, ds, cp),
            partition={"ds": ds, "job": JOB, "source": NO_SOURCE},
        )
        quality.enforce(JOB, ds, results)
        versions = {
            SAMPLES.name: lakehouse.overwrite(SAMPLES, samples, partition=part),
            CANDIDATES.name: lakehouse.overwrite(CANDIDATES, candidates, partition=part),
        }
    finally:
        for df in cached:
            df.unpersist()
    extra = {**counts, "candidates.quarantined": quarantined}
    record_metrics(lakehouse, JOB, ds, extra, results)
    return {"ds": ds, "versions": versions, **extra}


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m spark_jobs.samples", __doc__.splitlines()[0])
    d_s, d_c = SampleParams(), CandidateParams()
    p.add_argument("--history-len", type=int, default=d_s.history_len, help="L")
    p.add_argument("--min-history", type=int, default=d_s.min_history)
    p.add_argument("--max-train", type=int, default=d_s.max_train, help="M; 0 = all")
    p.add_argument("--candidates", type=int, default=d_c.n, help="N per sample")
    p.add_argument("--seeds", default=",".join(map(str, d_c.seeds)), help="comma-separated")
    p.add_argument("--sampler", choices=["uniform", "popularity"], default=d_c.sampler)
    p.add_argument("--alpha", type=float, default=d_c.alpha, help="popularity exponent")
    args = p.parse_args(argv)

    def body():
        from spark_jobs.session import get_spark

        sp = SampleParams(args.history_len, args.min_history, args.max_train)
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        cp = CandidateParams(args.candidates, seeds, args.sampler, args.alpha)
        return run(get_spark(), Lakehouse(args.lakehouse), args.ds, sp, cp)

    return run_main(body, job="samples", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
