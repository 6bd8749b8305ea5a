"""bench.evidence_score: both rules rank the same evidence rows; the table pairs them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench import evidence_score
from r2rec.contracts import CANDIDATE_EVIDENCE, CANDIDATES, GRAPH_EDGES, SAMPLES

DS = "1998-01-05"
CUT = datetime(1998, 1, 1, tzinfo=UTC)


def write_date(
    lakehouse, evidence: dict[str, dict[str, tuple[int, float, float]]], train: int = 0
) -> None:
    """Samples u<k>:5 with candidates x, y, z (target y) and the given evidence rows:
    sample -> item -> (users, mean overlap, score). The first ``train`` are training
    samples, the rest valid."""
    samples, cands, rows = [], [], []
    for k, sid in enumerate(evidence):
        user, split = sid.split(":")[0], "train" if k < train else "valid"
        samples.append({"ds": DS, "split": split, "sample_id": sid, "user_id": user,
                        "position": 5, "history": ["h"], "target_item_id": "y",
                        "target_ts": CUT})  # fmt: skip
        cands.append({"ds": DS, "split": split, "sample_id": sid, "seed": 0, "user_id": user,
                      "target_item_id": "y", "items": ["x", "y", "z"],
                      "labels": ["C1", "C2", "C3"], "target_label": "C2",
                      "sampler": "uniform"})  # fmt: skip
        for item, (users, overlap, score) in evidence[sid].items():
            rows.append({"ds": DS, "scope": "samples", "context_id": sid, "user_id": user,
                         "item_id": item, "cutoff": CUT, "users": users, "paths": users,
                         "overlap": overlap, "score": score, "via": ["h"],
                         "via_users": [users]})  # fmt: skip
    lakehouse.overwrite(SAMPLES, samples, partition={"ds": DS})
    lakehouse.overwrite(CANDIDATES, cands, partition={"ds": DS})
    lakehouse.overwrite(CANDIDATE_EVIDENCE, rows, partition={"ds": DS, "scope": "samples"})
    edge = {"ds": DS, "user_id": "u0", "item_id": "h", "rating": 4.0, "ts": CUT, "weight": 4.0}
    lakehouse.overwrite(GRAPH_EDGES, [edge], partition={"ds": DS})


def test_the_rules_differ_only_where_score_and_summed_overlap_disagree(lakehouse):
    write_date(lakehouse, {
        # x: 4 users x 0.5 = 2.0 summed, but a large audience; y: 2 x 0.6 = 1.2, niche.
        "u1:5": {"x": (4, 0.5, 0.4), "y": (2, 0.6, 0.8)},  # only the score finds y
        "u2:5": {"x": (1, 0.2, 0.1), "y": (3, 0.5, 0.9)},  # both find y
        # neither does; w is another seed's candidate, strongest by both rules
        "u3:5": {"x": (3, 0.5, 0.9), "y": (1, 0.5, 0.2), "w": (9, 0.9, 9.0)},
        "u4:5": {"z": (1, 0.5, 0.3)},  # y has no evidence: display order, x first
    })  # fmt: skip
    (row,) = evidence_score.compare(lakehouse, DS, max_samples=0)
    assert (row["split"], row["samples"]) == ("valid", 4)
    assert row["new"][0] == pytest.approx(2 / 4)
    assert row["old"][0] == pytest.approx(1 / 4)
    assert (row["wins"], row["losses"]) == (1, 0)
    assert row["diff"][0] == pytest.approx(1 / 4) and row["diff"][3] == 4
    line = evidence_score.table([row]).splitlines()[-1]
    assert line.startswith(f"| {DS} | valid | 4 | 0.500 [")
    assert line.endswith("| +0.250 [-0.240, +0.740] | 1 / 0 |")


def test_against_pairs_two_versions_of_the_evidence_on_the_same_samples(lakehouse, tmp_path):
    from r2rec.errors import R2RecError
    from r2rec.lakehouse import Lakehouse

    # This lakehouse's score finds y in u1 and u2; the other's only in u2.
    write_date(lakehouse, {"u1:5": {"x": (1, 0.5, 0.1), "y": (1, 0.5, 0.2)},
                           "u2:5": {"y": (1, 0.5, 0.3)}})  # fmt: skip
    other = Lakehouse(str(tmp_path / "other"))
    write_date(other, {"u1:5": {"x": (1, 0.5, 0.2), "y": (1, 0.5, 0.1)},
                       "u2:5": {"y": (1, 0.5, 0.3)}})  # fmt: skip
    (row,) = evidence_score.compare(lakehouse, DS, 0, against=other)
    assert (row["new"][0], row["old"][0]) == (1.0, 0.5)
    assert (row["wins"], row["losses"]) == (1, 0)
    header = evidence_score.table([row], "v4", "v3").splitlines()[0]
    assert "HR@1, v4 [95% CI] | HR@1, v3 [95% CI]" in header
    # Other samples there: refused, not ranked on missing evidence.
    write_date(other, {"u1:5": {"x": (1, 0.5, 0.2)}, "u3:5": {"y": (1, 0.5, 0.3)}})
    with pytest.raises(R2RecError, match="same samples"):
        evidence_score.compare(lakehouse, DS, 0, against=other)
