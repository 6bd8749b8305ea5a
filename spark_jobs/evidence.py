"""Evidence job: the chains that reach every candidate of a prompt (docs/METHOD.md §8a).

    python -m spark_jobs.evidence --ds 2026-11-25 [--scope samples|serve] [--fanout 50]

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

The score (``strength``) orders the candidates: over every similar user u1 of the
candidate, their Jaccard overlap with the user times the cosine terms of the history items
u1 shares (1 / sqrt of each item's audience), summed and divided by the square root of the
candidate's audience, all as of the cutoff. It counts every user, not only the capped
ones: the cap bounds what the rows summarise, not the score. ``bench.evidence_score``
measures it (``bench/RESULTS.md``, "Evidence score v3").

How it scales: the chains job's broadcast adjacency arrays; each executor expands its
prompts with numpy, all candidates of a prompt at once (one gather of their audiences,
one of the similar users' items), so the cost is that of the chains job per prompt.
Rows leave the executor finished, with item ids and the cutoff: joining millions of
rows back to the id map and the contexts took as long as the expansion itself at 1M
(``bench.pipeline``: evidence 564 s with the joins, 283 s without).
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
from spark_jobs.chains import GraphIndex, _gather, build_index, time_key
from spark_jobs.graph import read_edges
from spark_jobs.params import ChainParams

JOB = "evidence"
SCOPES = ("samples", "serve")
VIA_KEEP = 5  # history items kept per row; prompts name the first SHAPE.evidence_via


def sample_contexts(samples: DataFrame, candidates: DataFrame) -> DataFrame:
    """One context per sample with candidates: every seed's candidates, as of its target."""
    items = candidates.groupBy("sample_id").agg(
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("items")))).alias("items")
    )
    return samples.join(items, "sample_id").select(
        F.col("sample_id").alias("context_id"),
        "user_id",
        F.col("target_ts").alias("cutoff"),
        "history",
        "items",
    )


def serve_contexts(serve: DataFrame, ds: str) -> DataFrame:
    """One context per active user: the retrieved candidates, as of the start of D."""
    return serve.select(
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
    scratch: np.ndarray,
) -> list[tuple]:
    """(candidate, users, paths, overlap, score, via, via_users) for each candidate a
    chain reaches.

    ``scratch`` is a zeroed int array over items, reused across contexts: bit 30 marks
    u0's items before the cutoff, the low bits hold 1 + the history index of each
    usable history item.
    """
    lo = g.seq_ptr[u0]
    n_before = int(np.searchsorted(g.seq_ts[lo : g.seq_ptr[u0 + 1]], cutoff, side="left"))
    a_items = g.seq_item[lo : lo + n_before]
    in_a = 1 << 30
    scratch[a_items] |= in_a
    hist_arr = np.asarray(hist, dtype=np.int64)
    # A history item tied with the cutoff is not before it: no chain passes through it.
    usable = hist_arr[(scratch[hist_arr] & in_a) > 0] if len(hist_arr) else hist_arr
    index = {int(h): k for k, h in enumerate(hist)}
    scratch[usable] |= np.array([index[int(h)] + 1 for h in usable], dtype=np.int64)
    try:
        pos, owner = _gather(g.in_ptr, cands)
        ok = (g.in_ts[pos] < cutoff) & (g.in_user[pos] != u0)
        pair_c, pair_u = owner[ok], g.in_user[pos][ok]
        if not len(pair_u):
            return []
        u1s, pair_k = np.unique(pair_u, return_inverse=True)
        pos2, own2 = _gather(g.out_ptr, u1s)
        before = g.out_ts[pos2] < cutoff
        own2, b_items = own2[before], g.out_item[pos2][before]
        marks = scratch[b_items]
        overlap = np.bincount(own2, weights=(marks & in_a) > 0, minlength=len(u1s))
        b_size = np.bincount(own2, minlength=len(u1s))
        hist_pos = marks & (in_a - 1)
        hit = hist_pos > 0
        # hits[k, j]: similar user k chose history item j (both before the cutoff).
        hits = np.zeros((len(u1s), len(hist)), dtype=np.int64)
        hits[own2[hit], hist_pos[hit] - 1] = 1
    finally:
        scratch[a_items] = 0
        if len(usable):
            scratch[usable] = 0
    jaccard = overlap / np.maximum(len(a_items) + b_size - overlap, 1)
    # A similar user: closure holds and it chose at least one usable history item.
    similar = (overlap >= params.min_overlap) & hits.any(axis=1)
    reach = np.zeros((len(cands), len(u1s)), dtype=np.int64)
    reach[pair_c, pair_k] = similar[pair_k]
    # i0 = the candidate itself is no chain (it cannot happen for unseen candidates).
    owns = [(c, own) for c, x in enumerate(cands.tolist()) if (own := index.get(x)) is not None]
    for c, own in owns:
        reach[c] &= np.delete(hits, own, axis=1).any(axis=1)
    # (candidate, history item): similar users through it. In float64 (exact for these
    # counts), as numpy's integer matmul has no BLAS.
    via_users = np.rint(reach.astype(np.float64) @ hits.astype(np.float64)).astype(np.int64)
    for c, own in owns:
        via_users[c, own] = 0
    users = reach.sum(axis=1)
    summed = reach @ jaccard
    score = strength(g, u0, cutoff, a_items, usable, cands, params.min_overlap)
    # Most users first, then the more recent history item.
    order = np.argsort(-(via_users * (len(hist) + 1) + np.arange(len(hist))), axis=1)
    out = []
    for c in np.flatnonzero(users).tolist():
        via = [j for j in order[c, :VIA_KEEP].tolist() if via_users[c, j] > 0]
        out.append(
            (
                int(cands[c]),
                int(users[c]),
                int(via_users[c].sum()),
                float(summed[c] / users[c]),
                float(score[c]),
                [int(hist[j]) for j in via],
                [int(via_users[c, j]) for j in via],
            )
        )
    return out


