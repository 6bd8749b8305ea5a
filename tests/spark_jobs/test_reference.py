"""The plain-Python oracle (spark_jobs/reference.py) against hand-worked tiny graphs.

Every expected value below was derived by hand from docs/METHOD.md §10; the comments
show the working. No Spark.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pytest

from spark_jobs.params import CandidateParams, ChainParams, SampleParams
from spark_jobs.reference import (
    build_candidates,
    build_chains,
    build_edges,
    build_samples,
    run_reference,
)

D = "2024-02-01"


def day(k: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, k, hour, tzinfo=UTC)


def ix(user, item, ts, rating=None, ds="2024-01-01", source="src") -> dict:
    return {
        "user_id": user,
        "item_id": item,
        "rating": rating,
        "ts": ts,
        "ds": ds,
        "source": source,
    }


def graph(spec: dict[str, list[tuple[str, int]]]) -> list[dict]:
    """Interactions from {user: [(item, day), ...]}, all ingested before D."""
    return [ix(u, i, day(d)) for u, items in spec.items() for i, d in items]


def h64(*parts) -> int:
    """blake2b-64 of 'a|b|c', written out independently of spark_jobs.sampling."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def seeded_order(seed, owner, members) -> list[str]:
    return sorted(members, key=lambda m: (h64(seed, owner, m), m))


# --- edges -------------------------------------------------------------------------------
def test_edges_first_interaction_as_of_d():
    d = "2024-01-05"
    rows = [
        ix("u1", "a", day(1, 10), 4.0, ds="2024-01-01"),
        ix("u1", "a", day(2), 2.0, ds="2024-01-02"),  # later duplicate: ignored
        ix("u1", "b", day(3), 5.0, ds="2024-01-03"),
        ix("u1", "b", day(2), 1.0, ds="2024-01-04"),  # ingested later but earlier ts: first
        ix("u1", "c", day(5), 5.0, ds="2024-01-04"),  # ts == midnight of D: excluded
        ix("u2", "a", day(1), 3.0, ds="2024-01-06"),  # ingested after D: excluded
        ix("u2", "b", day(2, 7), 2.0, source="s1"),
        ix("u2", "b", day(2, 7), None, source="s2"),
        ix("u2", "b", day(2, 7), 4.0, source="s3"),  # exact tie: highest rating wins
        ix("u2", "c", datetime(2024, 1, 4, 23, 59, 59, tzinfo=UTC), 3.0),
        ix("u3", "d", day(1), None),  # implicit: weight 1.0
    ]
    got = build_edges(rows, d)
    assert got == [
        {"ds": d, "user_id": "u1", "item_id": "a", "rating": 4.0, "ts": day(1, 10), "weight": 4.0},
        {"ds": d, "user_id": "u1", "item_id": "b", "rating": 1.0, "ts": day(2), "weight": 1.0},
        {"ds": d, "user_id": "u2", "item_id": "b", "rating": 4.0, "ts": day(2, 7), "weight": 4.0},
        {
            "ds": d,
            "user_id": "u2",
            "item_id": "c",
            "rating": 3.0,
            "ts": datetime(2024, 1, 4, 23, 59, 59, tzinfo=UTC),
            "weight": 3.0,
        },
        {"ds": d, "user_id": "u3", "item_id": "d", "rating": None, "ts": day(1), "weight": 1.0},
    ]
    # the same rows as of the next day also see u1's c and u2's a
    later = {(e["user_id"], e["item_id"]) for e in build_edges(rows, "2024-01-06")}
    assert ("u1", "c") in later and ("u2", "a") in later and len(later) == 7


def test_edges_tie_with_only_null_ratings_stays_null():
    rows = [ix("u", "i", day(1), None, source="x"), ix("u", "i", day(1), None, source="y")]
    assert [(e["rating"], e["weight"]) for e in build_edges(rows, D)] == [(None, 1.0)]


# --- samples -----------------------------------------------------------------------------
def _sample_graph() -> list[dict]:
    rows = [
        ix("s", "e", day(1)),
        ix("s", "c", day(2)),
        ix("s", "b", day(3)),  # same second as a: a comes first (item id)
        ix("s", "a", day(3)),
        ix("s", "d", day(4)),
        ix("one", "x", day(1)),
        ix("two", "x", day(1)),
        ix("two", "y", day(2)),
    ]
    return build_edges(rows, D)


