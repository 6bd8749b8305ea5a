"""Data-quality checks catch each defect, count it, and fail the job naming the check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from r2rec.errors import DataQualityError
from spark_jobs import quality
from spark_jobs.chains import chain_checks
from spark_jobs.samples import candidate_checks

T = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 5, tzinfo=UTC)


def test_candidate_checks_count_each_defect(spark):
    edges = spark.createDataFrame(
        [("u", "seen", T), ("u", "t", T)], "user_id string, item_id string, ts timestamp"
    )
    labels = ["C1", "C2", "C3"]
    rows = [
        ("ok", 0, "u", "t", ["a", "t", "b"], labels, "C2"),
        ("short", 0, "u", "t", ["t", "a"], labels[:2], "C1"),
        ("dup", 0, "u", "t", ["t", "a", "a"], labels, "C1"),
        ("twice", 0, "u", "t", ["t", "t", "a"], labels, "C1"),
        ("badlabel", 0, "u", "t", ["a", "t", "b"], labels, "C1"),
        ("positive", 0, "u", "t", ["seen", "t", "b"], labels, "C2"),
    ]
    cands = spark.createDataFrame(
        rows,
        "sample_id string, seed long, user_id string, target_item_id string, "
        "items array<string>, labels array<string>, target_label string",
    )
    results = {r.name: r.failing for r in quality.run_checks(candidate_checks(cands, edges, 3))}
    assert results == {
        "candidates_exactly_n": 3,  # short, dup, twice
        "candidates_target_once": 1,  # twice
        "candidates_label_matches_target": 1,  # badlabel
        "candidates_negative_is_positive": 1,  # positive
    }


def test_chain_checks_catch_invalid_chains(spark):
    edges = spark.createDataFrame(
        [("u1", "i0", T), ("u1", "t", T), ("u1", "late", LATER)],
        "user_id string, item_id string, ts timestamp",
    )
    schema = (
        "chain_id string, user_id string, u1 string, i0 string, i1 string, overlap int, "
        "u0_i0_ts timestamp, u1_i0_ts timestamp, u1_i1_ts timestamp, target_ts timestamp"
    )
    rows = [
        ("good", "u0", "u1", "i0", "t", 2, T, T, T, LATER),
        ("self", "u1", "u1", "i0", "t", 2, T, T, T, LATER),
        ("open", "u0", "u1", "i0", "t", 1, T, T, T, LATER),
        ("no_edge", "u0", "u1", "nope", "t", 2, T, T, T, LATER),
        ("after", "u0", "u1", "i0", "late", 2, T, T, LATER, LATER),
    ]
    chains = spark.createDataFrame(rows, schema)
    results = quality.run_checks(chain_checks(chains, edges))
    failing = {r.name: r.failing for r in results}
    assert failing == {
        "chains_key_not_null": 0,
        "chains_u1_differs_from_u0": 1,
        "chains_closure": 1,
        "chains_u0_i0_before_target": 0,
        "chains_u1_i0_edge_before_target": 1,
        "chains_u1_i1_edge_before_target": 1,
    }
    with pytest.raises(DataQualityError) as err:
        quality.enforce("chains", "2026-01-09", results)
    msg = str(err.value)
    assert "'chains_closure' failed for 1 row(s)" in msg
    assert "'chains_u1_differs_from_u0' failed for 1 row(s)" in msg
    # A job run with --min-overlap 1 holds its chains to that closure, not the default's.
    loose = {r.name: r.failing for r in quality.run_checks(chain_checks(chains, edges, 1))}
    assert loose["chains_closure"] == 0
    assert "chains_key_not_null" not in msg
