"""Ranking metrics on hand-made rankings: exact values."""

from __future__ import annotations

import math

import pytest

from inference.metrics import (
    aggregate,
    full_metrics,
    full_rank_of,
    hit_at_k,
    mean_metrics,
    ndcg_at_k,
    proportion_interval,
    rank_of,
    sample_metrics,
)
from inference.ranking import EvalSample, Ranking

ITEMS = [f"i{k}" for k in range(20)]


def sample(sid: str, seed: int, target: str, split: str = "test") -> EvalSample:
    return EvalSample(
        sample_id=sid,
        split=split,
        seed=seed,
        user_id=sid.split(":")[0],
        history=("h1", "h2"),
        candidates=tuple(ITEMS),
        labels=tuple(f"C{k + 1}" for k in range(20)),
        target_item_id=target,
    )


def ranked(s: EvalSample, target_rank: int, valid: bool = True) -> Ranking:
    """All candidates, with the target placed at ``target_rank`` (1-based)."""
    rest = [i for i in s.candidates if i != s.target_item_id]
    items = [*rest[: target_rank - 1], s.target_item_id, *rest[target_rank - 1 :]]
    return Ranking(s.sample_id, s.seed, items, answer_valid=valid)


def test_rank_hit_and_ndcg_exact_values():
    items = ["a", "b", "c", "d", "e", "f"]
    assert rank_of(items, "c") == 3
    assert rank_of(items, "z") is None
    assert hit_at_k(items, "c", 3) == 1.0
    assert hit_at_k(items, "c", 2) == 0.0
    assert ndcg_at_k(items, "a", 5) == 1.0
    assert ndcg_at_k(items, "c", 5) == 0.5  # 1/log2(4)
    assert ndcg_at_k(items, "b", 5) == 1 / math.log2(3)
    assert ndcg_at_k(items, "f", 5) == 0.0  # rank 6 > 5
    assert ndcg_at_k(items, "f", 10) == 1 / math.log2(7)


def test_sample_metrics_target_at_rank_three():
    s = sample("u1:9", 0, "i7")
    assert sample_metrics(s, ranked(s, 3)) == {
        "hr@1": 0.0,
        "valid_ratio": 1.0,
        "hr@5": 1.0,
        "ndcg@5": 0.5,
        "ndcg@10": 0.5,
    }


def test_invalid_answer_is_a_hr1_miss_but_its_ranking_still_counts():
    s = sample("u1:9", 0, "i7")
    assert sample_metrics(s, ranked(s, 1, valid=False)) == {
        "hr@1": 0.0,
        "valid_ratio": 0.0,
        "hr@5": 1.0,
        "ndcg@5": 1.0,
        "ndcg@10": 1.0,
    }
    assert sample_metrics(s, ranked(s, 1))["hr@1"] == 1.0


def test_target_between_five_and_ten_counts_only_for_ndcg10():
    s = sample("u1:9", 0, "i7")
    m = sample_metrics(s, ranked(s, 7))
    assert (m["hr@5"], m["ndcg@5"], m["ndcg@10"]) == (0.0, 0.0, 1 / math.log2(8))


