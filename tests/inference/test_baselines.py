"""Classical baselines on tiny hand-made data: exact scores and orderings."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from inference.baselines import (
    ALS,
    ALSConfig,
    ItemKNN,
    Popularity,
    SASRec,
    make_baseline,
    sequences,
    training_edges,
)
from inference.ranking import EvalSample

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def edges(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(user, item, day) triples as an edge frame."""
    return pd.DataFrame(
        [(u, i, T0 + timedelta(days=d)) for u, i, d in rows], columns=["user_id", "item_id", "ts"]
    )


def sample(candidates: list[str], history=("h",), target: str | None = None, user="x"):
    return EvalSample(
        sample_id=f"{user}:9",
        split="test",
        seed=0,
        user_id=user,
        history=tuple(history),
        candidates=tuple(candidates),
        labels=tuple(f"C{k + 1}" for k in range(len(candidates))),
        target_item_id=target or candidates[0],
    )


def test_training_edges_drop_exactly_each_users_last_two_by_ts_then_item():
    df = edges(
        [
            ("u1", "c", 3),
            ("u1", "a", 1),
            ("u1", "b", 2),
            ("u1", "e", 4),
            ("u1", "d", 4),  # same second as e: (ts, item) puts d before e
            ("u2", "x", 1),
            ("u2", "y", 2),  # two edges: both are targets, nothing left to train on
            ("u3", "p", 5),
            ("u3", "q", 5),
            ("u3", "r", 5),  # all tied: item order decides, p stays
        ]
    )
    kept = training_edges(df)
    assert list(zip(kept["user_id"], kept["item_id"], strict=True)) == [
        ("u1", "a"),
        ("u1", "b"),
        ("u1", "c"),
        ("u3", "p"),
    ]
    assert sequences(df)["u1"] == ["a", "b", "c", "d", "e"]


def test_popularity_ranks_by_count_then_item_id():
    df = edges([("u1", "b", 1), ("u2", "b", 1), ("u1", "c", 2), ("u2", "a", 2), ("u3", "d", 1)])
    pop = Popularity().fit(df, items=["z"])
    (r,) = pop.rank([sample(["z", "d", "c", "b", "a"])])
    # b twice; a, c, d once each (tie: by id); z never
    assert r.items == ["b", "a", "c", "d", "z"]
    assert r.scores == [2.0, 1.0, 1.0, 1.0, 0.0]
    assert r.answer_valid and (r.sample_id, r.seed) == ("x:9", 0)
    assert pop.full_rank("x", (), exclude={"b", "c"}, k=3) == ["a", "d", "z"]


TOY = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "a", 1), ("u2", "b", 2)]
TOY += [("u3", "b", 1), ("u3", "d", 2)]


def test_itemknn_exact_cosine_sums_on_a_three_user_toy():
    # users: a {u1,u2}, b {u1,u2,u3}, c {u1}, d {u3}
    knn = ItemKNN().fit(edges(TOY), items=["e"])
    (r,) = knn.rank([sample(["d", "c", "b", "e"], history=["a"])])
    assert r.items == ["b", "c", "d", "e"]  # d and e tie at 0: by id
    assert r.scores == pytest.approx([2 / math.sqrt(6), 1 / math.sqrt(2), 0.0, 0.0], rel=1e-12)
    (r,) = knn.rank([sample(["d", "c", "e"], history=["a", "b"])])
    assert r.items == ["c", "d", "e"]
    assert r.scores == pytest.approx(
        [1 / math.sqrt(2) + 1 / math.sqrt(3), 1 / math.sqrt(3), 0.0], rel=1e-12
    )
    # full ranking leaves out the excluded (seen) items; self-similarity counts for nothing
    assert knn.full_rank("x", ("a", "b"), exclude={"a", "b"}, k=10) == ["c", "d", "e"]
    assert knn.full_rank("x", ("a",), exclude={"a"}, k=1) == ["b"]


