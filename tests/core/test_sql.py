"""r2rec.sql: DuckDB queries must see exactly the Delta snapshot, never stale files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from deltalake import write_deltalake

from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse
from r2rec.sql import connect, run_sql, table_uris


def test_overwritten_partition_is_not_read_twice(lakehouse, write_partition):
    write_partition(["a", "b", "c"])
    write_partition(["x"])
    # The first write's file is still on disk: a raw Parquet scan would count 4 rows.
    table_dir = Path(lakehouse.uri("interactions"))
    assert len(list(table_dir.rglob("*.parquet"))) == 2
    assert pads.dataset(table_dir, format="parquet", partitioning="hive").count_rows() == 4

    result = run_sql("SELECT count(*) AS n, min(user_id) AS u FROM interactions", lakehouse)

    assert result.to_pylist() == [{"n": 1, "u": "x"}]


def test_group_by_returns_exact_rows(lakehouse, write_partition):
    write_partition(["a", "b", "a", "c", "a", "b"])
    write_partition(["c", "d"], ds="2026-01-02")

    result = run_sql(
        "SELECT user_id, count(*) AS n, sum(rating) AS r FROM interactions "
        "GROUP BY user_id ORDER BY n DESC, user_id",
        lakehouse,
    )

    assert result.to_pylist() == [
        {"user_id": "a", "n": 3, "r": 0.0 + 2.0 + 4.0},
        {"user_id": "b", "n": 2, "r": 1.0 + 5.0},
        {"user_id": "c", "n": 2, "r": 3.0 + 0.0},
        {"user_id": "d", "n": 1, "r": 1.0},
    ]


def test_timestamps_come_back_in_utc(lakehouse, write_partition):
    write_partition(["a"])

    result = run_sql("SELECT ts FROM interactions", lakehouse)

    assert result.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert result.column("ts").to_pylist() == [datetime(2025, 12, 31, 12, 0, tzinfo=UTC)]


def test_time_travel_reads_the_old_version(lakehouse, write_partition):
    old = write_partition(["a", "b", "c"])
    new = write_partition(["x"])
    query = "SELECT count(*) AS n FROM interactions"

    assert (old, new) == (2, 3)
    assert run_sql(query, lakehouse, version={"interactions": old}).to_pylist() == [{"n": 3}]
    assert run_sql(query, lakehouse, version={"interactions": new}).to_pylist() == [{"n": 1}]
    assert run_sql(query, lakehouse).to_pylist() == [{"n": 1}]


def test_join_across_tables(lakehouse, write_partition):
    write_partition(["a", "b"])
    items = pa.table(
        {
            "item_id": ["i0", "i1"],
            "title": ["Heat", "Up"],
            "year": pa.array([1995, 2009], pa.int32()),
            "genres": [["Crime"], ["Animation", "Comedy"]],
            "text": ["Heat (1995)", "Up (2009)"],
            "ds": ["2026-01-01"] * 2,
            "source": ["test"] * 2,
        }
    )
    lakehouse.overwrite("items", items, partition={"ds": "2026-01-01", "source": "test"})

    result = run_sql(
        "SELECT i.user_id, t.title, len(t.genres) AS g FROM interactions i "
        "JOIN items t USING (item_id) ORDER BY i.user_id",
        lakehouse,
    )

    assert result.to_pylist() == [
        {"user_id": "a", "title": "Heat", "g": 1},
        {"user_id": "b", "title": "Up", "g": 2},
    ]


def test_limit_stops_after_n_rows_in_order(lakehouse):
    result = run_sql("SELECT range AS k FROM range(100000) ORDER BY k DESC", lakehouse, limit=3)

    assert result.column("k").to_pylist() == [99999, 99998, 99997]


def test_statement_without_result_gives_empty_table(lakehouse):
    assert run_sql("SET threads = 1", lakehouse).num_rows == 0


def test_other_delta_tables_under_the_root_are_queryable(lakehouse, write_partition):
    write_partition(["a"])
    write_deltalake(f"{lakehouse.root}/scratch", pa.table({"k": [1, 2, 3]}))
    (Path(lakehouse.root) / "not_a_table").mkdir()

    assert sorted(table_uris(lakehouse)) == ["interactions", "scratch"]
    assert run_sql("SELECT sum(k) AS s FROM scratch", lakehouse).to_pylist() == [{"s": 6}]


def test_connect_registers_one_view_per_table(lakehouse, write_partition):
    write_partition(["a", "b"])
    con = connect(lakehouse)
    try:
        views = con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        count = con.sql("SELECT count(*) FROM interactions").fetchall()
    finally:
        con.close()

    assert views == [("interactions",)]
    assert count == [(2,)]


def test_default_lakehouse_comes_from_the_environment(lakehouse, write_partition, monkeypatch):
    write_partition(["a", "b"])
    monkeypatch.setenv("R2REC_LAKEHOUSE", lakehouse.root)

    assert run_sql("SELECT count(*) AS n FROM interactions").to_pylist() == [{"n": 2}]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELEC broken", 'Parser Error: syntax error at or near "SELEC"'),
        ("SELECT nope FROM interactions", 'Binder Error: Referenced column "nope" not found'),
        (
            "SELECT * FROM interaction",
            "Catalog Error: Table with name interaction does not exist! "
            "(available tables: interactions)",
        ),
    ],
)
def test_duckdb_errors_become_one_line_r2rec_errors(lakehouse, write_partition, query, expected):
    write_partition(["a"])

    with pytest.raises(R2RecError) as err:
        run_sql(query, lakehouse)

    message = str(err.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert "LINE 1" not in message
    assert "Did you mean" not in message


def test_missing_table_in_empty_lakehouse_says_so(tmp_path):
    with pytest.raises(R2RecError, match=r"does not exist! \(the lakehouse has no tables\)$"):
        run_sql("SELECT * FROM interactions", Lakehouse(str(tmp_path / "empty")))


def test_time_travel_errors(lakehouse, write_partition):
    write_partition(["a"])

    with pytest.raises(R2RecError, match=r"cannot time-travel items: no such table"):
        run_sql("SELECT 1", lakehouse, version={"items": 0})
    with pytest.raises(R2RecError, match=r"cannot read version 7 of table 'interactions'"):
        run_sql("SELECT 1", lakehouse, version={"interactions": 7})