def test_aggregate_per_seed_and_mean_over_seeds():
    a0, b0 = sample("a:5", 0, "i1"), sample("b:5", 0, "i2")
    a1, b1 = sample("a:5", 1, "i1"), sample("b:5", 1, "i2")
    v0 = sample("a:4", 0, "i3", split="valid")
    pairs = [
        (a0, ranked(a0, 1)),  # hit
        (b0, ranked(b0, 3)),  # ndcg@5 0.5
        (a1, ranked(a1, 1, valid=False)),  # invalid: hr@1 miss, ranking perfect
        (b1, ranked(b1, 2)),
        (v0, ranked(v0, 1)),
    ]
    out = aggregate(pairs)
    assert set(out) == {("test", 0), ("test", 1), ("test", None), ("valid", 0), ("valid", None)}
    assert out[("test", 0)] == {
        "hr@1": 0.5,
        "valid_ratio": 1.0,
        "hr@5": 1.0,
        "ndcg@5": 0.75,
        "ndcg@10": 0.75,
    }
    ndcg_b1 = 1 / math.log2(3)
    assert out[("test", 1)] == {
        "hr@1": 0.0,
        "valid_ratio": 0.5,
        "hr@5": 1.0,
        "ndcg@5": (1.0 + ndcg_b1) / 2,
        "ndcg@10": (1.0 + ndcg_b1) / 2,
    }
    mean = out[("test", None)]
    assert mean["hr@1"] == 0.25
    assert mean["valid_ratio"] == 0.75
    assert mean["ndcg@5"] == pytest.approx((0.75 + (1.0 + ndcg_b1) / 2) / 2, abs=1e-15)
    assert out[("valid", None)] == out[("valid", 0)]
    assert out[("valid", 0)]["hr@1"] == 1.0


def test_seed_mean_weighs_seeds_equally():
    # seed 0 has two samples (both hits), seed 1 one miss: mean of means = 0.5, not 2/3
    s = [sample("a:1", 0, "i1"), sample("b:1", 0, "i1"), sample("a:1", 1, "i1")]
    pairs = [(s[0], ranked(s[0], 1)), (s[1], ranked(s[1], 1)), (s[2], ranked(s[2], 4))]
    assert aggregate(pairs)[("test", None)]["hr@1"] == 0.5


def test_aggregate_refuses_a_ranking_of_another_sample():
    a, b = sample("a:1", 0, "i1"), sample("b:1", 0, "i1")
    with pytest.raises(ValueError, match="paired with sample"):
        aggregate([(a, ranked(b, 1))])


def test_full_ranking_helpers():
    top = ["x", "y", "t", "z"]
    assert full_metrics(top, "t") == {"hr@10": 1.0, "ndcg@10": 0.5}
    assert full_metrics(top, "q") == {"hr@10": 0.0, "ndcg@10": 0.0}
    scores = {"a": 3.0, "b": 2.0, "c": 2.0, "t": 2.0, "seen": 9.0}
    # ties with the target rank by item id: b and c come before t
    assert full_rank_of(scores, "t") == 5
    assert full_rank_of(scores, "t", exclude={"seen", "t"}) == 4
    assert full_rank_of({"a": 1.0, "t": 1.0, "u": 1.0}, "t") == 2
    assert mean_metrics([{"hr@10": 1.0}, {"hr@10": 0.0}, {"hr@10": 0.0}]) == {"hr@10": 1 / 3}
    assert mean_metrics([]) == {}


def _wilson_by_bisection(hits: int, n: int) -> tuple[float, float]:
    """The interval's definition, solved numerically: every p with
    |hits/n - p| <= z * sqrt(p (1 - p) / n)."""
    z, phat = 1.959963984540054, hits / n

    def inside(p: float) -> bool:
        return abs(phat - p) <= z * math.sqrt(p * (1 - p) / n)

    def edge(lo: float, hi: float) -> float:  # lo inside, hi outside (or the reverse)
        want = inside(lo)
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if inside(mid) == want else (lo, mid)
        return (lo + hi) / 2

    return (0.0 if hits == 0 else edge(phat, 0.0)), (1.0 if hits == n else edge(phat, 1.0))


@pytest.mark.parametrize("hits, n", [(0, 10), (1, 2), (3, 17), (10, 10), (56, 300), (1, 943)])
def test_proportion_interval_is_wilsons(hits, n):
    low, high = proportion_interval(hits, n)
    assert (low, high) == pytest.approx(_wilson_by_bisection(hits, n), abs=1e-9)
    assert 0.0 <= low <= hits / n <= high <= 1.0


def test_proportion_interval_known_values_and_bad_input():
    assert proportion_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert proportion_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    for hits, n in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            proportion_interval(hits, n)
