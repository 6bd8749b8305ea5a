"""Evidence job: the chains that reach every candidate of a prompt (docs/METHOD.md §8a).

    python -m spark_jobs.evidence --ds 2026-11-25 [--scope samples|serve] [--fanout 50]
        [--history-decay 0.7] [--proximity 10] [--proximity-scale 10]

For every prompt the model will see, and for every candidate in it, the interaction
chains u0 -> i0 -> u1 -> candidate that start in the user's history: u1 also chose a
history item i0 and the candidate, and shares at least two items with u0 (closure).
The rules are the chains job's, with the candidate in place of the target: at most F
users per item and F items per user (seeded), and only edges before the prompt's
cutoff: the sample's target time (``--scope samples``: every candidate list of
``samples``/``candidates``), or the start of D (``--scope serve``: ``serve_candidates``).
Which candidate is the target is never read, so the target and the negatives get
evidence by the same rule and its presence carries no label.

Writes partition (D, scope) of ``candidate_evidence``: one row per (prompt, candidate)
that a chain reaches, with the number of similar users, paths, their mean overlap
(Jaccard) with the user, the evidence ranker's score and the history items the chains
pass through, most users first. A candidate without a row has no evidence.

The score (``evidence_for_context``) orders the candidates: over every similar user u1
of the candidate, their Jaccard overlap with the user times the cosine terms of the
history items u1 shares (1 / sqrt of each item's audience, times ``--history-decay`` for
every history item after it: the recent ones count most; and times more, by
``--proximity`` and ``--proximity-scale``, the closer the candidate stands to that item
in u1's own sequence), summed and divided by the square root of the candidate's
audience, all as of the cutoff. It counts every user, not only the capped ones: the cap
bounds what the rows summarise, not the score. ``bench.evidence_score`` measures it
(``bench/RESULTS.md``, "Evidence score v3", "Evidence ranker: v4 (decay 0.7) against v3
(decay 1)" and "Evidence ranker: v5 (proximity 10, scale 10) against v4").

How it scales: the chains job's broadcast adjacency arrays, plus every edge by (item,
time) for the uncapped audiences; each executor grounds an Arrow batch of prompts at
a time in a compiled kernel (``spark_jobs.kernels``, numba) that visits each edge it
needs once per prompt, with a workspace over users and items that it clears after
itself, and the rows leave the executor as Arrow columns with item ids and the cutoff:
no join back. At 1M interactions (``bench.pipeline``) the job took 564 s when each
prompt was a dozen numpy gathers and masks (4-6 ms a prompt); ``bench/RESULTS.md`` has
the kernel's time.
"""

from __future__ import annotations

import sys

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from r2rec.config import ds_start, parse_ds
from r2rec.contracts import CANDIDATE_EVIDENCE, CANDIDATES, SAMPLES, SERVE_CANDIDATES
from r2rec.errors import R2RecError
from r2rec.jobs import base_parser, record_metrics, run_main
from r2rec.lakehouse import Lakehouse
from spark_jobs import quality
from spark_jobs.chains import GraphIndex, build_index
from spark_jobs.graph import read_edges
from spark_jobs.kernels import Workspace, batch_evidence, near_table
from spark_jobs.params import ChainParams

JOB = "evidence"
SCOPES = ("samples", "serve")
VIA_KEEP = 5  # history items kept per row; prompts name the first SHAPE.evidence_via


def sample_contexts(samples: DataFrame, candidates: DataFrame) -> DataFrame:
    """One context per sample with candidates: every seed's candidates, as of its target.

    Clustered by user from the first shuffle on: the kernel wants a user's prompts
    together, and grouping, join and kernel then share one exchange per input (the
    contexts, history and 58 item ids each, are not shuffled again)."""
    items = (
        candidates.repartition("user_id")
        .groupBy("user_id", "sample_id")
        .agg(F.array_sort(F.array_distinct(F.flatten(F.collect_list("items")))).alias("items"))
    )
    return (
        samples.repartition("user_id")
        .join(items, ["user_id", "sample_id"])
        .select(
            F.col("sample_id").alias("context_id"),
            "user_id",
            F.col("target_ts").alias("cutoff"),
            "history",
            "items",
        )
    )


def serve_contexts(serve: DataFrame, ds: str) -> DataFrame:
    """One context per active user: the retrieved candidates, as of the start of D.

    Spread over the shuffle partitions: the table may be a single file, and one task
    would leave the other cores idle."""
    return serve.repartition("user_id").select(
        F.col("user_id").alias("context_id"),
        "user_id",
        F.lit(ds_start(ds)).cast("timestamp").alias("cutoff"),
        "history",
        "items",
    )


