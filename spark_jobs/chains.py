"""Chains job: top-K positive interaction chains u0 -> i0 -> u1 -> i1 per training sample.

    python -m spark_jobs.chains --ds 2026-11-25 [--top-k 3] [--fanout 50]

Reads ``graph_edges`` and ``samples`` partition D; writes partition D of ``chains``
and reports coverage (definitions: docs/METHOD.md §3, §10).

How it scales: the graph is turned into two compressed adjacency arrays (by user and
by item, integer ids, ~24 bytes an edge) and broadcast; samples stay distributed and
each executor expands its samples in a compiled kernel (``spark_jobs.kernels``).
Expansion from the target item visits at most F users (a seeded sample fixed per item),
and each similar user contributes at most F items, so a blockbuster item costs F per
sample, not its degree squared. The broadcast bounds the graph to what an executor holds
(about 100M edges in 2.4 GB).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from r2rec.config import parse_ds
from r2rec.contracts import CHAINS, SAMPLES
from r2rec.jobs import base_parser, record_metrics, run_main
from r2rec.lakehouse import Lakehouse
from spark_jobs import quality
from spark_jobs.graph import read_edges
from spark_jobs.kernels import sample_chains
from spark_jobs.params import ChainParams

JOB = "chains"


@dataclass
class GraphIndex:
    """CSR adjacency of the graph as of D with dense ids (ids follow sorted string order).

    Only u0's own sequence needs every edge; expansion (item -> users, user -> items)
    only ever visits edges inside the fan-out caps, so those adjacencies hold just them:
    at most F per node, which is what bounds the per-sample cost.
    """

    users: np.ndarray  # uid -> user_id (object array)
    items: np.ndarray  # iid -> item_id
    seq_ptr: np.ndarray  # all edges of uid u: seq_ptr[u]:seq_ptr[u+1], sorted by (ts, iid)
    seq_item: np.ndarray
    seq_ts: np.ndarray  # microseconds since epoch
    out_ptr: np.ndarray  # user -> items, capped edges only
    out_item: np.ndarray
    out_ts: np.ndarray
    in_ptr: np.ndarray  # item -> users, capped edges only, sorted by uid
    in_user: np.ndarray
    in_ts: np.ndarray
    # Only with ``audience`` (the evidence job): every edge by (item, time), so the whole
    # audience of an item before a cutoff is a prefix of its segment (one binary search),
    # however many of its users the cap leaves out. Empty otherwise: the chains job would
    # only broadcast it.
    aud_ptr: np.ndarray
    aud_user: np.ndarray
    aud_ts: np.ndarray
    aud_pos: np.ndarray  # the edge's place in its user's sequence (seq_*), from 0

    @classmethod
    def from_edges(
        cls, users, items, uid, iid, ts, user_keep, item_keep, audience: bool = False
    ) -> GraphIndex:
        def csr(key, n, order, *cols):
            key = key[order]
            return (np.searchsorted(key, np.arange(n + 1)), *(c[order] for c in cols))

        by_seq = np.lexsort((iid, ts, uid))
        seq = csr(uid, len(users), by_seq, iid, ts)
        kept_u = np.flatnonzero(user_keep)
        # Every order fully keyed: the arrays do not depend on the order Spark hands over.
        out = csr(
            uid[kept_u],
            len(users),
            np.lexsort((iid[kept_u], ts[kept_u], uid[kept_u])),
            iid[kept_u],
            ts[kept_u],
        )
        kept_i = np.flatnonzero(item_keep)
        inn = csr(
            iid[kept_i], len(items), np.lexsort((uid[kept_i], iid[kept_i])), uid[kept_i], ts[kept_i]
        )
        if not audience:
            none = np.zeros(0, dtype=np.int64)
            return cls(users, items, *seq, *out, *inn, none, none, none, none)
        place = np.empty(len(uid), dtype=np.int64)
        place[by_seq] = np.arange(len(uid)) - seq[0][uid[by_seq]]
        aud = csr(iid, len(items), np.lexsort((uid, ts, iid)), uid, ts, place)
        return cls(users, items, *seq, *out, *inn, *aud)


def _fanout_hashes(edges: DataFrame, params: ChainParams) -> DataFrame:
    """Each edge's seeded place in its item's and in its user's fan-out order."""
    seed = params.seed

    def hashes(batches):
        import pyarrow as pa

        from r2rec.seeding import stable_hash

        def ordered(owners, members):
            # Signed: Arrow's int64 (Spark has no unsigned 64-bit type); the order is what
            # matters.
            return [
                stable_hash(seed, o, m) - (1 << 63) for o, m in zip(owners, members, strict=True)
            ]

        for batch in batches:
            u, i = batch.column("user_id").to_pylist(), batch.column("item_id").to_pylist()
            yield batch.append_column("h_item", pa.array(ordered(i, u), pa.int64())).append_column(
                "h_user", pa.array(ordered(u, i), pa.int64())
            )

    schema = T.StructType(
        [
            *edges.schema.fields,
            T.StructField("h_item", T.LongType()),
            T.StructField("h_user", T.LongType()),
        ]
    )
    return edges.mapInArrow(hashes, schema)