def test_samples_split_window_and_max_train():
    got = build_samples(_sample_graph(), D, SampleParams(history_len=2, min_history=1, max_train=1))
    # s's sequence: e(0) c(1) a(2) b(3) d(4); train positions 1, 2 -> keep only 2
    assert got == [
        {
            "ds": D, "split": "train", "sample_id": "s:2", "user_id": "s", "position": 2,
            "history": ["e", "c"], "target_item_id": "a", "target_ts": day(3),
        },
        {
            "ds": D, "split": "valid", "sample_id": "s:3", "user_id": "s", "position": 3,
            "history": ["c", "a"], "target_item_id": "b", "target_ts": day(3),
        },
        {
            "ds": D, "split": "test", "sample_id": "s:4", "user_id": "s", "position": 4,
            "history": ["a", "b"], "target_item_id": "d", "target_ts": day(4),
        },
        {
            "ds": D, "split": "test", "sample_id": "two:1", "user_id": "two", "position": 1,
            "history": ["x"], "target_item_id": "y", "target_ts": day(2),
        },
    ]  # fmt: skip


def test_samples_min_history_and_all_train():
    got = build_samples(
        _sample_graph(), D, SampleParams(history_len=10, min_history=2, max_train=0)
    )
    assert [(s["sample_id"], s["split"], s["history"]) for s in got] == [
        ("s:2", "train", ["e", "c"]),
        ("s:3", "valid", ["e", "c", "a"]),
        ("s:4", "test", ["e", "c", "a", "b"]),
    ]
    got = build_samples(
        _sample_graph(), D, SampleParams(history_len=10, min_history=1, max_train=0)
    )
    assert [(s["sample_id"], s["split"]) for s in got if s["user_id"] == "s"] == [
        ("s:1", "train"),
        ("s:2", "train"),
        ("s:3", "valid"),
        ("s:4", "test"),
    ]


# --- candidates --------------------------------------------------------------------------
def _expected_uniform(seed, user, sample_id, ds, vocab, positives, target, n) -> list[str]:
    """The §10 recipe written out again: rounds of 4(n-1) uniform draws, then a permutation."""
    rng = np.random.default_rng(h64(seed, user, sample_id, ds))
    chosen: list[str] = []
    while len(chosen) < n - 1:
        for k in rng.integers(0, len(vocab), 4 * (n - 1)):
            item = vocab[int(k)]
            if item not in positives and item not in chosen and len(chosen) < n - 1:
                chosen.append(item)
    items = [target, *chosen]
    return [items[int(k)] for k in rng.permutation(len(items))]


def test_candidates_uniform():
    spec = {"alice": [(f"m{k:02d}", k + 1) for k in range(5)], "bob": [("m00", 1)]}
    spec["bob"] += [(f"m{k:02d}", 1) for k in range(5, 30)]
    edges = build_edges(graph(spec), D)
    samples = [s for s in build_samples(edges, D, SampleParams()) if s["user_id"] == "alice"]
    params = CandidateParams(n=5, seeds=(3, 4, 5))
    rows, quarantine = build_candidates(edges, samples, D, params)
    assert quarantine == []
    # alice: train 1, 2 (first seed only), valid 3 and test 4 (every seed)
    assert [(r["sample_id"], r["seed"], r["split"]) for r in rows] == [
        ("alice:1", 3, "train"),
        ("alice:2", 3, "train"),
        ("alice:3", 3, "valid"),
        ("alice:3", 4, "valid"),
        ("alice:3", 5, "valid"),
        ("alice:4", 3, "test"),
        ("alice:4", 4, "test"),
        ("alice:4", 5, "test"),
    ]
    vocab = [f"m{k:02d}" for k in range(30)]
    alice_items = {f"m{k:02d}" for k in range(5)}
    for r in rows:
        target = r["target_item_id"]
        assert r["ds"] == D and r["user_id"] == "alice" and r["sampler"] == "uniform"
        assert len(r["items"]) == 5 and len(set(r["items"])) == 5
        assert r["items"].count(target) == 1
        assert not (set(r["items"]) - {target}) & alice_items  # whole sequence excluded
        assert r["labels"] == ["C1", "C2", "C3", "C4", "C5"]
        assert r["target_label"] == f"C{r['items'].index(target) + 1}"
        expected = _expected_uniform(
            r["seed"], "alice", r["sample_id"], D, vocab, alice_items, target, 5
        )
        assert r["items"] == expected
    assert rows == build_candidates(edges, samples, D, params)[0]  # deterministic
    test_rows = [r["items"] for r in rows if r["sample_id"] == "alice:4"]
    assert len({tuple(items) for items in test_rows}) == 3  # seeds differ


