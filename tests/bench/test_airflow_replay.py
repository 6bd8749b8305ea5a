"""bench.airflow_replay: the dates it replays, which run stands for a date, its table."""

from __future__ import annotations

import argparse

import pytest

from bench import airflow_replay as ar


def test_the_default_replay_is_29_mondays_of_ml100k():
    dates = ar.mondays("1997-10-06", "1998-04-20")
    assert len(dates) == 29 and dates[1] == "1997-10-13" and dates[-1] == "1998-04-20"
    with pytest.raises(SystemExit, match="must be a Monday"):
        ar.mondays("1997-10-07", "1998-04-20")
    with pytest.raises(SystemExit, match="must be a Monday"):
        ar.mondays("1998-04-20", "1997-10-06")


def test_a_date_is_its_newest_run_and_other_dates_are_ignored():
    runs = [
        {"run_id": "manual__1997-10-06", "logical_date": "1997-10-06T00:00:00+00:00",
         "state": "failed", "start_date": "2026-11-30T10:00:00"},
        {"run_id": "backfill__1997-10-06", "logical_date": "1997-10-06T00:00:00+00:00",
         "state": "success", "start_date": "2026-11-30T11:00:00"},
        {"run_id": "backfill__1997-10-13", "logical_date": "1997-10-13T00:00:00+00:00",
         "state": "queued", "start_date": None},
        {"run_id": "manual__2026-11-30", "logical_date": "2026-11-30T00:00:00+00:00",
         "state": "success", "start_date": "2026-11-30T09:00:00"},
    ]  # fmt: skip
    dates = ["1997-10-06", "1997-10-13", "1997-10-20"]
    # A date run twice is its later run (the backfill's success, although "manual" sorts
    # after "backfill" by id); a date with no run is absent, so waiting goes on for it.
    assert ar.runs_by_date(runs, dates) == {"1997-10-06": "success", "1997-10-13": "queued"}
    assert ar.runs_by_date(list(reversed(runs)), dates) == ar.runs_by_date(runs, dates)


def test_a_stage_with_a_failed_date_stops_the_replay():
    ok = {"1997-10-06": "success", "1997-10-13": "success"}
    assert ar.Replay.succeeded("r2rec_data", ok) == ok
    with pytest.raises(SystemExit, match=r"r2rec_data: 1 run\(s\) failed: 1997-10-13;"):
        ar.Replay.succeeded("r2rec_data", {**ok, "1997-10-13": "failed"})


class FakeAirflow(ar.Replay):
    """Replay's decisions over scripted run states; records the CLI calls it makes."""

    def __init__(self, states: list[dict[str, str]]):
        self.calls: list[tuple[str, ...]] = []
        self.script = states

    def say(self, text: str) -> None:
        pass

    def cli(self, *args: str, check: bool = True):
        self.calls.append(args)

    def states(self, dag_id: str, dates: list[str]) -> dict[str, str]:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def wait(self, dag_id: str, dates: list[str], poll: float = 30) -> dict[str, str]:
        return self.states(dag_id, dates)


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ({}, ("dags", "trigger", "r2rec_train", "--logical-date", "1998-01-05T00:00:00+00:00",
              "--conf", '{"a": 1}')),
        # Airflow refuses a second run of one logical date: a failed one is cleared instead.
        ({"1998-01-05": "failed"}, ("tasks", "clear", "r2rec_train", "--start-date",
                                    "1998-01-05", "--end-date", "1998-01-05", "--yes")),
        ({"1998-01-05": "running"}, None),  # an earlier call's run: only waited for
    ],
)  # fmt: skip
def test_a_trigger_starts_clears_or_waits_for_the_dates_run(before, expected):
    fake = FakeAirflow([before, {"1998-01-05": "success"}])

    assert fake.trigger("r2rec_train", "1998-01-05", {"a": 1}) == "success"
    assert fake.calls[0] == ("dags", "unpause", "r2rec_train")
    assert fake.calls[1:] == ([expected] if expected else [])


def test_a_date_that_already_succeeded_is_not_run_again():
    fake = FakeAirflow([{"1998-01-05": "success"}])

    assert fake.trigger("r2rec_train", "1998-01-05", {}) == "success"
    assert fake.calls == []


