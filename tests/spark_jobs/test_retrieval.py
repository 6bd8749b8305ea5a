"""Serve-mode retrieval on a hand-built graph: chain items first, popular unseen to fill."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from r2rec.contracts import GRAPH_EDGES, JOB_METRICS, QUARANTINE, SERVE_CANDIDATES
from r2rec.errors import R2RecError
from spark_jobs import retrieval
from spark_jobs.retrieval import RetrievalParams

DS = "2026-03-01"
EDGES = [
    ("u0", "a", 1), ("u0", "b", 2), ("u0", "c", 3),
    ("u1", "a", 4), ("u1", "d", 5), ("u1", "e", 6),
    ("u2", "b", 7), ("u2", "d", 8),
    ("u3", "z", 9),
]  # fmt: skip
PARAMS = RetrievalParams(n=3, history_len=2, fanout=100, popular_pool=10)


def write_edges(lakehouse, ds=DS, edges=EDGES):
    rows = [
        {
            "ds": ds,
            "user_id": u,
            "item_id": i,
            "rating": 4.0,
            "ts": datetime(2026, 2, day, tzinfo=UTC),
            "weight": 4.0,
        }
        for u, i, day in edges
    ]
    lakehouse.overwrite(GRAPH_EDGES, rows, partition={"ds": ds})


def serve(lakehouse):
    rows = lakehouse.read_arrow(SERVE_CANDIDATES, partitions=[("ds", "=", DS)]).to_pylist()
    return {r["user_id"]: r for r in rows}


def test_chain_items_first_then_popular_unseen(spark, lakehouse):
    write_edges(lakehouse)
    report = retrieval.run(spark, lakehouse, DS, PARAMS)
    got = serve(lakehouse)
    assert sorted(got) == ["u0", "u1", "u2", "u3"]
    u0 = got["u0"]
    assert u0["history"] == ["b", "c"]  # last L=2, oldest first
    # b -> u2 -> d is the only chain path; e and z (popularity 1/15, tie by id) fill up
    assert dict(zip(u0["items"], u0["sources"], strict=True)) == {
        "d": "chain",
        "e": "popular",
        "z": "popular",
    }
    assert dict(zip(u0["items"], u0["retrieval_scores"], strict=True))["d"] == 1.0
    assert u0["labels"] == ["C1", "C2", "C3"]
    # u3's item z has no other user: popular only, the three most popular
    assert sorted(got["u3"]["items"]) == ["a", "b", "d"]
    assert set(got["u3"]["sources"]) == {"popular"}
    seen = {(u, i) for u, i, _ in EDGES}
    assert not any((u, i) in seen for u, r in got.items() for i in r["items"])
    assert report["users"] == 4.0 and report["quarantined"] == 0.0
    metrics = {
        r["metric"]: r["value"]
        for r in lakehouse.read_arrow(
            JOB_METRICS, partitions=[("job", "=", "retrieval")]
        ).to_pylist()
    }
    assert metrics["dq.retrieval_item_unseen"] == 0.0

    # a rerun gives the same table (seeded order), replacing only D
    first = serve(lakehouse)
    retrieval.run(spark, lakehouse, DS, PARAMS)
    assert serve(lakehouse) == first


def test_a_user_who_has_seen_everything_is_quarantined(spark, lakehouse):
    edges = [("u0", "a", 1), ("u0", "b", 2), ("u0", "c", 3), ("u1", "a", 4), ("u2", "c", 5)]
    write_edges(lakehouse, edges=edges)
    retrieval.run(spark, lakehouse, DS, PARAMS)
    assert sorted(serve(lakehouse)) == ["u1", "u2"]  # u0 has no unseen item left
    quarantined = lakehouse.read_arrow(QUARANTINE, partitions=[("job", "=", "retrieval")])
    assert quarantined.column("reason").to_pylist() == ["no_unseen_candidates"]
    assert quarantined.column("raw_record").to_pylist() == ['{"user_id":"u0"}']


def test_fanout_caps_the_expansion(spark, lakehouse):
    write_edges(lakehouse)
    # with one user per item, b's audience may be u0 itself: never more than one path
    retrieval.run(spark, lakehouse, DS, RetrievalParams(n=3, history_len=2, fanout=1))
    u0 = serve(lakehouse)["u0"]
    chain_scores = [
        s for s, src in zip(u0["retrieval_scores"], u0["sources"], strict=True) if src == "chain"
    ]
    assert all(s <= 1.0 for s in chain_scores)


def test_bad_parameters_are_clear_errors():
    with pytest.raises(R2RecError, match="popular-pool"):
        RetrievalParams(popular_pool=0)
    with pytest.raises(R2RecError, match="active-days"):
        RetrievalParams(active_days=-1)