def test_candidates_quarantine_and_exhaustive_draw():
    spec = {
        "carol": [("a", 1), ("b", 2), ("c", 3)],  # 3 unseen of 6 < 4: quarantined
        "dave": [("a", 1), ("b", 2)],  # exactly 4 unseen: c d e f
        "erin": [("c", 1), ("d", 2), ("e", 3), ("f", 4)],  # 2 unseen: quarantined
    }
    edges = build_edges(graph(spec), D)
    samples = build_samples(edges, D, SampleParams())
    rows, quarantine = build_candidates(edges, samples, D, CandidateParams(n=5, seeds=(7, 8)))
    assert [(r["sample_id"], r["seed"], sorted(r["items"])) for r in rows] == [
        ("dave:1", 7, ["b", "c", "d", "e", "f"]),
        ("dave:1", 8, ["b", "c", "d", "e", "f"]),
    ]
    reason = "not_enough_negatives"
    assert quarantine == [
        {"sample_id": "carol:1", "seed": 7, "reason": reason},
        {"sample_id": "carol:1", "seed": 8, "reason": reason},
        {"sample_id": "carol:2", "seed": 7, "reason": reason},
        {"sample_id": "carol:2", "seed": 8, "reason": reason},
        {"sample_id": "erin:1", "seed": 7, "reason": reason},  # train: first seed only
        {"sample_id": "erin:2", "seed": 7, "reason": reason},
        {"sample_id": "erin:2", "seed": 8, "reason": reason},
        {"sample_id": "erin:3", "seed": 7, "reason": reason},
        {"sample_id": "erin:3", "seed": 8, "reason": reason},
    ]


def test_candidates_popularity_prefers_the_popular_item():
    spec = {"pat": [("a", 1), ("b", 2)], "z": [("rare", 1)]}
    spec |= {f"v{k:02d}": [("pop", 1)] for k in range(30)}
    edges = build_edges(graph(spec), D)
    samples = build_samples(edges, D, SampleParams())
    assert [s["sample_id"] for s in samples] == ["pat:1"]
    seeds = tuple(range(10))
    # degrees: a 1, b 1, pop 30, rare 1; alpha 10 -> P(rare) per draw ~ 1e-15
    pop_params = CandidateParams(n=2, seeds=seeds, sampler="popularity", alpha=10.0)
    rows, _ = build_candidates(edges, samples, D, pop_params)
    assert len(rows) == 10
    assert all(sorted(r["items"]) == ["b", "pop"] and r["sampler"] == "popularity" for r in rows)
    # uniform draws pick 'rare' half the time: over 10 seeds it shows up
    rows, _ = build_candidates(edges, samples, D, CandidateParams(n=2, seeds=seeds))
    assert {r["items"][0] for r in rows} | {r["items"][1] for r in rows} >= {"b", "pop", "rare"}


# --- chains ------------------------------------------------------------------------------
# u0 sequence: i1(d1) i2(d2) i3(d3) i4(d4) t(d10) x(d11) y(d12); sample u0:4 has target t at
# d10, H = A = {i1, i2, i3, i4}.
CHAIN_GRAPH = {
    "u0": [("i1", 1), ("i2", 2), ("i3", 3), ("i4", 4), ("t", 10), ("x", 11), ("y", 12)],
    # B = {i3, i4, t, w} (i2 at d20 is after the target); overlap 2; |A u B| = 6
    "ua": [("i3", 2), ("i4", 3), ("t", 5), ("w", 6), ("i2", 20)],
    # B = {i1, i2, i3, t}; overlap 3; |A u B| = 5
    "ub": [("i1", 1), ("i2", 1), ("i3", 1), ("t", 8)],
    # chose t after u0 did: not in U1
    "uc": [("i1", 1), ("i2", 2), ("i3", 3), ("t", 15)],
    # shares one item only: closure fails
    "ud": [("i1", 1), ("t", 5)],
}