def first_f(owner: np.ndarray, order_key: np.ndarray, member: np.ndarray, f: int) -> np.ndarray:
    """Whether each edge is among its owner's first ``f`` members by (key, member): the
    fan-out cap, as sorts on the driver rather than two Spark windows (two shuffles)."""
    order = np.lexsort((member, order_key, owner))
    grouped = owner[order]
    rank = np.arange(len(order)) - np.searchsorted(grouped, grouped)  # place in its group
    keep = np.empty(len(order), dtype=bool)
    keep[order] = rank < f
    return keep


def build_index(
    spark, edges: DataFrame, params: ChainParams, audience: bool = False
) -> tuple[GraphIndex, DataFrame, DataFrame]:
    """Dense ids, then only integer columns of the edges travel to the driver.

    The index holds every user and item id anyway, so the sorted ids are collected once
    and handed back to Spark as small local tables (the broadcast side of every join
    with them): an id table built by ``zipWithIndex`` was sorted again by each query
    that used it."""
    import pyarrow as pa

    def dense(col: str, key: str):
        names = edges.select(col).distinct().orderBy(col).toArrow()[col].combine_chunks()
        ids = pa.table({col: names, key: pa.array(np.arange(len(names), dtype=np.int64))})
        return names, spark.createDataFrame(ids)

    user_names, user_ids = dense("user_id", "uid")
    item_names, item_ids = dense("item_id", "iid")
    capped = params.fanout > 0
    hashed = _fanout_hashes(edges, params) if capped else edges
    numeric = (
        hashed.join(F.broadcast(user_ids), "user_id")
        .join(F.broadcast(item_ids), "item_id")
        .select(
            F.col("uid").cast("int"),
            F.col("iid").cast("int"),
            F.unix_micros("ts").alias("ts"),
            *(["h_item", "h_user"] if capped else []),
        )
        .toArrow()
    )
    uid, iid = numeric["uid"].to_numpy(), numeric["iid"].to_numpy()
    if capped:
        # Ids follow sorted string order, so (hash, uid) is the order (hash, user_id).
        user_keep = first_f(uid, numeric["h_user"].to_numpy(), iid, params.fanout)
        item_keep = first_f(iid, numeric["h_item"].to_numpy(), uid, params.fanout)
    else:
        user_keep = item_keep = np.ones(len(uid), dtype=bool)
    index = GraphIndex.from_edges(
        np.array(user_names.to_pylist(), dtype=object),
        np.array(item_names.to_pylist(), dtype=object),
        uid,
        iid,
        numeric["ts"].to_numpy(),
        user_keep,
        item_keep,
        audience,
    )
    return index, user_ids, item_ids


