"""bench.replay: which job_runs row is which bench job, and the tables it prints."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bench import replay

DATES = ["1997-10-06", "1997-10-13", "1997-10-20", "1997-10-27"]


def run_row(job: str, ds: str, argv: list[str], seconds: float, minute: int, **extra) -> dict:
    start = dt.datetime(2026, 11, 30, 12, minute, tzinfo=dt.UTC)
    return {
        "ds": ds, "job": job, "run_id": f"{job}-{ds}-{minute}", "status": "success",
        "started_at": start, "ended_at": start + dt.timedelta(seconds=seconds),
        "elapsed_s": seconds, "inputs": None, "outputs": None,
        "config": json.dumps(["--ds", ds, *argv]), "report": None, "error": None,
        "git_commit": None, "host": "h", "pid": 1, "peak_rss_mb": 100.0,
        "jvm_peak_rss_mb": 400.0, **extra,
    }  # fmt: skip


def test_one_job_in_two_roles_is_told_apart_by_its_options(lakehouse):
    """Evidence runs as ``evidence`` for the samples and for serving; each bench job gets
    its own row, the newest successful one, and a failed rerun does not replace it."""
    rows = []
    for k, ds in enumerate(DATES):
        rows += [
            run_row("evidence", ds, ["--scope", "samples"], 10.0 + k, 4 * k),
            run_row("evidence", ds, ["--scope", "serve"], 20.0 + k, 4 * k + 1),
            run_row("graph", ds, [], 5.0, 4 * k + 2),
        ]
    rows.append(run_row("evidence", DATES[0], ["--scope", "samples"], 99.0, 50))  # a rerun
    rows.append(run_row("graph", DATES[0], [], 77.0, 51, status="failed"))
    rows.append(run_row("graph", "1999-01-01", [], 1.0, 52))  # not a replayed date
    lakehouse.append("job_runs", rows)

    got = replay.job_rows(lakehouse.root, DATES, ["evidence", "evidence_serve", "graph"])
    assert set(got) == {(j, d) for j in ("evidence", "evidence_serve", "graph") for d in DATES}
    assert got[("evidence", DATES[0])]["elapsed_s"] == 99.0  # the newest run of that role
    assert [got[("evidence", d)]["elapsed_s"] for d in DATES[1:]] == [11.0, 12.0, 13.0]
    assert [got[("evidence_serve", d)]["elapsed_s"] for d in DATES] == [20.0, 21.0, 22.0, 23.0]
    assert got[("graph", DATES[0])]["elapsed_s"] == 5.0  # the failed rerun is not a sample

    wall = {(j, d): 1.0 for j in ("evidence_serve",) for d in DATES}
    (s,) = replay.summarise(got, DATES, ["evidence_serve"], wall)
    # first three dates 20, 21, 22; last three 21, 22, 23; one second more per date.
    assert s["s_first3"] == pytest.approx(21.0) and s["s_last3"] == pytest.approx(22.0)
    assert s["s_ratio"] == pytest.approx(22.0 / 21.0)
    assert s["s_per_date"] == pytest.approx(1.0)
    assert s["mib_first3"] == s["mib_last3"] == 500.0  # Python + JVM
    assert s["wall_s_total"] == 4.0


def test_scoring_on_the_first_and_last_date_is_its_own_table(lakehouse):
    lakehouse.append(
        "job_runs",
        [
            run_row("score", DATES[0], ["--mode", "serve"], 40.0, 1,
                    report=json.dumps({"users": 20}), peak_rss_mb=900.0),
            run_row("score", DATES[-1], ["--mode", "serve"], 50.0, 2,
                    report=json.dumps({"users": 20}), peak_rss_mb=1100.0),
            run_row("score", DATES[-1], ["--mode", "eval"], 5.0, 3),  # another mode
        ],
    )  # fmt: skip
    rows = replay.job_rows(lakehouse.root, DATES, ["score"])
    lines = replay.score_table(rows, DATES[0], DATES[-1], 20).splitlines()
    assert "--max-users 20" in lines[0]
    assert lines[-3] == "| 1997-10-06 (first) | 20 | 40.0 | 1300 |"
    assert lines[-2] == "| 1997-10-27 (last) | 20 | 50.0 | 1500 |"
    assert lines[-1] == "| ratio last / first | | 1.25 | 1.15 |"


def test_options_are_checked_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        replay.main(["--score-users", "5", "--jobs", "ingest,graph"])
    assert "--score-users needs the retrieval and evidence_serve jobs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        replay.main(["--jobs", "ingest,score"])  # scoring is not a per-date data job
    assert "unknown jobs ['score']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        replay.main(["--jobs", "ingest,graph", "--between-jobs", "ingest,traces"])
    assert "--between-jobs ['traces'] are not in --jobs" in capsys.readouterr().err


def test_between_jobs_run_on_the_middle_dates_and_every_job_on_the_ends(monkeypatch):
    ran: list[tuple[str, str]] = []

    def fake_run(job, ds, lakehouse, extra=()):
        ran.append((job, ds))
        return 1.0

    class Stop(Exception):
        pass

    def stop(*args):
        raise Stop

    monkeypatch.setattr(replay, "run_job", fake_run)
    monkeypatch.setattr(replay, "job_rows", stop)
    with pytest.raises(Stop):
        replay.main(["--dates", "4", "--every-days", "1", "--jobs", "ingest,graph,traces",
                     "--between-jobs", "graph,ingest", "--lakehouse", "unused"])  # fmt: skip
    first, second, third, last = replay.replay_dates("1997-10-06", 4, 1)
    assert ran == [
        ("ingest", first), ("graph", first), ("traces", first),
        ("ingest", second), ("graph", second),  # in --jobs order, not --between-jobs'
        ("ingest", third), ("graph", third),
        ("ingest", last), ("graph", last), ("traces", last),
    ]  # fmt: skip


def test_a_job_run_on_the_ends_only_gets_a_first_against_last_table(lakehouse):
    lakehouse.append("job_runs", [
        run_row("traces", DATES[0], ["--teacher", "template"], 4.0, 1),
        run_row("traces", DATES[-1], ["--teacher", "template"], 5.0, 2, peak_rss_mb=300.0),
    ])  # fmt: skip
    rows = replay.job_rows(lakehouse.root, DATES, ["traces"])
    lines = replay.endpoint_table(rows, DATES[0], DATES[-1], ["traces"]).splitlines()
    assert lines[0] == "Jobs run on the first and the last date only (1997-10-06, 1997-10-27):"
    # 100 + 400 MiB on the first date, 300 + 400 on the last.
    assert lines[-1] == "| traces | 4.0 | 5.0 | 1.25 | 500 | 700 | 1.40 |"


def test_reused_history_skips_only_middle_runs_that_already_succeeded(monkeypatch, capsys):
    ran: list[tuple[str, str]] = []
    first, second, third, last = replay.replay_dates("1997-10-06", 4, 1)
    seen: list[list[str]] = []

    def fake_replayed(lakehouse, dates, jobs):
        seen.append(dates)
        # ingest of the second date and both jobs of the last one ran before; graph of
        # the second date did not (a history built up to a failure).
        return {("ingest", second), ("ingest", third), ("graph", third)}

    class Stop(Exception):
        pass

    def stop(*args):
        raise Stop

    monkeypatch.setattr(replay, "replayed", fake_replayed)

    def fake_run(job, ds, lakehouse, extra=()):
        ran.append((job, ds))
        return 1.0

    monkeypatch.setattr(replay, "run_job", fake_run)
    monkeypatch.setattr(replay, "job_rows", stop)
    argv = ["--dates", "4", "--every-days", "1", "--jobs", "ingest,graph,traces",
            "--between-jobs", "ingest,graph", "--lakehouse", "unused"]  # fmt: skip
    with pytest.raises(Stop):
        replay.main([*argv, "--reuse-history"])
    assert seen == [[second, third]]  # the ends are never looked up: they always run
    assert ran == [
        ("ingest", first), ("graph", first), ("traces", first),
        ("graph", second),
        ("ingest", last), ("graph", last), ("traces", last),
    ]  # fmt: skip
    with pytest.raises(SystemExit):
        replay.main([a for a in argv if a not in ("--lakehouse", "unused")] + ["--reuse-history"])
    assert "--reuse-history and --history-only need --lakehouse" in capsys.readouterr().err


def test_history_only_builds_the_first_and_middle_dates_here_and_times_nothing(monkeypatch, capsys):
    first, second, third, _last = replay.replay_dates("1997-10-06", 4, 1)
    here: list[tuple[str, str]] = []
    monkeypatch.setattr(replay, "replayed", lambda lakehouse, dates, jobs: {("ingest", second)})
    monkeypatch.setattr(replay, "run_job_here", lambda job, ds, lh: here.append((job, ds)))

    def no_process(*args, **kwargs):
        raise AssertionError("--history-only runs no job in a process of its own")

    monkeypatch.setattr(replay, "run_job", no_process)
    argv = ["--dates", "4", "--every-days", "1", "--jobs", "ingest,graph,traces",
            "--between-jobs", "graph,ingest", "--lakehouse", "L"]  # fmt: skip
    assert replay.main([*argv, "--history-only"]) == 0
    # Date order, --jobs order within a date, the last date left to the timed call, and
    # the run that already succeeded not made again.
    assert here == [("ingest", first), ("graph", first), ("graph", second),
                    ("ingest", third), ("graph", third)]  # fmt: skip
    assert "5 job runs made" in capsys.readouterr().out
    for extra in (["--control"], ["--score-users", "3"], ["--reuse-history"]):
        with pytest.raises(SystemExit):
            replay.main([*argv, "--jobs", "ingest,graph,retrieval,evidence_serve",
                         "--history-only", *extra])  # fmt: skip
        assert "--history-only builds history and stops" in capsys.readouterr().err


def test_a_job_run_here_that_fails_stops_the_build(monkeypatch):
    import types

    calls: list[list[str]] = []

    def main(argv):
        calls.append(argv)
        return 1

    monkeypatch.setattr("importlib.import_module", lambda name: types.SimpleNamespace(main=main))
    with pytest.raises(SystemExit, match="evidence_serve 1997-10-06 failed"):
        replay.run_job_here("evidence_serve", "1997-10-06", "L")
    # The job's own options travel with it: the serve role of the evidence job.
    assert calls == [["--ds", "1997-10-06", "--lakehouse", "L", "--scope", "serve"]]


def test_replayed_is_empty_for_a_new_lakehouse_and_holds_successes(lakehouse):
    assert replay.replayed(lakehouse.root, DATES, ["graph"]) == set()
    lakehouse.append("job_runs", [
        run_row("graph", DATES[1], [], 5.0, 1),
        run_row("graph", DATES[2], [], 5.0, 2, status="failed"),
    ])  # fmt: skip
    assert replay.replayed(lakehouse.root, DATES, ["graph", "ingest"]) == {("graph", DATES[1])}


def test_the_control_table_sets_the_last_date_with_all_dates_against_one(lakehouse, tmp_path):
    from r2rec.lakehouse import Lakehouse

    lakehouse.append("job_runs", [
        run_row("traces", DATES[-1], ["--teacher", "template"], 6.0, 1, peak_rss_mb=600.0),
        run_row("score", DATES[-1], ["--mode", "serve"], 30.0, 2, jvm_peak_rss_mb=None),
    ])  # fmt: skip
    control = Lakehouse(str(tmp_path / "control"))
    control.append("job_runs", [
        run_row("traces", DATES[-1], ["--teacher", "template"], 4.0, 3),
        run_row("score", DATES[-1], ["--mode", "serve"], 30.0, 4, jvm_peak_rss_mb=None),
    ])  # fmt: skip
    jobs = ["traces", "score"]
    rows = replay.job_rows(lakehouse.root, DATES, jobs)
    ran = replay.job_rows(control.root, DATES[-1:], jobs)
    lines = replay.control_table(rows, ran, DATES[-1], jobs, 60).splitlines()
    assert lines[0].startswith("The last date, 1997-10-27, with 60 dates in the tables and with 1")
    assert "| s, 1 date | s, 60 dates |" in lines[2]
    # 100 + 400 MiB with one date; 600 + 400 with sixty.
    assert lines[-2] == "| traces | 4.0 | 6.0 | 1.50 | 500 | 1000 | 2.00 |"
    assert lines[-1] == "| score | 30.0 | 30.0 | 1.00 | 100 | 100 | 1.00 |"  # no JVM