def evidence_for_context(
    g: GraphIndex,
    u0: int,
    cutoff: int,
    hist: list[int],
    cands: np.ndarray,
    params: ChainParams,
    work: Workspace,
) -> list[tuple]:
    """(candidate, users, paths, overlap, score, via, via_users) for each candidate a
    chain reaches; ``work`` is the executor's workspace over the graph's users and items.

    The score orders the candidates (docs/METHOD.md §8a): over the similar users u1 of c,
    J(u0, u1) x the sum over the history items h that u1 also chose of
    decay^(history items after h) / sqrt(|U_h|) x (1 + proximity x exp((1 - g) /
    proximity_scale)), divided by sqrt(|U_c|); U_x is x's users before the cutoff (u0
    left out of U_c), J the Jaccard overlap of the two users' items before it, g how
    many places apart h and c are in u1's sequence, and a similar user one that meets
    the chains' closure and chose a history item other than c. A user-based weight (how
    alike u1 is) times ItemKNN's cosine terms (a niche film shared says more than a
    blockbuster shared), the recent history weighted more, and a user who chose c right
    after (or before) h more than one who chose it many ratings apart; measured
    better than either alone, than the whole history alike and than every place alike
    (``bench/RESULTS.md``, "Evidence score v3", "v4 (decay 0.7) against v3", "v5
    (proximity 10, scale 10) against v4"). Every user counts in it, not only the chains'
    capped ones: the cap bounds what the prompt lists.
    """
    found = context_arrays(g, u0, cutoff, hist, cands, params, work)
    return [
        (int(c), int(n), int(p), float(o), float(sc),
         [int(i) for i in v if i >= 0], [int(x) for i, x in zip(v, vn, strict=True) if i >= 0])
        for c, n, p, o, sc, v, vn in zip(*found, strict=True)
    ]  # fmt: skip


def context_arrays(
    g: GraphIndex, u0, cutoff, hist, cands, params: ChainParams, work: Workspace
) -> tuple[np.ndarray, ...]:
    """``evidence_for_context`` as arrays (``batch_arrays`` of one prompt)."""
    hist, cands = np.asarray(hist, dtype=np.int64), np.asarray(cands, dtype=np.int64)
    found = batch_arrays(
        g, np.array([u0]), np.array([cutoff]), np.array([0, len(hist)]), hist,
        np.array([0, len(cands)]), cands, params, work,
    )  # fmt: skip
    return found[1:]


