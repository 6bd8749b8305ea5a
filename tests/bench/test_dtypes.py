"""The dtype agreement benchmark's arithmetic, on hand-made results."""

from __future__ import annotations

import pytest

from bench.dtypes import compare, spearman
from inference.engine import Candidate, Scored


def scored(completion: str, scores: dict[str, float]) -> Scored:
    ranked = sorted(((Candidate(k, k, k), v) for k, v in scores.items()), key=lambda x: -x[1])
    return Scored("k", ranked, "", completion, True)


def test_spearman_is_one_for_the_same_order_and_minus_one_reversed():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [5, 5, 9]) == pytest.approx(1.0)  # ties share a rank


def test_compare_counts_identical_answers_and_the_worst_difference():
    a = [scored("x", {"C1": -1.0, "C2": -2.0}), scored("y", {"C1": -1.0, "C2": -3.0})]
    b = [scored("x", {"C1": -1.1, "C2": -2.0}), scored("z", {"C1": -4.0, "C2": -0.5})]
    out = compare(a, b)
    assert out["prompts"] == 2 and out["identical_completions"] == 0.5
    assert out["identical_top1"] == 0.5  # the second flips to C2
    assert out["mean_spearman"] == pytest.approx(0.0)  # +1 and -1
    # only the first pair shares its reasoning, so only it counts for the difference
    assert out["max_logprob_diff_same_reasoning"] == pytest.approx(0.1)