def test_the_cli_json_is_found_after_its_warnings():
    assert ar.last_json('WARNING something\n[{"a": 1}]\n') == [{"a": 1}]
    with pytest.raises(ValueError, match="no JSON"):
        ar.last_json("No data found\n")


def test_the_table_is_hr10_at_h7_per_date_best_first(lakehouse):
    def row(ds, model, metric, value, horizon=7, ci=(None, None)):
        return {"ds": ds, "horizon_days": horizon, "model": model, "metric": metric,
                "value": value, "ci_low": ci[0], "ci_high": ci[1], "users": 40, "k": 10,
                "run_id": "b", "detail": None}  # fmt: skip

    lakehouse.append("backtest_metrics", [
        row("1998-01-05", "popularity", "hr@10", 0.2, ci=(0.1, 0.3)),
        row("1998-01-05", "llm:v", "hr@10", 0.25, ci=(0.15, 0.35)),
        row("1998-01-05", "llm:v", "hr@10", 0.9, horizon=30),  # another horizon
        row("1998-01-05", "llm:v", "ndcg@10", 0.8),  # another metric
        row("1997-12-29", "retrieval", "hr@10", 0.1),
    ])  # fmt: skip
    lakehouse.append("job_metrics", [
        {"ds": "1998-01-05", "job": "score.serve", "metric": "users", "value": 57.0,
         "detail": None},
        {"ds": "1998-01-05", "job": "score.eval", "metric": "users", "value": 9.0,
         "detail": None},
    ])  # fmt: skip
    lines = ar.hr10_table(lakehouse.root).splitlines()
    assert lines[2:] == [
        "| 1997-12-29 | — | retrieval | 0.100 | 40 |",  # never scored: no serve metric
        "| 1998-01-05 | 57 | llm:v | 0.250 [0.150, 0.350] | 40 |",
        "| 1998-01-05 | 57 | popularity | 0.200 [0.100, 0.300] | 40 |",
    ]


def test_options_are_checked_before_anything_starts(capsys, tmp_path):
    for bad, says in (
        (["--stages", "data,deploy"], "--stages from data,train,score,backtest"),
        (["--train-date", "1998-01-06"], "is not one of the replayed Mondays"),
        (["--sft-steps", "0"], "--sft-steps, --active-days, --score-weeks >= 1"),
        (["--score-weeks", "0"], "--sft-steps, --active-days, --score-weeks >= 1"),
        (["--readme", str(tmp_path / "none.md")], "has no <!-- backtest:begin -->"),
    ):
        with pytest.raises(SystemExit):
            ar.main(["--workdir", str(tmp_path / "w"), *bad])
        assert says in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # nothing was created for a refused call


def test_the_readme_block_says_what_was_replayed_and_holds_the_table(tmp_path):
    from inference.results import write_readme

    readme = tmp_path / "README.md"
    readme.write_text("# R\n<!-- backtest:begin -->\nold\n<!-- backtest:end -->\nrest\n")
    args = argparse.Namespace(
        train_date="1998-01-05", sft_steps=100, grpo_steps=4, eval_samples=60, active_days=7
    )
    dates = ar.mondays("1997-12-29", "1998-02-02")
    text = ar.readme_text(
        args, dates, dates[1:5], "python -m bench.airflow_replay", "| t |", "**Verdict.**"
    )
    write_readme(readme, text, block="backtest")

    doc = readme.read_text()
    assert doc.startswith("# R\n<!-- backtest:begin -->\n6 weekly `r2rec_data` runs (1997-12-29")
    assert "on 4 Mondays (1998-01-05 .. 1998-01-26" in doc and "old" not in doc
    assert doc.endswith("| t |\n\n**Verdict.**\n<!-- backtest:end -->\nrest\n")