def audience_before(
    g: GraphIndex, items: np.ndarray, rank: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every user of each item before the cutoff (not only the capped ones): the users
    concatenated, the index of the item each came from, and each item's count.

    ``rank`` is the cutoff's rank among the edge times: an audience is a prefix of the
    item's edges in time order, found by one vectorised binary search.
    """
    items = np.asarray(items, dtype=np.int64)
    lens = np.searchsorted(g.aud_key, time_key(items, len(g.aud_times), rank)) - g.aud_ptr[items]
    pos, owner = _gather(g.aud_ptr, items, lens)
    return g.aud_user[pos], owner, lens


def strength(
    g: GraphIndex,
    u0: int,
    cutoff: int,
    a_items: np.ndarray,
    usable: np.ndarray,
    cands: np.ndarray,
    min_overlap: int,
) -> np.ndarray:
    """The evidence ranker's score of each candidate (docs/METHOD.md §8a).

    score(c) = sum over the similar users u1 of c of J(u0, u1) x sum over the history
    items h that u1 also chose of 1 / sqrt(|U_h|), divided by sqrt(|U_c|). U_x is x's
    users before the cutoff (u0 left out of U_c), J the Jaccard overlap of the two
    users' items before it, and a similar user one that meets the chains' closure and
    chose a history item other than c. That is a user-based weight (how alike u1 is)
    times ItemKNN's cosine terms (how telling a shared history item is: a niche film
    shared says more than a blockbuster shared); measured better than either alone
    (``bench/RESULTS.md``, "Evidence score v3").

    Every user counts here, not only the chains' capped ones: the cap bounds what the
    prompt lists. The exact overlaps cost one gather of the audiences of u0's items;
    estimated from the capped item lists instead, the ranker lost 0.013 HR@1 on
    ML-100k for about a fifth less time at 1M (``bench/RESULTS.md``).
    """
    rank = int(np.searchsorted(g.aud_times, cutoff, side="left"))
    n_users = len(g.users)
    h_users, h_own, h_lens = audience_before(g, usable, rank)
    h_weight = 1.0 / np.sqrt(np.maximum(h_lens, 1))
    weight = np.bincount(h_users, weights=h_weight[h_own], minlength=n_users)
    shared = np.bincount(h_users, minlength=n_users)
    c_users, c_own, _ = audience_before(g, cands, rank)
    keep = c_users != u0
    c_users, c_own = c_users[keep], c_own[keep]
    w, n = weight[c_users], shared[c_users]
    # A candidate in the history is no hop to itself: its own term leaves its users' sums.
    where = {int(h): k for k, h in enumerate(usable.tolist())}
    for k, c in enumerate(cands.tolist()):
        if (j := where.get(c)) is not None:
            mine = c_own == k
            w[mine] -= h_weight[j]
            n[mine] -= 1
    a_users, _, _ = audience_before(g, a_items, rank)
    overlap = np.bincount(a_users, minlength=n_users)
    o = overlap[c_users]
    similar = (o >= min_overlap) & (n > 0)
    jaccard = np.zeros(len(c_users))
    jaccard[similar] = _jaccard(g, rank, len(a_items), c_users[similar], o[similar])
    summed = np.bincount(c_own, weights=jaccard * w, minlength=len(cands))
    audience = np.bincount(c_own, minlength=len(cands))
    return summed / np.sqrt(np.maximum(audience, 1))


def _jaccard(g: GraphIndex, rank: int, n_a: int, users: np.ndarray, o: np.ndarray) -> np.ndarray:
    """Each user's Jaccard overlap with u0 (``n_a`` items, ``o`` shared) before the cutoff."""
    # A user who chose all their items before the cutoff needs one read, not a binary
    # search over every edge (most of whose steps miss the cache at 1M).
    ends = g.seq_ptr[users + 1]
    sizes = ends - g.seq_ptr[users]
    bound = time_key(users, len(g.aud_times), rank)
    some = np.flatnonzero(g.seq_key[ends - 1] >= bound)
    sizes[some] = np.searchsorted(g.seq_key, bound[some]) - g.seq_ptr[users[some]]
    return o / np.maximum(n_a + sizes - o, 1)


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
    work = contexts.join(F.broadcast(user_ids), "user_id").select(
        "context_id",
        "user_id",
        "uid",
        F.unix_micros("cutoff").alias("cutoff_us"),
        "history",
        "items",
    )

    def expand(batches):
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(_OUT)
        g = GraphIndex(**shared.value)
        names = g.items.tolist()  # iid -> item_id: rows leave with ids, no join back
        item_pos = {item: k for k, item in enumerate(names)}
        scratch = np.zeros(len(g.items), dtype=np.int64)
        fields = _OUT.fieldNames()
        for batch in batches:
            out = {name: [] for name in fields}
            for r in batch.to_pylist():
                # Candidates and history items outside the graph (no edge before D) have
                # no audience: nothing can reach them.
                hist = [item_pos[h] for h in r["history"] if h in item_pos]
                cands = np.array([item_pos[i] for i in r["items"] if i in item_pos], np.int64)
                found = evidence_for_context(
                    g, r["uid"], r["cutoff_us"], hist, cands, params, scratch
                )
                for iid, users, paths, overlap, score, via, via_users in found:
                    row = (r["context_id"], r["user_id"], r["cutoff_us"], names[iid], users,
                           paths, overlap, score, [names[i] for i in via], via_users)  # fmt: skip
                    for name, value in zip(fields, row, strict=True):
                        out[name].append(value)
            yield pa.RecordBatch.from_pydict(out, schema=schema)

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
    u0_via = evidence.select("context_id", "user_id", "cutoff", F.explode("via").alias("i0"))
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
        n_contexts = contexts.count()
        candidates = contexts.agg(F.sum(F.size("items"))).first()[0] or 0
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
    args = p.parse_args(argv)

    def body():
        from spark_jobs.session import get_spark

        params = ChainParams(fanout=args.fanout, seed=args.seed)
        return run(get_spark(), Lakehouse(args.lakehouse), args.ds, args.scope, params)

    return run_main(body, job="evidence", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
