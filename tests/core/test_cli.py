"""The r2rec command line: output of each command and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

import r2rec as r2rec_package
from r2rec.cli import app

# Wide enough that rich never folds a cell, so each table row is one line.
runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", "R2REC_LAKEHOUSE": None})


def r2rec(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def table_rows(output: str) -> list[list[str]]:
    """Cells of the body rows of a rich table; a wrapped cell's lines are joined."""
    rows: list[list[str]] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if rows and not cells[0]:  # continuation of the row above
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return rows


def test_tables_lists_name_rows_and_version(lakehouse, write_partition):
    write_partition(["a", "b", "c"])
    write_partition(["d", "e"], ds="2026-01-02")

    result = r2rec("tables", "--lakehouse", lakehouse.root)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # Not a terminal (a log, a pipe): plain aligned text, the root in the title only.
    assert lines[0] == f"Tables in {lakehouse.root}"
    assert lines[1].split() == ["name", "layer", "rows", "version", "partitions", "schema",
                                "partitioned", "by"]  # fmt: skip
    assert set(lines[2].replace(" ", "")) == {"-"}
    assert [ln.split() for ln in lines[3:]] == [
        ["interactions", "silver", "5", "2", "2", "1", "ds,", "source"]
    ]
    assert max(len(ln) for ln in lines[1:]) <= 80


def test_tables_on_an_empty_lakehouse(tmp_path):
    result = r2rec("tables", "--lakehouse", str(tmp_path))

    assert result.exit_code == 0
    assert result.stdout.startswith(f"No tables under {tmp_path} yet")