def chains_for_sample(
    g: GraphIndex,
    u0: int,
    p: int,
    t: int,
    t_ts: int,
    hist: list[int],
    params: ChainParams,
    item_mark: np.ndarray,
):
    """Chain candidates of one training sample, best first (at most top_k).

    The expansion runs compiled (``spark_jobs.kernels.sample_chains``);
    ``item_mark`` is a zeroed int64 array over items, reused across samples.
    """
    u1, i0, j, overlap, size, u1_i0, u1_t = sample_chains(
        g.seq_ptr, g.seq_item, g.out_ptr, g.out_item, g.out_ts, g.in_ptr, g.in_user, g.in_ts,
        u0, p, t, t_ts, np.asarray(hist, dtype=np.int64), params.min_overlap, item_mark,
    )  # fmt: skip
    if not len(u1):
        return []
    jaccard = overlap / (p + size - overlap)
    recency = (j + 1) / len(hist)
    score = jaccard + params.recency_weight * recency
    # ids follow sorted string order, so (u1, i0) ascending is the string tie-break.
    best = np.lexsort((i0, u1, -score))[: params.top_k]
    return [
        (float(score[k]), int(u1[k]), int(i0[k]), int(j[k]), int(overlap[k]),
         float(jaccard[k]), float(recency[k]), int(u1_i0[k]), int(u1_t[k]))
        for k in best.tolist()
    ]  # fmt: skip


