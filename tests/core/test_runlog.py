"""Every job run leaves a job_runs row and a start and an end line, failures included."""

from __future__ import annotations

import json

import pytest

from r2rec import runlog
from r2rec.contracts import JOB_RUNS
from r2rec.errors import DataQualityError
from r2rec.jobs import run_main

from .conftest import DS


def rows(lakehouse) -> list[dict]:
    return sorted(lakehouse.read_arrow(JOB_RUNS).to_pylist(), key=lambda r: r["started_at"])


def test_a_successful_run_records_what_it_read_and_wrote(lakehouse, write_partition, capsys):
    write_partition(["u1", "u2"])
    read_at = lakehouse.version("interactions")

    def body():
        n = lakehouse.read_arrow("interactions").num_rows
        v = write_partition(["u1", "u2", "u3"])
        return {"rows": n, "version": v}

    argv = ["--ds", DS, "--hub-token", "hf_" + "a" * 34]
    code = run_main(body, job="graph", argv=argv, ds=DS, lakehouse=lakehouse.root)
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"rows": 2, "version": read_at + 1}
    (row,) = rows(lakehouse)
    assert row["job"] == "graph" and row["ds"] == DS and row["status"] == "success"
    assert dict(row["inputs"]) == {"interactions": read_at}
    assert dict(row["outputs"]) == {"interactions": read_at + 1}
    assert json.loads(row["report"]) == {"rows": 2, "version": read_at + 1}
    assert row["error"] is None
    # The command line is kept, its secret is not.
    assert json.loads(row["config"]) == ["--ds", DS, "--hub-token", "***"]
    assert row["ended_at"] >= row["started_at"] and row["elapsed_s"] >= 0
    assert row["peak_rss_mb"] > 10 and row["host"] and row["pid"] > 0
    start, end = [ln for ln in captured.err.splitlines() if ln.startswith("r2rec graph")]
    # The start line names the declared input with its version before the job read it.
    assert start == (
        f"r2rec graph ds={DS} run={row['run_id']} start; inputs: interactions@v{read_at}; "
        f"git {runlog.git_commit() or 'unknown'}"
    )
    assert end.startswith(f"r2rec graph ds={DS} run={row['run_id']} success in ")
    assert f"wrote interactions@v{read_at + 1};" in end


def test_an_operator_error_mid_job_is_recorded_with_its_line(lakehouse, write_partition, capsys):
    def body():
        write_partition(["u1"])
        raise DataQualityError("graph 2026-01-01: 3 edges have no timestamp")

    assert run_main(body, job="graph", argv=[], ds=DS, lakehouse=lakehouse.root) == 1
    err = capsys.readouterr().err
    (row,) = rows(lakehouse)
    assert row["status"] == "failed" and row["report"] is None
    assert row["error"] == "graph 2026-01-01: 3 edges have no timestamp"
    # What it wrote before failing is on record: the write happened.
    assert dict(row["outputs"]) == {"interactions": lakehouse.version("interactions")}
    assert "failed in" in err and "error: graph 2026-01-01: 3 edges have no timestamp" in err


def test_a_programming_error_is_recorded_and_keeps_its_traceback(lakehouse):
    from pathlib import Path

    Path(lakehouse.root).mkdir(parents=True)  # an existing lakehouse, no table yet

    def body():
        return {}["missing"]

    with pytest.raises(KeyError):
        run_main(body, job="samples", argv=[], ds=DS, lakehouse=lakehouse.root)
    (row,) = rows(lakehouse)
    assert row["status"] == "failed" and row["error"] == "KeyError: 'missing'"
    assert runlog.current() is None  # the next run in this process starts clean


def test_a_run_refused_before_writing_creates_no_lakehouse(tmp_path, capsys):
    from r2rec.errors import R2RecError

    def body():
        raise R2RecError("ingest --path '/etc' is outside the allowed ingest roots")

    root = tmp_path / "typo-lakehouse"
    assert run_main(body, job="ingest", argv=[], ds=DS, lakehouse=str(root)) == 1
    assert not root.exists()  # the refused run wrote nothing, not even its record
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "error: ingest --path '/etc' is outside the allowed ingest roots"
    assert err[-2].startswith(f"r2rec ingest ds={DS} run=") and " failed in " in err[-2]


def test_an_unwritable_record_does_not_change_the_outcome(tmp_path, capsys):
    target = tmp_path / "not-a-dir"
    target.write_text("a file where the lakehouse should be")

    assert run_main(lambda: {"ok": 1}, job="results", argv=[], ds=DS, lakehouse=str(target)) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ok": 1}
    assert "r2rec results: job_runs row not written" in captured.err


def test_parallel_runs_each_leave_one_row(lakehouse):
    import subprocess
    import sys

    code = (
        "import sys; from r2rec.jobs import run_main; "
        "sys.exit(run_main(lambda: {'shard': sys.argv[1]}, job='score', argv=sys.argv[1:], "
        f"ds='{DS}', lakehouse={lakehouse.root!r}))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k)]) for k in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert sorted(json.loads(r["report"])["shard"] for r in rows(lakehouse)) == ["0", "1", "2"]
    assert len({r["run_id"] for r in rows(lakehouse)}) == 3