def test_lakehouse_defaults_to_the_environment(lakehouse, write_partition):
    write_partition(["a", "b"])

    result = runner.invoke(
        app,
        ["sql", "SELECT count(*) AS n FROM interactions", "-f", "csv"],
        env={"R2REC_LAKEHOUSE": lakehouse.root},
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == "n\n2\n"


def test_sql_prints_a_table(lakehouse, write_partition):
    write_partition(["a", "b", "a"])

    result = r2rec(
        "sql",
        "SELECT user_id, count(*) AS n FROM interactions GROUP BY 1 ORDER BY 1",
        "--lakehouse",
        lakehouse.root,
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["user_id  n", "-------  -", "a        2", "b        1",
                                          "2 row(s)"]  # fmt: skip


def test_long_values_are_cut_not_wrapped_and_a_terminal_gets_the_same(
    lakehouse, write_partition, monkeypatch
):
    from r2rec import cli

    write_partition(["a"])
    long = "x" * 300 + "\nsecond line"
    query = f"SELECT '{long}' AS reasoning, 1 AS n FROM interactions"
    lines = r2rec("sql", query, "--lakehouse", lakehouse.root).stdout.splitlines()
    assert len(lines) == 4  # header, rule, one row, the count: nothing wrapped
    assert lines[2].startswith("x" * (cli.CELL_WIDTH - 1) + "…")
    monkeypatch.setattr(cli, "_is_terminal", lambda: True)
    text = r2rec("sql", query, "--lakehouse", lakehouse.root).stdout
    row = next(ln for ln in text.splitlines() if "xxx" in ln)
    assert "…" in row and len([ln for ln in text.splitlines() if "xxx" in ln]) == 1


def test_sql_csv_and_json(lakehouse, write_partition):
    write_partition(["a", "b"])
    query = "SELECT user_id, rating, ts FROM interactions ORDER BY user_id"

    as_csv = r2rec("sql", query, "--lakehouse", lakehouse.root, "--format", "csv")
    as_json = r2rec("sql", query, "--lakehouse", lakehouse.root, "--format", "json")

    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.splitlines() == [
        "user_id,rating,ts",
        "a,0.0,2025-12-31T12:00:00+00:00",
        "b,1.0,2025-12-31T12:01:00+00:00",
    ]
    assert json.loads(as_json.stdout) == [
        {"user_id": "a", "rating": 0.0, "ts": "2025-12-31T12:00:00+00:00"},
        {"user_id": "b", "rating": 1.0, "ts": "2025-12-31T12:01:00+00:00"},
    ]


def test_sql_limit_cuts_and_says_so(lakehouse):
    query = "SELECT range AS k FROM range(10)"

    cut = r2rec("sql", query, "--lakehouse", lakehouse.root, "-f", "csv", "--limit", "3")
    whole = r2rec("sql", query, "--lakehouse", lakehouse.root, "-f", "csv", "--limit", "0")
    exact = r2rec("sql", query, "--lakehouse", lakehouse.root, "-f", "csv", "--limit", "10")

    assert cut.stdout == "k\n0\n1\n2\n"
    assert "showing the first 3 rows" in cut.stderr
    assert whole.stdout.splitlines() == ["k", *map(str, range(10))]
    assert exact.stdout.splitlines() == ["k", *map(str, range(10))]
    assert exact.stderr == ""


def test_sql_as_of_reads_an_old_version(lakehouse, write_partition):
    write_partition(["a", "b", "c"])
    write_partition(["x"])
    query = "SELECT count(*) AS n FROM interactions"

    old = r2rec("sql", query, "-L", lakehouse.root, "-f", "csv", "--as-of", "interactions=1")
    new = r2rec("sql", query, "-L", lakehouse.root, "-f", "csv")

    assert (old.stdout, new.stdout) == ("n\n3\n", "n\n1\n")


def test_bad_sql_is_one_red_line(lakehouse, write_partition):
    write_partition(["a"])

    result = r2rec("sql", "SELEC broken", "--lakehouse", lakehouse.root)

    assert_one_line_error(result, 'syntax error at or near "SELEC"')


def test_missing_table_names_the_available_ones(lakehouse, write_partition):
    write_partition(["a"])

    result = r2rec("sql", "SELECT * FROM items", "--lakehouse", lakehouse.root)

    assert_one_line_error(result, "items does not exist", "available tables: interactions")


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", 'Cannot access file "/etc/passwd"'),
        ("COPY (SELECT * FROM interactions) TO '{tmp}/leak.csv'", "operations are disabled"),
        ("ATTACH '{tmp}/other.duckdb'", "operations are disabled"),
        ("INSTALL httpfs", "operations are disabled"),
        ("LOAD httpfs", "Loading external extensions is disabled"),
        ("SET enable_external_access = true", "the configuration has been locked"),
    ],
)
def test_sql_outside_the_lakehouse_is_one_red_line(
    lakehouse, write_partition, tmp_path, query, fragment
):
    write_partition(["a"])
    before = sorted(tmp_path.rglob("*"))

    result = r2rec("sql", query.format(tmp=tmp_path), "--lakehouse", lakehouse.root)

    line = assert_one_line_error(result, fragment, "r2rec sql only reads the lakehouse's tables")
    assert "root:" not in line  # not a line of /etc/passwd
    assert sorted(tmp_path.rglob("*")) == before


def test_history_lists_every_commit_newest_first(lakehouse, write_partition):
    write_partition(["a", "b"])
    write_partition(["c"])

    result = r2rec("history", "interactions", "--lakehouse", lakehouse.root)

    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert [(r[0], r[2]) for r in rows] == [
        ("2", "WRITE"),
        ("1", "WRITE"),
        ("0", "CREATE TABLE"),  # schema and properties in one commit
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r[1]) for r in rows)
    assert "mode=Overwrite" in rows[0][3]