_CHAIN_OUT = T.StructType(
    [
        T.StructField("sample_id", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("i1", T.StringType()),
        T.StructField("target_us", T.LongType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField("i0", T.StringType()),
        T.StructField("u0_i0_us", T.LongType()),
        T.StructField("u1", T.StringType()),
        T.StructField("u1_i0_us", T.LongType()),
        T.StructField("u1_i1_us", T.LongType()),
        T.StructField("overlap", T.IntegerType()),
        T.StructField("jaccard", T.DoubleType()),
        T.StructField("recency", T.DoubleType()),
        T.StructField("score", T.DoubleType()),
    ]
)


def build_chains(
    spark, edges: DataFrame, samples: DataFrame, ds: str, params: ChainParams
) -> DataFrame:
    index, user_ids, item_ids = build_index(spark, edges, params)
    # A dict of arrays, not the dataclass: broadcasts use plain pickle, which cannot
    # find classes defined in __main__ (python -m spark_jobs.chains).
    shared = spark.sparkContext.broadcast(vars(index))
    train = samples.filter(F.col("split") == "train")
    work = (
        train.join(F.broadcast(user_ids), "user_id")
        .join(
            F.broadcast(item_ids.withColumnRenamed("item_id", "target_item_id")), "target_item_id"
        )
        .select(
            "sample_id",
            "uid",
            "position",
            "iid",
            F.unix_micros("target_ts").alias("t_us"),
            "history",
        )
    )

    def expand(batches):
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(_CHAIN_OUT)
        g = GraphIndex(**shared.value)
        item_pos = {item: k for k, item in enumerate(g.items.tolist())}
        scratch = np.zeros(len(g.items), dtype=np.int64)
        names = _CHAIN_OUT.fieldNames()
        for batch in batches:
            out = {name: [] for name in names}
            for r in batch.to_pylist():
                hist = [item_pos[h] for h in r["history"]]
                found = chains_for_sample(
                    g, r["uid"], r["position"], r["iid"], r["t_us"], hist, params, scratch
                )
                for rank, (score, u1, i0, j, overlap, jac, rec, u1_i0, u1_i1) in enumerate(
                    found, 1
                ):
                    # i0 sits at history index j, i.e. at u0's position p - |H| + j.
                    u0_pos = g.seq_ptr[r["uid"]] + r["position"] - len(hist) + j
                    row = (
                        r["sample_id"],
                        g.users[r["uid"]],
                        g.items[r["iid"]],
                        r["t_us"],
                        rank,
                        g.items[i0],
                        int(g.seq_ts[u0_pos]),
                        g.users[u1],
                        u1_i0,
                        u1_i1,
                        overlap,
                        jac,
                        rec,
                        score,
                    )
                    for name, value in zip(names, row, strict=True):
                        out[name].append(value)
            yield pa.RecordBatch.from_pydict(out, schema=schema)

    # The sample's user, target and time come back with its chains, from the index and
    # the input row: joining the samples again would shuffle both sides.
    return work.mapInArrow(expand, _CHAIN_OUT).select(
        F.lit(ds).alias("ds"),
        "sample_id",
        F.concat_ws("/", "sample_id", F.col("rank").cast("string")).alias("chain_id"),
        "rank",
        "user_id",
        "i0",
        F.timestamp_micros("u0_i0_us").alias("u0_i0_ts"),
        "u1",
        F.timestamp_micros("u1_i0_us").alias("u1_i0_ts"),
        "i1",
        F.timestamp_micros("u1_i1_us").alias("u1_i1_ts"),
        F.timestamp_micros("target_us").alias("target_ts"),
        "overlap",
        "jaccard",
        "recency",
        "score",
    )


def _hop_not_an_earlier_edge(chains: DataFrame, edges: DataFrame, item: str, ts: str) -> DataFrame:
    """Chains whose u1 -> ``item`` hop is not an edge with that time, before the target."""
    hop = edges.select(
        F.col("user_id").alias("u1"), F.col("item_id").alias(item), F.col("ts").alias("e_ts")
    )
    return chains.join(hop, ["u1", item], "left").filter(
        F.col("e_ts").isNull() | (F.col("e_ts") != F.col(ts)) | (F.col(ts) >= F.col("target_ts"))
    )


def chain_checks(chains: DataFrame, edges: DataFrame, min_overlap: int = 2) -> dict[str, DataFrame]:
    # Every hop must be an edge of the graph and precede the target interaction.
    hop_u1_i0 = _hop_not_an_earlier_edge(chains, edges, "i0", "u1_i0_ts")
    hop_u1_i1 = _hop_not_an_earlier_edge(chains, edges, "i1", "u1_i1_ts")
    return {
        "chains_key_not_null": chains.filter(F.col("chain_id").isNull() | F.col("u1").isNull()),
        "chains_u1_differs_from_u0": chains.filter(F.col("u1") == F.col("user_id")),
        # The closure the job was run with (--min-overlap), not the default's.
        "chains_closure": chains.filter(F.col("overlap") < min_overlap),
        "chains_u0_i0_before_target": chains.filter(
            F.col("u0_i0_ts").isNull() | (F.col("u0_i0_ts") > F.col("target_ts"))
        ),
        "chains_u1_i0_edge_before_target": hop_u1_i0,
        "chains_u1_i1_edge_before_target": hop_u1_i1,
    }


def run(spark, lakehouse: Lakehouse, ds: str, params: ChainParams | None = None) -> dict:
    ds = parse_ds(ds)
    from pyspark import StorageLevel

    params = params or ChainParams()
    edges = read_edges(spark, lakehouse, ds).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        samples = lakehouse.read_spark(spark, SAMPLES, partitions=[("ds", "=", ds)])
        chains = build_chains(spark, edges, samples, ds, params).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        results = quality.run_checks(chain_checks(chains, edges, params.min_overlap))
        quality.enforce(JOB, ds, results)
        version = lakehouse.overwrite(CHAINS, chains, partition={"ds": ds})
        n_train = samples.filter(F.col("split") == "train").count()
        covered = chains.select("sample_id").distinct().count()
        n_chains = chains.count()
        chains.unpersist()
    finally:
        edges.unpersist()
    coverage = covered / n_train if n_train else 0.0
    extra = {
        "chain_coverage": coverage,
        "chains": n_chains,
        "train_samples": n_train,
        "covered_samples": covered,
    }
    record_metrics(lakehouse, JOB, ds, extra, results)
    return {"ds": ds, "chains_version": version, **extra}


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m spark_jobs.chains", __doc__.splitlines()[0])
    d = ChainParams()
    p.add_argument("--top-k", type=int, default=d.top_k, help="chains kept per sample (K)")
    p.add_argument(
        "--fanout", type=int, default=d.fanout, help="F users per item / items per user; 0 = no cap"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--recency-weight", type=float, default=d.recency_weight)
    args = p.parse_args(argv)

    def body():
        from spark_jobs.session import get_spark

        params = ChainParams(args.top_k, args.fanout, args.seed, args.recency_weight)
        return run(get_spark(), Lakehouse(args.lakehouse), args.ds, params)

    return run_main(body, job="chains", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