def _chains_for(spec, sample_id, sample_params=SampleParams(), **chain_kw):
    edges = build_edges(graph(spec), D)
    samples = [s for s in build_samples(edges, D, sample_params) if s["sample_id"] == sample_id]
    chains = build_chains(edges, samples, D, ChainParams(**chain_kw))
    return [
        (c["rank"], c["i0"], c["u1"], c["overlap"], c["jaccard"], c["recency"], c["score"])
        for c in chains
    ]


def _approx(rows):
    return [(*r[:4], pytest.approx(r[4]), pytest.approx(r[5]), pytest.approx(r[6])) for r in rows]


ALL_U0_4 = [
    (1, "i3", "ub", 3, 0.6, 0.75, 0.675),
    (2, "i2", "ub", 3, 0.6, 0.5, 0.65),
    (3, "i1", "ub", 3, 0.6, 0.25, 0.625),
    (4, "i4", "ua", 2, 1 / 3, 1.0, 1 / 3 + 0.1),
    (5, "i3", "ua", 2, 1 / 3, 0.75, 1 / 3 + 0.075),
]


def test_chains_exact_scores_and_top_k():
    assert _chains_for(CHAIN_GRAPH, "u0:4", top_k=10) == _approx(ALL_U0_4)
    assert _chains_for(CHAIN_GRAPH, "u0:4") == _approx(ALL_U0_4[:3])  # K = 3
    w = _chains_for(CHAIN_GRAPH, "u0:4", top_k=10, recency_weight=0.0)
    assert [(r[1], r[2]) for r in w][:3] == [("i1", "ub"), ("i2", "ub"), ("i3", "ub")]  # i0 asc


def test_chain_row_columns():
    edges = build_edges(graph(CHAIN_GRAPH), D)
    samples = [s for s in build_samples(edges, D, SampleParams()) if s["sample_id"] == "u0:4"]
    first = build_chains(edges, samples, D, ChainParams())[0]
    assert first == {
        "ds": D, "sample_id": "u0:4", "chain_id": "u0:4/1", "rank": 1, "user_id": "u0",
        "i0": "i3", "u0_i0_ts": day(3), "u1": "ub", "u1_i0_ts": day(1), "i1": "t",
        "u1_i1_ts": day(8), "target_ts": day(10), "overlap": 3,
        "jaccard": pytest.approx(0.6), "recency": 0.75, "score": pytest.approx(0.675),
    }  # fmt: skip


def test_chains_need_u1_before_target_and_closure():
    # uc chose t after u0, ud shares one item, u0 itself never qualifies
    users = {r[2] for r in _chains_for(CHAIN_GRAPH, "u0:4", top_k=10)}
    assert users == {"ua", "ub"}
    # counterfactual: uc chooses t at d9 instead -> ties ub exactly, u1 asc breaks the tie
    moved = {**CHAIN_GRAPH, "uc": [("i1", 1), ("i2", 2), ("i3", 3), ("t", 9)]}
    got = _chains_for(moved, "u0:4", top_k=4)
    assert [(r[1], r[2]) for r in got] == [("i3", "ub"), ("i3", "uc"), ("i2", "ub"), ("i2", "uc")]
    # without recency every ub/uc chain scores 0.6: ties sort by u1 first, then i0
    got = _chains_for(moved, "u0:4", top_k=4, recency_weight=0.0)
    assert [(r[1], r[2]) for r in got] == [("i1", "ub"), ("i2", "ub"), ("i3", "ub"), ("i1", "uc")]
    # counterfactual: ud also has i2 -> overlap 2, |A u B| = |{i1..i4, t}| = 5, jaccard 0.4
    closed = {**CHAIN_GRAPH, "ud": [("i1", 1), ("i2", 2), ("t", 5)]}
    got = [r for r in _chains_for(closed, "u0:4", top_k=10) if r[2] == "ud"]
    # ranks: ub .675 .65 .625, ud-i2 .45, ua-i4 .433, ud-i1 .425, ua-i3 .408
    assert got == _approx(
        [(4, "i2", "ud", 2, 0.4, 0.5, 0.45), (6, "i1", "ud", 2, 0.4, 0.25, 0.425)]
    )