def test_itemknn_scores_batches_independently():
    knn = ItemKNN().fit(edges(TOY))
    knn.batch_size = 2
    one = [knn.rank([sample(["c", "d"], history=h)])[0].scores for h in (["a"], ["b"], ["d"])]
    many = knn.rank([sample(["c", "d"], history=h) for h in (["a"], ["b"], ["d"])])
    assert [r.scores for r in many] == one
    assert one[1] == pytest.approx([1 / math.sqrt(3)] * 2, rel=1e-12)  # c, d tie: by id
    assert [r.items for r in many] == [["c", "d"], ["c", "d"], ["c", "d"]]


def cycle_edges(users: int = 40, items: int = 20, length: int = 15) -> pd.DataFrame:
    """Every user walks the same cycle i00 -> i01 -> ... from their own start."""
    return edges(
        [
            (f"u{u:02d}", f"i{(u * 7 + t) % items:02d}", t)
            for u in range(users)
            for t in range(length)
        ]
    )


def test_sasrec_learns_a_deterministic_sequence_pattern():
    names = [f"i{k:02d}" for k in range(20)]
    model = SASRec(epochs=20, batch_size=16, seed=0, threads=1).fit(cycle_edges())
    assert model.losses[-1] < model.losses[0] / 2
    hits = 0
    for start in range(20):
        history = tuple(names[(start + j) % 20] for j in range(5))
        nxt, other = names[(start + 5) % 20], names[(start + 9) % 20]
        (r,) = model.rank([sample([other, nxt], history=history, target=nxt)])
        hits += r.items[0] == nxt
        hits += model.full_rank("x", history, exclude=history, k=1) == [nxt]
    assert hits >= 34  # of 40: the true next item first, against one and against all


def test_sasrec_is_deterministic_for_a_seed_and_unknown_items_rank_last():
    df = cycle_edges(users=10, length=8)
    a = SASRec(epochs=2, batch_size=8, seed=3, threads=1).fit(df, items=["zz"])
    b = SASRec(epochs=2, batch_size=8, seed=3, threads=1).fit(df, items=["zz"])
    s = sample(["zz", "i05", "i06", "i07"], history=["i03", "i04"])
    ra, rb = a.rank([s])[0], b.rank([s])[0]
    assert ra.items == rb.items and ra.scores == rb.scores
    assert a.losses == b.losses
    assert ra.items[-1] == "zz" and ra.scores[-1] == -math.inf


def test_make_baseline_refuses_als_without_spark_and_unknown_names():
    with pytest.raises(ValueError, match="SparkSession"):
        make_baseline("als")
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("bpr")
    assert make_baseline("sasrec", sasrec={"epochs": 1}).cfg.epochs == 1


def test_als_ranks_the_in_block_item_above_out_of_block_items(spark):
    # two taste blocks: u0-u5 watch a-e, u6-u11 watch f-j; each user misses one item
    block_a, block_b = list("abcde"), list("fghij")
    rows = []
    for u in range(12):
        block = block_a if u < 6 else block_b
        rows += [(f"u{u:02d}", item, d) for d, item in enumerate(block) if d != u % 5]
    model = ALS(spark, ALSConfig(rank=4, max_iter=10, reg_param=0.01, seed=0))
    model.fit(edges(rows), items=["new"])
    # u00 misses a; u06 misses g (6 % 5 = 1)
    (r0,) = model.rank([sample(["f", "new", "a", "j"], user="u00")])
    (r6,) = model.rank([sample(["b", "g", "new", "c"], user="u06")])
    assert r0.items[0] == "a" and r0.items[-1] == "new" and r0.scores[-1] == -math.inf
    assert r6.items[0] == "g" and r6.items[-1] == "new"
    assert model.full_rank("u00", (), exclude=list("bcde"), k=1) == ["a"]
    # a user without training edges has no preference: known items tie, by id
    (cold,) = model.rank([sample(["j", "new", "b"], user="nobody")])
    assert cold.items == ["b", "j", "new"] and cold.scores[:2] == [0.0, 0.0]
