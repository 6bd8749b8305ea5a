"""bench.evidence_learned: the fit is a maximum-likelihood conditional logit, the features
are what the prompt shows, and a learnable signal the evidence order misses is found."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from bench import evidence_learned as el
from inference.ranking import EvalSample
from r2rec.contracts import GRAPH_EDGES
from tests.bench.test_evidence_score import CUT, DS, write_date


def draw(n: int, w: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 10, len(w)))
    z = x @ w
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(10, p=row) for row in p])
    return x, y


def test_the_fit_recovers_the_weights_that_drew_the_choices():
    rng = np.random.default_rng(7)
    w = np.array([1.5, -0.8, 0.0])
    x, y = draw(6000, w, rng)
    model = el.ConditionalLogit(l2=0.0).fit(x, y)
    # Weights are per standardised feature: scale back to compare.
    recovered = model.weights / model.scale
    assert recovered == pytest.approx(w, abs=0.12)
    assert model.gradient < 1e-8
    # The maximum of the likelihood: the true weights fit these draws no better.
    standard = (x - model.mean) / model.scale
    assert model._nll(standard, y, model.weights) <= model._nll(standard, y, w * model.scale)


def test_a_constant_feature_keeps_weight_zero_and_the_fit_stays_finite():
    rng = np.random.default_rng(1)
    x, y = draw(500, np.array([1.0, 0.0]), rng)
    x[..., 1] = 3.0  # e.g. "has evidence" on a date where every candidate has some
    model = el.ConditionalLogit().fit(x, y)
    assert model.weights[1] == 0.0 and np.isfinite(model.weights).all()


def test_features_are_what_the_prompt_shows():
    sample = EvalSample("u:5", "valid", 0, "u", ("h1", "h2", "h3"), ("a", "b", "c"),
                        ("C1", "C2", "C3"), "b", CUT)  # fmt: skip
    rows = {
        "a": {"users": 3, "overlap": 0.5, "score": 2.0, "via": ["h1"]},
        "b": {"users": 1, "overlap": 0.25, "score": 4.0, "via": ["h3", "h1"]},
    }
    x = el.features(sample, rows, lambda item, ts: {"a": 9, "b": 0, "c": 2}[item])
    assert x.shape == (3, len(el.FEATURES))
    # b is first (score 4), a second; c has no evidence: zeros but for its audience.
    assert x[1, :5] == pytest.approx([1, 4.0, 1.0, 1.0, 1.0])
    assert x[0, :5] == pytest.approx([1, 2.0, 0.5, 0.5, 0.0])
    assert x[0, 5:8] == pytest.approx([np.log(4), 0.5, 1 / 3])  # h1: third from the end
    assert x[1, 7] == pytest.approx(1.0)  # h3 is the last history item
    assert x[2, :8] == pytest.approx(np.zeros(8))
    assert x[:, 8] == pytest.approx(np.log1p([9, 0, 2]))


def test_it_learns_what_the_evidence_order_misses(lakehouse):
    # The target y always has the higher overlap but the lower score: the order names x,
    # a ranker of the prompt's numbers learns to name y.
    lists = {f"t{k}:5": {"x": (2, 0.2, 0.9), "y": (2, 0.6, 0.5)} for k in range(30)}
    lists |= {f"s{k}:5": {"x": (2, 0.1, 0.3), "y": (2, 0.5, 0.2), "z": (1, 0.05, 0.8)}
              for k in range(30)}  # fmt: skip
    lists |= {"u1:5": {"x": (3, 0.3, 0.9), "y": (3, 0.7, 0.4)},
              "u2:5": {"x": (1, 0.2, 0.5), "y": (1, 0.4, 0.1)}}  # fmt: skip
    write_date(lakehouse, lists, train=60)
    # x has an audience: three users before the targets.
    edges = [{"ds": DS, "user_id": f"v{k}", "item_id": "x", "rating": 4.0,
              "ts": CUT - timedelta(days=1 + k), "weight": 4.0} for k in range(3)]  # fmt: skip
    lakehouse.overwrite(GRAPH_EDGES, edges, partition={"ds": DS})
    (row,), model = el.compare(lakehouse, DS, max_samples=0)
    assert (row["split"], row["samples"]) == ("valid", 2)
    assert row["new"][0] == 1.0 and row["old"][0] == 0.0
    assert (row["wins"], row["losses"]) == (2, 0)
    assert model.weights[el.FEATURES.index("mean overlap")] > 0


def test_content_features_read_genres_and_years_from_the_catalogue():
    from r2rec.catalog import ItemText

    items = {
        "h1": ItemText("h1", "H1", ("Drama", "War"), "H1", 1990),
        "h2": ItemText("h2", "H2", ("Drama",), "H2", 1996),
        "a": ItemText("a", "A", ("Drama", "Comedy"), "A", 1997),
        "b": ItemText("b", "B", (), "B", None),  # no genres, no year
    }
    sample = EvalSample("u:5", "valid", 0, "u", ("h1", "h2"), ("a", "b", "zz"),
                        ("C1", "C2", "C3"), "a", CUT)  # fmt: skip
    x = el.content_features(sample, items)
    assert x.shape == (3, len(el.CONTENT))
    # a: Drama in both history items, Comedy in none: 2 / (2 items x 2 genres).
    assert x[0] == pytest.approx([0.5, 1998 - 1997, 1997 - 1996])
    # No year: the newest history item's (1996); no genres: no share. An id with no
    # catalogue row is the same.
    assert x[1] == pytest.approx([0.0, 1998 - 1996, 0])
    assert x[2] == pytest.approx([0.0, 1998 - 1996, 0])


def test_a_date_without_training_lists_is_one_clear_error(lakehouse):
    from r2rec.errors import R2RecError

    write_date(lakehouse, {"u1:5": {"x": (1, 0.5, 0.1), "y": (1, 0.5, 0.2)}})  # valid only
    with pytest.raises(R2RecError, match="no training lists"):
        el.compare(lakehouse, DS, max_samples=0)