def batch_arrays(
    g: GraphIndex, uids, cutoffs, hist_at, hist, cand_at, cands, params: ChainParams,
    work: Workspace,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """One entry per candidate a chain reaches, over a batch of prompts (prompt k: user
    ``uids[k]``, ``hist[hist_at[k]:hist_at[k + 1]]``, ``cands[cand_at[k]:cand_at[k +
    1]]``, graph positions): the prompt's place in the batch, candidate, users, paths,
    overlap, score, via (item positions, -1 pads to VIA_KEEP) and via_users."""
    users, paths, summed, score, via, via_n = batch_evidence(
        g.seq_ptr, g.seq_item, g.seq_ts, g.out_ptr, g.out_item, g.out_ts,
        g.in_ptr, g.in_user, g.in_ts, g.aud_ptr, g.aud_user, g.aud_ts, g.aud_pos,
        np.asarray(uids, dtype=np.int64), np.asarray(cutoffs, dtype=np.int64),
        np.asarray(hist_at, dtype=np.int64), hist, np.asarray(cand_at, dtype=np.int64), cands,
        params.min_overlap, VIA_KEEP, params.history_decay,
        # a_len has a place per edge of the longest sequence: every gap is in the table.
        near_table(params.proximity, params.proximity_scale, len(work.a_len)),
        work.item_mark, work.user_slot, work.overlap, work.a_len, work.run,
    )  # fmt: skip
    hit = np.flatnonzero(users)
    at = np.repeat(np.arange(len(cand_at) - 1), np.diff(cand_at))[hit]
    via = via[hit]
    via = np.where(via >= 0, hist[np.maximum(via, 0)], -1) if len(hist) else via
    return (
        at,
        cands[hit],
        users[hit],
        paths[hit],
        summed[hit] / users[hit],
        score[hit],
        via,
        via_n[hit],
    )


def _positions(lists, names) -> tuple[np.ndarray, np.ndarray]:
    """A list<string> column of item ids as (offsets, graph positions), the ids outside
    the graph left out: they have no edge before D, so nothing can reach them."""
    import pyarrow.compute as pc

    pos = pc.index_in(lists.flatten(), value_set=names)
    inside = pos.is_valid().to_numpy(zero_copy_only=False)
    row = np.repeat(np.arange(len(lists)), np.diff(lists.offsets.to_numpy()))
    offsets = np.searchsorted(row[inside], np.arange(len(lists) + 1))
    return offsets, pos.drop_null().to_numpy().astype(np.int64)


def _rows(batch, names, schema, found: tuple[np.ndarray, ...]):
    """One Arrow batch of evidence rows from ``batch_arrays`` over ``batch``."""
    import pyarrow as pa

    at, cand, users, paths, overlap, score, via, via_n = found
    keep = via.ravel() >= 0  # -1 pads the lists of fewer than VIA_KEEP items
    offsets = pa.array(np.r_[0, np.cumsum((via >= 0).sum(axis=1))].astype(np.int32))
    columns = {
        "context_id": batch.column("context_id").take(at),
        "user_id": batch.column("user_id").take(at),
        "cutoff_us": batch.column("cutoff_us").take(at),
        "item_id": names.take(cand),
        "users": pa.array(users.astype(np.int32)),
        "paths": pa.array(paths.astype(np.int32)),
        "overlap": pa.array(overlap),
        "score": pa.array(score),
        "via": pa.ListArray.from_arrays(offsets, names.take(via.ravel()[keep])),
        "via_users": pa.ListArray.from_arrays(offsets, pa.array(via_n.ravel()[keep], pa.int32())),
    }
    return pa.RecordBatch.from_pydict(columns, schema=schema)


_OUT = T.StructType(
    [
        T.StructField("context_id", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("cutoff_us", T.LongType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("users", T.IntegerType()),
        T.StructField("paths", T.IntegerType()),
        T.StructField("overlap", T.DoubleType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("via", T.ArrayType(T.StringType())),
        T.StructField("via_users", T.ArrayType(T.IntegerType())),
    ]
)


def build_evidence(
    spark, edges: DataFrame, contexts: DataFrame, ds: str, scope: str, params: ChainParams
) -> DataFrame:
    index, user_ids, _ = build_index(spark, edges, params, audience=True)
    shared = spark.sparkContext.broadcast(vars(index))  # plain pickle: no __main__ classes
    # A user's prompts by cutoff: the kernel carries u0's overlap counts from one prompt
    # to the next (spark_jobs.kernels). Both kinds of context come clustered by user.
    # Any order is exact, only slower.
    work = (
        contexts.join(F.broadcast(user_ids), "user_id")
        .select(
            "context_id",
            "user_id",
            "uid",
            F.unix_micros("cutoff").alias("cutoff_us"),
            "history",
            "items",
        )
        .sortWithinPartitions("uid", "cutoff_us")
    )

    def expand(batches):
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(_OUT)
        g = GraphIndex(**shared.value)
        names = pa.array(g.items.tolist(), pa.string())  # iid -> item_id: no join back
        space = Workspace.for_graph(g)
        for batch in batches:
            # Nothing in Python per context: ids become graph positions a column at a
            # time, one kernel call grounds the batch, and the rows are assembled as
            # columns (4M rows at 1M interactions).
            hist_at, hist = _positions(batch.column("history"), names)
            cand_at, cand = _positions(batch.column("items"), names)
            found = batch_arrays(
                g, batch.column("uid").to_numpy(), batch.column("cutoff_us").to_numpy(),
                hist_at, hist, cand_at, cand, params, space,
            )  # fmt: skip
            yield _rows(batch, names, schema, found)

    return work.mapInArrow(expand, _OUT).select(
        F.lit(ds).alias("ds"),
        F.lit(scope).alias("scope"),
        "context_id",
        "user_id",
        "item_id",
        F.timestamp_micros("cutoff_us").alias("cutoff"),
        "users",
        "paths",
        "overlap",
        "score",
        "via",
        "via_users",
    )


def evidence_checks(evidence: DataFrame, edges: DataFrame) -> dict[str, DataFrame]:
    """Every row is a real chain summary, built from edges before its cutoff only."""
    # Each (user, history item) is checked once, against the earliest cutoff of the
    # prompts that pass through it: its edge must precede them all, so it precedes each.
    # The rows come clustered by user, and the aggregate shrinks them (4M at 1M
    # interactions) to about a user's history before its shuffle.
    u0_via = (
        evidence.select("context_id", "user_id", "cutoff", F.explode("via").alias("i0"))
        .groupBy("user_id", "i0")
        .agg(
            F.min("cutoff").alias("cutoff"),
            F.min_by("context_id", "cutoff").alias("context_id"),  # the example named
        )
    )
    edge = edges.select("user_id", F.col("item_id").alias("i0"), F.col("ts").alias("e_ts"))
    via_after = u0_via.join(edge, ["user_id", "i0"], "left").filter(
        F.col("e_ts").isNull() | (F.col("e_ts") >= F.col("cutoff"))
    )
    return {
        "evidence_key_not_null": evidence.filter(
            F.col("context_id").isNull() | F.col("item_id").isNull()
        ),
        "evidence_counts_positive": evidence.filter(
            (F.col("users") < 1)
            | (F.col("paths") < F.col("users"))
            | (F.size("via") < 1)
            | (F.col("overlap") <= 0)
            | (F.col("overlap") > 1)
        ),
        "evidence_via_edge_before_cutoff": via_after,
    }


def run(
    spark, lakehouse: Lakehouse, ds: str, scope: str = "samples", params: ChainParams | None = None
) -> dict:
    from pyspark import StorageLevel

    ds = parse_ds(ds)
    if scope not in SCOPES:
        raise R2RecError(f"unknown scope '{scope}' (expected one of {', '.join(SCOPES)})")
    params = params or ChainParams()
    on_ds = [("ds", "=", ds)]
    needs = (SAMPLES, CANDIDATES) if scope == "samples" else (SERVE_CANDIDATES,)
    missing = [t.name for t in needs if not lakehouse.exists(t)]
    if missing:
        job = "samples" if scope == "samples" else "retrieval"
        raise R2RecError(f"no {', '.join(missing)} table: run the {job} job for {ds} first")
    edges = read_edges(spark, lakehouse, ds).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if scope == "samples":
            contexts = sample_contexts(
                lakehouse.read_spark(spark, SAMPLES, partitions=on_ds),
                lakehouse.read_spark(spark, CANDIDATES, partitions=on_ds),
            )
        else:
            contexts = serve_contexts(
                lakehouse.read_spark(spark, SERVE_CANDIDATES, partitions=on_ds), ds
            )
        contexts = contexts.persist(StorageLevel.MEMORY_AND_DISK)
        evidence = build_evidence(spark, edges, contexts, ds, scope, params).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        results = quality.run_checks(evidence_checks(evidence, edges))
        quality.enforce(JOB, ds, results)
        version = lakehouse.overwrite(
            CANDIDATE_EVIDENCE, evidence, partition={"ds": ds, "scope": scope}
        )
        stats = evidence.agg(
            F.count("*").alias("rows"), F.countDistinct("context_id").alias("covered")
        ).first()
        sizes = contexts.agg(F.count("*"), F.sum(F.size("items"))).first()
        n_contexts, candidates = sizes[0], sizes[1] or 0
        evidence.unpersist()
        contexts.unpersist()
    finally:
        edges.unpersist()
    metrics = {
        f"{scope}.contexts": n_contexts,
        f"{scope}.rows": stats["rows"],
        # Share of prompts with evidence for at least one candidate: the others are
        # rendered without evidence, and flagged.
        f"{scope}.coverage": stats["covered"] / n_contexts if n_contexts else 0.0,
        f"{scope}.candidates_with_evidence": stats["rows"] / candidates if candidates else 0.0,
        # Which score the rows carry (1 = v3, before the decay): defaults leave no trace
        # in the job's recorded options.
        f"{scope}.history_decay": params.history_decay,
        f"{scope}.proximity": params.proximity,  # 0 = v4
        f"{scope}.proximity_scale": params.proximity_scale,
    }
    record_metrics(lakehouse, f"{JOB}.{scope}", ds, metrics, results)
    return {"ds": ds, "scope": scope, "candidate_evidence_version": version, **metrics}


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m spark_jobs.evidence", __doc__.splitlines()[0])
    d = ChainParams()
    p.add_argument("--scope", choices=SCOPES, default="samples")
    p.add_argument(
        "--fanout", type=int, default=d.fanout, help="F users per item / items per user; 0 = no cap"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--history-decay", type=float, default=d.history_decay,
        help="the score's weight per later history item, in (0, 1]; 1 = score v3",
    )  # fmt: skip
    p.add_argument(
        "--proximity", type=float, default=d.proximity,
        help="how much more a similar user counts who chose the candidate right next to "
        "the history item in its sequence; 0 = every place alike (score v4)",
    )  # fmt: skip
    p.add_argument(
        "--proximity-scale", type=float, default=d.proximity_scale,
        help="places apart at which that extra weight falls by e",
    )  # fmt: skip
    args = p.parse_args(argv)

    def body():
        from spark_jobs.session import get_spark

        params = ChainParams(
            fanout=args.fanout, seed=args.seed, history_decay=args.history_decay,
            proximity=args.proximity, proximity_scale=args.proximity_scale,
        )  # fmt: skip
        return run(get_spark(), Lakehouse(args.lakehouse), args.ds, args.scope, params)

    return run_main(body, job="evidence", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
