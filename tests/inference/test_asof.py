"""Popularity and ItemKNN as of each sample's target time: exact scores on hand-made edges."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from inference.asof import AudienceIndex, ItemKNNAsOf, PopularityAsOf
from inference.baselines import ItemKNN, Popularity
from r2rec.errors import R2RecError
from tests.inference.test_baselines import T0, edges, sample


def at(day: int):
    return T0 + timedelta(days=day)


def asof_sample(candidates, day, history=("h",)):
    s = sample(candidates, history)
    return type(s)(**{**s.__dict__, "target_ts": at(day)})


def test_popularity_counts_only_edges_strictly_before_the_target():
    df = edges([("u1", "a", 1), ("u2", "a", 5), ("u3", "a", 6),  # one before day 5
                ("u1", "b", 1), ("u2", "b", 2)])  # fmt: skip
    (r,) = PopularityAsOf(AudienceIndex(df)).rank([asof_sample(["a", "b", "z"], 5)])
    # the edge tied with the target (day 5) and the later one do not count
    assert (r.items, r.scores) == (["b", "a", "z"], [2.0, 1.0, 0.0])
    # the leave-one-out baseline counts all three, so it ranks a first
    (loo,) = Popularity().fit(df).rank([sample(["a", "b", "z"])])
    assert loo.items[0] == "a"


def test_a_users_second_edge_to_an_item_joins_its_audience_once_at_the_first():
    df = edges([("u1", "a", 1), ("u1", "a", 8), ("u2", "b", 1), ("u3", "b", 3)])
    (r,) = PopularityAsOf(AudienceIndex(df)).rank([asof_sample(["a", "b"], 9)])
    assert r.scores == [2.0, 1.0] and r.items == ["b", "a"]


def test_itemknn_asof_is_the_cosine_sum_over_audiences_before_the_target():
    df = edges([
        ("u1", "h", 1), ("u1", "c", 2),
        ("u2", "h", 1), ("u2", "d", 2),
        ("u3", "h", 1), ("u3", "d", 3),
        ("u4", "c", 9), ("u4", "h", 9),  # after the target: U_h and U_c as of day 5 ignore u4
        ("x", "h", 4),  # the sample's user took h before the target
    ])  # fmt: skip
    (r,) = ItemKNNAsOf(AudienceIndex(df)).rank([asof_sample(["c", "d", "e"], 5)])
    # |U_h| = 4 (x too); c: {u1}, overlap 1 -> 1/sqrt(4); d: {u2, u3} -> 2/sqrt(8)
    assert r.items == ["d", "c", "e"]
    assert r.scores == pytest.approx([2 / 8**0.5, 1 / 4**0.5, 0.0])
    # u4's later edges give c a larger cosine under leave-one-out: 2/sqrt(10) for c
    (loo,) = ItemKNN().fit(df).rank([sample(["c", "d", "e"])])
    assert dict(zip(loo.items, loo.scores, strict=True))["c"] == pytest.approx(2 / 10**0.5)


def test_a_history_item_taken_in_the_targets_second_is_not_evidence():
    df = edges([("u1", "h", 1), ("u1", "c", 2), ("u2", "g", 1), ("u2", "d", 2),
                ("x", "g", 3), ("x", "h", 5)])  # fmt: skip
    # x took h in the target's second (day 5): only g, taken before, may point anywhere
    (r,) = ItemKNNAsOf(AudienceIndex(df)).rank([asof_sample(["c", "d"], 5, history=("g", "h"))])
    assert r.items == ["d", "c"] and r.scores[1] == 0.0
    (later,) = ItemKNNAsOf(AudienceIndex(df)).rank([asof_sample(["c", "d"], 6, history=("g", "h"))])
    assert later.scores == pytest.approx([1 / 2**0.5, 1 / 2**0.5])


def test_with_every_edge_before_the_target_it_equals_the_itemknn_baseline():
    rng = random.Random(3)
    rows = sorted({(f"u{rng.randrange(12)}", f"i{rng.randrange(15)}", rng.randrange(20))
                   for _ in range(90)})  # fmt: skip
    items = sorted({i for _, i, _ in rows})
    histories = [tuple(rng.sample(items, 4)) for _ in range(10)]
    # the sample's user ("x") took every history item, as a sample's user has
    df = edges(rows + [("x", i, 0) for i in items])
    knn, asof = ItemKNN().fit(df), ItemKNNAsOf(AudienceIndex(df))
    for k, history in enumerate(histories):
        cands = rng.sample(items, 8)
        (a,) = asof.rank([asof_sample(cands, 30, history)])
        (b,) = knn.rank([sample(cands, history)])
        assert a.items == b.items
        assert a.scores == pytest.approx(b.scores, abs=1e-12), k


def test_a_sample_without_a_target_time_is_refused():
    with pytest.raises(R2RecError, match="x:9 has none"):
        ItemKNNAsOf(AudienceIndex(edges([("u1", "a", 1)]))).rank([sample(["a"])])


def test_naive_and_utc_times_mean_the_same_instant():
    df = edges([("u1", "a", 1), ("u2", "a", 3)])
    naive = df.assign(ts=df["ts"].dt.tz_localize(None))
    s = type(asof_sample(["a"], 2))(**{**asof_sample(["a"], 2).__dict__,
                                       "target_ts": at(2).replace(tzinfo=None)})  # fmt: skip
    assert PopularityAsOf(AudienceIndex(naive)).rank([s])[0].scores == [1.0]
    assert PopularityAsOf(AudienceIndex(df)).rank([s])[0].scores == [1.0]
