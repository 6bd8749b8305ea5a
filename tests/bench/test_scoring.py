"""bench.scoring: HR@1 of the published rank 1 against the targets, the time 943 users
take, and its options."""

from __future__ import annotations

import pytest

from bench import scoring
from inference import score


def top(sample: str, item: str, valid: bool = True, reasoning: str = "a b c d") -> dict:
    return {"sample_id": sample, "item_id": item, "answer_valid": valid, "reasoning": reasoning}


def test_hr1_counts_rank_one_hits_over_users_with_an_interval():
    rows = [top("u1:9", "i1"), top("u2:4", "i7", valid=False, reasoning=None),
            top("u3:2", "i3"), top("u4:8", "i0")]  # fmt: skip
    targets = {"u1:9": "i1", "u2:4": "i2", "u3:2": "i3", "u4:8": "i4"}
    m = scoring.summarise(200.0, rows, targets)
    assert m["users"] == 4 and m["hr@1"] == 0.5
    assert m["ci"] == pytest.approx((0.150, 0.850), abs=5e-4)  # Wilson's for 2 of 4
    assert m["valid"] == 0.75
    assert m["words"] == 3.0  # 4 + 0 + 4 + 4 words over 4 users
    assert m["users_per_s"] == 0.02
    assert m["minutes_for_943"] == pytest.approx(943 / 0.02 / 60)
    line = scoring.table([(64, m)]).splitlines()[-1]
    assert line == "| 64 | 4 | 200 | 0.02 | 785.8 | 0.500 [0.150, 0.850] | 0.750 | 3 |"
    with pytest.raises(SystemExit, match="no rank-1 rows"):
        scoring.summarise(1.0, [], {})


@pytest.mark.parametrize(
    "args, says",
    [
        (["--budgets", "160,x"], "--budgets: integers"),
        (["--budgets", "0"], "one or more positive integers"),
        (["--max-users", "-1"], "--max-users >= 0"),
    ],
)
def test_options_are_checked_before_anything_runs(args, says, capsys):
    with pytest.raises(SystemExit):
        scoring.main(["--ds", "2026-11-25", "--model", "champion", *args])
    assert says in capsys.readouterr().err


class TargetForSomeUsers:
    """Ranks the target first for users u0..u3 (the key is the sample id, "u<k>:9", and
    user u<k>'s target is item i<k> in these inputs), and last for the others."""

    def score(self, requests):
        from inference.engine import Scored

        out = []
        for r in requests:
            k = int(r.key.split(":")[0][1:])
            target = [c for c in r.candidates if c.item_id == f"i{k}"]
            others = [c for c in r.candidates if c.item_id != f"i{k}"]
            order = target + others if k < 4 else others + target
            ranked = [(c, -float(j)) for j, c in enumerate(order)]
            text = "Step 1: one two three."
            out.append(Scored(r.key, ranked, text, text, k != 9, checks={}))
        return out


def test_measure_reads_the_runs_time_and_scores_what_it_published(lakehouse):
    import datetime as dt
    import json

    from tests.inference.test_score import DS, write_eval_inputs

    write_eval_inputs(lakehouse)
    report = score.run(lakehouse, DS, scorer_factory=TargetForSomeUsers, model_version="f@1",
                       top_k=3, shards=2, chunk_size=4)  # fmt: skip
    start = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
    row = {"ds": DS, "job": "score", "status": "success", "started_at": start,
           "ended_at": start, "inputs": None, "outputs": None, "config": "[]",
           "error": None, "git_commit": None, "host": "h", "pid": 1, "peak_rss_mb": None,
           "jvm_peak_rss_mb": None}  # fmt: skip
    lakehouse.append("job_runs", [
        {**row, "run_id": "a", "elapsed_s": 40.0, "report": json.dumps(report)},
        {**row, "run_id": "b", "elapsed_s": 99.0, "report": json.dumps({"run_id": "other"})},
    ])  # fmt: skip
    m = scoring.measure(lakehouse.root, DS, report["run_id"])
    assert m["users"] == 10 and m["seconds"] == 40.0  # this run's row, not the other's
    assert m["hr@1"] == 0.4  # u0..u3 of u0..u9
    assert m["valid"] == 0.9 and m["words"] == 5.0  # "Step 1: one two three."
    with pytest.raises(SystemExit, match="expected one job_runs row for scoring run nope"):
        scoring.measure(lakehouse.root, DS, "nope")