def test_chains_i0_must_be_in_history_window():
    # L = 2: H = [i3, i4]; A is still every earlier item, so ub's overlap stays 3
    got = _chains_for(CHAIN_GRAPH, "u0:4", SampleParams(history_len=2), top_k=10)
    assert got == _approx(
        [
            (1, "i3", "ub", 3, 0.6, 0.5, 0.65),
            (2, "i4", "ua", 2, 1 / 3, 1.0, 1 / 3 + 0.1),
            (3, "i3", "ua", 2, 1 / 3, 0.5, 1 / 3 + 0.05),
        ]
    )


def test_chains_fanout():
    users_of_t = ["u0", "ua", "ub", "uc", "ud"]
    # seed 18: t's first user is ub, ub's first item is i3 -> B = {i3}, overlap 1, |A u B| = 4
    assert seeded_order(18, "t", users_of_t)[0] == "ub"
    assert seeded_order(18, "ub", ["i1", "i2", "i3", "t"])[0] == "i3"
    got = _chains_for(CHAIN_GRAPH, "u0:4", fanout=1, seed=18, min_overlap=1, top_k=10)
    assert got == _approx([(1, "i3", "ub", 1, 0.25, 0.75, 0.325)])
    # seed 1: t's first user is uc, who is not eligible -> the cap leaves nobody
    assert seeded_order(1, "t", users_of_t)[0] == "uc"
    assert _chains_for(CHAIN_GRAPH, "u0:4", fanout=1, seed=1, min_overlap=1) == []
    # seed 0, F = 2: users [ua, ub]; ua's items [i2, i4] (i2 is after the target) -> B = {i4};
    # ub's items [i2, i1] -> B = {i1, i2}; |A u B| = 4 for both
    assert seeded_order(0, "t", users_of_t)[:2] == ["ua", "ub"]
    assert seeded_order(0, "ua", ["i2", "i3", "i4", "t", "w"])[:2] == ["i2", "i4"]
    assert seeded_order(0, "ub", ["i1", "i2", "i3", "t"])[:2] == ["i2", "i1"]
    got = _chains_for(CHAIN_GRAPH, "u0:4", fanout=2, seed=0, min_overlap=1, top_k=10)
    assert got == _approx(
        [
            (1, "i2", "ub", 2, 0.5, 0.5, 0.55),
            (2, "i1", "ub", 2, 0.5, 0.25, 0.525),
            (3, "i4", "ua", 1, 0.25, 1.0, 0.35),
        ]
    )


def test_run_reference_chains_and_coverage():
    params = CandidateParams(n=2, seeds=(0, 1))
    res = run_reference(
        graph(CHAIN_GRAPH), D, candidate_params=params, chain_params=ChainParams(top_k=10)
    )
    assert len(res.edges) == 7 + 5 + 4 + 4 + 2
    train = [s["sample_id"] for s in res.samples if s["split"] == "train"]
    assert train == ["u0:1", "u0:2", "u0:3", "u0:4", "ua:1", "ua:2", "ub:1", "uc:1"]
    # u0:2 (target i3 at d3): only ub is before, B = {i1, i2, i3}, A = {i1, i2}: jaccard 2/3
    assert [(c["chain_id"], c["i0"], c["u1"]) for c in res.chains if c["sample_id"] == "u0:2"] == [
        ("u0:2/1", "i2", "ub"),
        ("u0:2/2", "i1", "ub"),
    ]
    assert [c["score"] for c in res.chains[:2]] == pytest.approx([2 / 3 + 0.1, 2 / 3 + 0.05])
    assert [c["sample_id"] for c in res.chains] == ["u0:2"] * 2 + ["u0:4"] * 5
    assert res.coverage == 2 / 8
    # 8 train x 1 seed + (4 valid + 5 test) x 2 seeds; 8 items, u0 has 7: one unseen is enough
    assert len(res.candidates) == 8 + 9 * 2 and res.quarantine == []


def test_coverage_without_train_samples_is_zero():
    res = run_reference(
        graph({"a": [("x", 1), ("y", 2)]}), D, candidate_params=CandidateParams(n=2)
    )
    assert [s["split"] for s in res.samples] == ["test"]
    assert res.chains == [] and res.coverage == 0.0
