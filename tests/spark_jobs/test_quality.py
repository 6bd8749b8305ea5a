"""Data-quality checks catch each defect, count it, and fail the job naming the check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from r2rec.errors import DataQualityError
from spark_jobs import quality
from spark_jobs.chains import chain_checks
from spark_jobs.evidence import evidence_checks
from spark_jobs.samples import candidate_checks, user_positives

T = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 5, tzinfo=UTC)


def edge_frame(spark, rows):
    return spark.createDataFrame(rows, "user_id string, item_id string, ts timestamp")


def test_candidate_checks_count_each_defect(spark):
    edges = edge_frame(spark, [("u", "seen", T), ("u", "seen2", T), ("u", "t", T), ("v", "t", T)])
    labels = ["C1", "C2", "C3"]
    rows = [
        ("ok", 0, "u", "t", ["a", "t", "b"], labels, "C2"),
        ("short", 0, "u", "t", ["t", "a"], labels[:2], "C1"),
        ("dup", 0, "u", "t", ["t", "a", "a"], labels, "C1"),
        ("twice", 0, "u", "t", ["t", "t", "a"], labels, "C1"),
        ("badlabel", 0, "u", "t", ["a", "t", "b"], labels, "C1"),
        ("positive", 0, "u", "t", ["seen", "t", "b"], labels, "C2"),
        ("two_positives", 0, "u", "t", ["seen", "seen2", "t"], labels, "C3"),
        ("other_user", 0, "v", "t", ["seen", "t", "b"], labels, "C2"),  # v never saw it
    ]
    cands = spark.createDataFrame(
        rows,
        "sample_id string, seed long, user_id string, target_item_id string, "
        "items array<string>, labels array<string>, target_label string",
    )
    checked = quality.run_checks(candidate_checks(cands, user_positives(edges), 3))
    results = {r.name: r.failing for r in checked}
    assert results == {
        "candidates_exactly_n": 3,  # short, dup, twice
        "candidates_target_once": 1,  # twice
        "candidates_label_matches_target": 1,  # badlabel
        "candidates_negative_is_positive": 2,  # positive, two_positives: one row each
    }
    seen = next(r for r in checked if r.name == "candidates_negative_is_positive")
    assert "'seen_negatives': ['seen'" in seen.example


def test_chain_checks_catch_invalid_chains(spark):
    edges = edge_frame(spark, [("u1", "i0", T), ("u1", "t", T), ("u1", "late", LATER)])
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


def test_evidence_checks_catch_rows_not_grounded_before_their_cutoff(spark):
    edges = edge_frame(spark, [("u", "h1", T), ("u", "h2", LATER), ("v", "h1", T)])
    schema = (
        "context_id string, user_id string, item_id string, cutoff timestamp, users int, "
        "paths int, overlap double, via array<string>"
    )
    rows = [
        ("ok", "u", "c", LATER, 2, 3, 0.5, ["h1"]),
        ("ok", "u", "d", LATER, 1, 1, 0.2, ["h1"]),
        ("v_ok", "v", "c", LATER, 1, 1, 0.2, ["h1"]),
        ("late", "u", "c", LATER, 1, 1, 0.5, ["h1", "h2"]),  # h2 is at the cutoff
        ("early", "u", "c", T, 1, 1, 0.5, ["h1"]),  # h1 is not before T
        ("early", "u", "d", T, 1, 1, 0.5, ["h1"]),
        ("foreign", "u", "c", LATER, 1, 1, 0.5, ["x"]),  # u has no edge with x
        ("empty", "u", "e", LATER, 1, 1, 0.5, []),
        ("zero", "u", "f", LATER, 0, 0, 0.0, ["h1"]),
    ]
    results = quality.run_checks(evidence_checks(spark.createDataFrame(rows, schema), edges))
    failing = {r.name: r.failing for r in results}
    assert failing == {
        "evidence_key_not_null": 0,
        "evidence_counts_positive": 2,  # empty, zero
        # (u, h2) and (u, x) everywhere; (u, h1) for the prompt at T, named once.
        "evidence_via_edge_before_cutoff": 3,
    }
    via = next(r for r in results if r.name == "evidence_via_edge_before_cutoff")
    assert via.example is not None and "'context_id': '" in via.example
    # The prompts held to their own cutoffs: moved after every edge, none fails.
    later = [(c, u, i, LATER + (LATER - T), *rest) for c, u, i, _, *rest in rows[:4]]
    fine = quality.run_checks(evidence_checks(spark.createDataFrame(later, schema), edges))
    assert {r.name: r.failing for r in fine}["evidence_via_edge_before_cutoff"] == 0