def test_the_verdict_compares_the_published_top10_with_popularity_and_retrieval(lakehouse):
    def row(ds, model, value, low, high, metric="hr@10"):
        return {"ds": ds, "horizon_days": 7, "model": model, "metric": metric, "value": value,
                "ci_low": low, "ci_high": high, "users": 40, "k": 10, "run_id": "b",
                "detail": None}  # fmt: skip

    assert ar.verdict(lakehouse.root) == "No backtest yet."
    lakehouse.append("backtest_metrics", [
        row("1998-01-05", "llm:v1", 0.30, 0.25, 0.35),
        row("1998-01-05", "popularity", 0.20, 0.10, 0.24),
        row("1998-01-05", "retrieval", 0.25, 0.20, 0.30),
        row("1998-01-12", "llm:v1", 0.20, 0.10, 0.30),
        row("1998-01-12", "popularity", 0.25, 0.15, 0.35),
        row("1998-01-12", "retrieval", 0.10, 0.05, 0.15),
        row("1998-01-12", "llm:v1", 0.99, 0.9, 1.0, metric="ndcg@10"),  # another metric
        row("1998-01-19", "retrieval", 0.50, 0.4, 0.6),  # never published: not compared
    ])  # fmt: skip

    assert ar.verdict(lakehouse.root) == (
        "**The published top-10 did not beat both popularity and the retrieval order on "
        "HR@10 at H = 7 on every date.** It was higher than popularity on 1 of 2 dates "
        "(lower on 1; its 95% interval wholly above on 1) and than the retrieval order on 2 "
        "of 2 dates (lower on 0; its 95% interval wholly above on 0)."
    )


def test_the_cost_table_covers_the_data_dags_jobs_over_the_dates_all_ran(lakehouse):
    """Item 4 of issue 17 from the replay's own job_runs: per data job, the first and last
    three dates; a date where a job has no successful run is named, not averaged in."""
    import datetime as dt

    from tests.bench.test_replay import run_row

    dates = ar.mondays("1997-10-06", "1997-11-03")  # 5 Mondays
    options = {"ingest": ["--source", "movielens-100k"], "evidence": ["--scope", "samples"],
               "traces": ["--teacher", "template"]}  # fmt: skip
    rows, minute = [], 0
    for k, ds in enumerate(dates):
        for job in ar.DATA_JOBS:
            if (job, ds) == ("traces", dates[2]):
                continue  # this date's traces never succeeded
            minute += 1
            rows.append(run_row(job, ds, options.get(job, []), 10.0 + k, minute))
    lakehouse.append("job_runs", rows)
    when = dt.datetime(1997, 9, 25, tzinfo=dt.UTC)
    lakehouse.append("graph_edges", [
        {"ds": ds, "user_id": f"u{n}", "item_id": "i", "rating": 4.0, "ts": when, "weight": 4.0}
        for ds, edges in ((dates[0], 2), (dates[-1], 7)) for n in range(edges)
    ])  # fmt: skip

    lakehouse.append("samples", [
        {"ds": ds, "split": "train", "sample_id": f"u{n}:1", "user_id": f"u{n}", "position": 1,
         "history": ["i"], "target_item_id": "j", "target_ts": when}
        for k, ds in enumerate(dates) for n in range(10 * (k + 1))
    ])  # fmt: skip

    lines = ar.cost_table(lakehouse.root, dates).splitlines()
    assert lines[0] == ("Replay of 4 dates 1997-10-06 .. 1997-11-03; graph edges 2 on the "
                        "first date, 7 on the last (3.5x).")  # fmt: skip
    body = {line.split(" | ")[0][2:]: line for line in lines[4:] if line.startswith("| ")}
    assert list(body) == list(ar.DATA_JOBS)
    # Dates 0, 1, 3 then 1, 3, 4 (date 2 is out): 11.33 s and 12.67 s; the slope of
    # (10, 11, 13, 14) over their positions in the table is 1.4 s a date.
    assert body["traces"] == "| traces | 11.3 | 12.7 | 1.12 | +1.40 | 500 | 500 | 1.00 |"
    assert lines[-1] == ("Not in the table (a data job without a successful run): "
                         "1997-10-20")  # fmt: skip
    # Samples of the dates in the table (0, 1, 3 then 1, 3, 4): 10, 20, 40 then 20, 40, 50.
    assert lines[-5] == (
        "Samples of a date (the unit of work of samples, chains, evidence, "
        "traces): 23 over the first 3 dates, 37 over the last 3 (1.57x)."
    )
    # The rows start at 12:01 .. 12:29, one a minute; the last (the 5th date's traces)
    # runs 14 s: 28 min 14 s over the 4 dates in the table.
    assert lines[-3].startswith("From the first task's start to the last's end: 0.5 h, 7.1 min")
    few = ar.cost_table(lakehouse.root, dates[:3])
    assert few.startswith("Cost over history: 2 of 3 dates have a successful run")