def test_history_limit(lakehouse, write_partition):
    write_partition(["a"])
    write_partition(["b"])

    result = r2rec("history", "interactions", "--limit", "1", "--lakehouse", lakehouse.root)

    assert [r[0] for r in table_rows(result.stdout)] == ["2"]


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ("interactions", "table 'interactions' does not exist at"),
        ("nosuch", "unknown table 'nosuch' (known: backtest_metrics, candidate_evidence,"),
    ],
)
def test_history_of_a_missing_table_is_one_red_line(tmp_path, table, fragment):
    result = r2rec("history", table, "--lakehouse", str(tmp_path))

    assert_one_line_error(result, fragment)


def test_bad_arguments_are_usage_errors(lakehouse):
    result = r2rec("sql", "SELECT 1", "--format", "xml", "--lakehouse", lakehouse.root)

    assert result.exit_code == 2
    assert "Usage:" in result.output


@pytest.mark.parametrize("job", ["ingest", "graph", "samples", "chains"])
def test_job_commands_forward_every_argument(monkeypatch, job):
    seen: list[list[str]] = []
    fake = types.ModuleType(f"spark_jobs.{job}")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, f"spark_jobs.{job}", fake)
    argv = ["--source", "csv", "--ds", "2026-01-01", "--path", "x.csv", "--help", "-h", "extra"]

    result = r2rec(job, *argv)

    assert seen == [argv]
    assert result.exit_code == 3


@pytest.mark.parametrize(("job", "option"), [("graph", "--ds"), ("chains", "--fanout")])
def test_job_help_is_the_jobs_own_parser(capsys, job, option):
    result = r2rec(job, "--help")

    assert result.exit_code == 0
    assert option in capsys.readouterr().out + result.output


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from r2rec.cli import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "heavy = {'pyspark', 'torch', 'deltalake', 'duckdb', 'pyarrow', 'pandas'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    repo = Path(r2rec_package.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout

    assert out.strip() == "[]"


def test_sql_warns_of_files_without_statistics_and_repair_stats_rewrites_them(
    lakehouse, monkeypatch
):
    from tests.core.test_lakehouse import events, write_files_without_ts_stats

    write_files_without_ts_stats(lakehouse, events("2026-01-01", ["a", "b"]), monkeypatch)
    query = "SELECT count(*) AS n FROM interactions WHERE ts >= TIMESTAMPTZ '2019-12-31 00:00+00'"

    hidden = r2rec("sql", query, "-L", lakehouse.root, "-f", "csv")
    assert hidden.stdout == "n\n0\n"  # the silent miss the warning is for
    assert " ".join(hidden.stderr.split()) == (
        "warning: interactions has 1 file(s) in 1 partition(s) without statistics for ts: a "
        "filter on them can miss rows. `r2rec repair-stats interactions` rewrites those "
        "partitions."
    )
    # A query that does not name the table says nothing about it.
    assert r2rec("sql", "SELECT 1 AS x", "-L", lakehouse.root, "-f", "csv").stderr == ""

    before = lakehouse.version("interactions")
    dry = r2rec("repair-stats", "--dry-run", "-L", lakehouse.root)
    assert dry.exit_code == 0 and lakehouse.version("interactions") == before
    assert re.search(r"interactions\s+ds=2026-01-01, source=s\s+1\s+ts\s+-", dry.stdout)

    done = r2rec("repair-stats", "interactions", "-L", lakehouse.root)
    assert done.exit_code == 0, done.output
    assert re.search(r"interactions\s+ds=2026-01-01, source=s\s+1\s+ts\s+2", done.stdout)
    fixed = r2rec("sql", query, "-L", lakehouse.root, "-f", "csv")
    assert (fixed.stdout, fixed.stderr) == ("n\n2\n", "")
    again = r2rec("repair-stats", "-L", lakehouse.root)
    assert "nothing to rewrite" in again.stdout

    assert_one_line_error(r2rec("repair-stats", "nope", "-L", lakehouse.root),
                          "unknown table 'nope'")  # fmt: skip
    assert_one_line_error(r2rec("repair-stats", "chains", "-L", lakehouse.root),
                          "table 'chains' does not exist")  # fmt: skip
