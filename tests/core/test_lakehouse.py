"""Lakehouse semantics on real Delta tables (delta-rs), with Arrow and Spark inputs."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from r2rec.contracts import INTERACTIONS, QUARANTINE, TableSpec, _cols
from r2rec.errors import R2RecError, SchemaMismatchError, TableNotFoundError
from r2rec.lakehouse import Lakehouse

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def events(ds: str, users: list[str], source: str = "s", rating: float = 4.0) -> pa.Table:
    n = len(users)
    return pa.table(
        {
            "user_id": users,
            "item_id": [f"i{k}" for k in range(n)],
            "rating": [rating] * n,
            "ts": [T0] * n,
            "ds": [ds] * n,
            "source": [source] * n,
        }
    )


def rows(lakehouse: Lakehouse, table=INTERACTIONS, **kw) -> list[tuple]:
    t = lakehouse.read_arrow(table, **kw)
    return sorted(
        zip(t["ds"].to_pylist(), t["user_id"].to_pylist(), t["rating"].to_pylist(), strict=True)
    )


def test_root_comes_from_env_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("R2REC_LAKEHOUSE", str(tmp_path / "x"))
    assert Lakehouse().root == str(tmp_path / "x")
    monkeypatch.delenv("R2REC_LAKEHOUSE")
    assert Lakehouse().root == os.path.abspath("./lakehouse")
    assert Lakehouse("s3://bucket/lake/").root == "s3://bucket/lake"
    assert Lakehouse("s3://bucket/lake").uri("items") == "s3://bucket/lake/items"


def test_create_records_contract_properties(lakehouse):
    dt = lakehouse.ensure(INTERACTIONS)
    assert dt.version() == 0  # schema and properties in one commit
    conf = dt.metadata().configuration
    assert conf["r2rec.schema_version"] == "1"
    assert conf["r2rec.key"] == "source,user_id,item_id,ts"
    assert dt.metadata().partition_columns == ["ds", "source"]
    assert pa.schema(dt.schema()).field("ts").type == pa.timestamp("us", tz="UTC")


def test_partition_overwrite_replaces_exactly_that_partition(lakehouse):
    lakehouse.overwrite(
        INTERACTIONS,
        events("2026-01-01", ["a", "b"]),
        partition={"ds": "2026-01-01", "source": "s"},
    )
    lakehouse.overwrite(
        INTERACTIONS, events("2026-01-02", ["c"]), partition={"ds": "2026-01-02", "source": "s"}
    )
    lakehouse.overwrite(
        INTERACTIONS,
        events("2026-01-01", ["z"], rating=1.0),
        partition={"ds": "2026-01-01", "source": "s"},
    )
    assert rows(lakehouse) == [("2026-01-01", "z", 1.0), ("2026-01-02", "c", 4.0)]


def test_overwrite_rejects_rows_outside_the_partition_and_writes_nothing(lakehouse):
    lakehouse.overwrite(
        INTERACTIONS, events("2026-01-01", ["a"]), partition={"ds": "2026-01-01", "source": "s"}
    )
    before = lakehouse.version(INTERACTIONS)
    mixed = pa.concat_tables([events("2026-01-02", ["b"]), events("2026-01-03", ["c"])])
    with pytest.raises(R2RecError, match="1 row\\(s\\) outside the overwrite partition"):
        lakehouse.overwrite(INTERACTIONS, mixed, partition={"ds": "2026-01-02", "source": "s"})
    assert lakehouse.version(INTERACTIONS) == before
    assert rows(lakehouse) == [("2026-01-01", "a", 4.0)]


def test_predicate_overwrite_is_enforced_by_delta(lakehouse):
    lakehouse.overwrite(
        INTERACTIONS, events("2026-01-01", ["a"]), partition={"ds": "2026-01-01", "source": "s"}
    )
    with pytest.raises(R2RecError, match="outside the overwrite predicate"):
        lakehouse.overwrite(
            INTERACTIONS, events("2026-01-05", ["q"]), predicate="ds = '2026-01-01'"
        )
    assert rows(lakehouse) == [("2026-01-01", "a", 4.0)]


def test_whole_table_overwrite_is_refused(lakehouse):
    with pytest.raises(R2RecError, match="needs a partition or a predicate"):
        lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["a"]))


def test_rerun_of_a_partition_is_idempotent(lakehouse):
    data = events("2026-01-01", ["a", "b", "c"])
    part = {"ds": "2026-01-01", "source": "s"}
    v1 = lakehouse.overwrite(INTERACTIONS, data, partition=part)
    v2 = lakehouse.overwrite(INTERACTIONS, data, partition=part)
    assert v2 == v1 + 1
    assert rows(lakehouse, version=v1) == rows(lakehouse, version=v2)
    assert lakehouse.info(INTERACTIONS).rows == 3


def test_append_then_time_travel(lakehouse):
    v1 = lakehouse.append(INTERACTIONS, events("2026-01-01", ["a"]))
    v2 = lakehouse.append(INTERACTIONS, events("2026-01-01", ["b"]))
    assert [r[1] for r in rows(lakehouse, version=v1)] == ["a"]
    assert [r[1] for r in rows(lakehouse, version=v2)] == ["a", "b"]
    ops = [h["operation"] for h in lakehouse.history(INTERACTIONS)]
    assert ops[:2] == ["WRITE", "WRITE"]
    with pytest.raises(R2RecError, match="has no version 99"):
        lakehouse.read_arrow(INTERACTIONS, version=99)


def test_merge_upserts_by_key(lakehouse):
    lakehouse.append(INTERACTIONS, events("2026-01-01", ["a", "b"]))
    update = events("2026-01-01", ["a", "b", "c"], rating=2.0).slice(
        1
    )  # b (i1) updated, c (i2) new
    metrics = lakehouse.merge(INTERACTIONS, update)
    assert metrics["num_target_rows_updated"] == 1
    assert metrics["num_target_rows_inserted"] == 1
    assert rows(lakehouse) == [
        ("2026-01-01", "a", 4.0),
        ("2026-01-01", "b", 2.0),
        ("2026-01-01", "c", 2.0),
    ]


@pytest.mark.parametrize(
    ("mutate", "column", "problem"),
    [
        (lambda t: t.drop_columns(["rating"]), "rating", "is missing"),
        (
            lambda t: t.append_column("extra", pa.array([1])),
            "extra",
            "is not in the table's contract",
        ),
        (
            lambda t: t.set_column(2, "rating", pa.array(["4"])),
            "rating",
            "has type string, expected double",
        ),
        (
            lambda t: t.set_column(0, "user_id", pa.array([None], pa.string())),
            "user_id",
            "null value",
        ),
    ],
)
def test_wrong_schema_names_the_offending_column(lakehouse, mutate, column, problem):
    with pytest.raises(SchemaMismatchError) as err:
        lakehouse.append(INTERACTIONS, mutate(events("2026-01-01", ["a"])))
    assert err.value.column == column
    assert problem in str(err.value)
    assert f"column '{column}'" in str(err.value)


def test_lossless_conversions_are_applied(lakehouse):
    t = events("2026-01-01", ["a"])
    t = t.set_column(2, "rating", pa.array([3], pa.int32()))
    t = t.set_column(3, "ts", pa.array([datetime(2020, 1, 1)], pa.timestamp("ns")))  # naive = UTC
    lakehouse.append(INTERACTIONS, t)
    got = lakehouse.read_arrow(INTERACTIONS)
    assert got["rating"].to_pylist() == [3.0]
    assert got["ts"].to_pylist() == [T0]


def test_stored_schema_drift_is_detected(lakehouse):
    lakehouse.ensure(INTERACTIONS)
    drifted = TableSpec(
        name="interactions",
        layer="silver",
        columns=_cols(
            *[
                (c.name, "int64" if c.name == "rating" else c.type, c.nullable)
                for c in INTERACTIONS.columns
            ]
        ),
        partition_by=INTERACTIONS.partition_by,
        key=INTERACTIONS.key,
    )
    with pytest.raises(SchemaMismatchError, match="'rating' is stored as double"):
        lakehouse.ensure(drifted)


def test_an_extra_stored_column_is_refused_by_name_before_any_write(lakehouse):
    from deltalake import Field

    lakehouse.append(INTERACTIONS, events("2026-01-01", ["a"]))
    dt = lakehouse.delta_table(INTERACTIONS)
    dt.alter.add_columns([Field("note", "string", nullable=True)])
    version = lakehouse.version(INTERACTIONS)
    with pytest.raises(SchemaMismatchError, match="'note' is in the stored table but not in"):
        lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["b"]),
                            partition={"ds": "2026-01-01", "source": "s"})  # fmt: skip
    assert lakehouse.version(INTERACTIONS) == version  # nothing written, nothing dropped


def test_many_threads_creating_fresh_lakehouses_at_once_all_succeed(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    roots = [Lakehouse(str(tmp_path / f"lake{k}")) for k in range(10)]

    def create(lake: Lakehouse) -> int:
        return lake.ensure(INTERACTIONS).version()

    with ThreadPoolExecutor(max_workers=6) as pool:
        versions = list(pool.map(create, roots * 3))  # three creators per lakehouse
    assert versions == [0] * 30
    assert all(r.delta_table(INTERACTIONS).metadata().configuration["r2rec.schema_version"]
               == "1" for r in roots)  # fmt: skip


def test_a_table_left_without_its_properties_is_repaired_not_refused(lakehouse):
    from deltalake import DeltaTable

    # What the old two-commit creation left when it died after the first commit.
    DeltaTable.create(lakehouse.uri(INTERACTIONS), schema=INTERACTIONS.arrow_schema(),
                      partition_by=list(INTERACTIONS.partition_by))  # fmt: skip
    lakehouse.append(INTERACTIONS, events("2026-01-01", ["a"]))
    conf = lakehouse.delta_table(INTERACTIONS).metadata().configuration
    assert conf["r2rec.schema_version"] == "1" and rows(lakehouse) == [("2026-01-01", "a", 4.0)]


def test_a_partitions_fingerprint_changes_only_when_it_is_rewritten(lakehouse):
    part = {"ds": "2026-01-01", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["a"]), partition=part)
    first = lakehouse.partition_fingerprint(INTERACTIONS, part)
    other = {"ds": "2026-01-02", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, events("2026-01-02", ["b"]), partition=other)
    assert lakehouse.partition_fingerprint(INTERACTIONS, part) == first  # another date
    lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["a"]), partition=part)
    assert lakehouse.partition_fingerprint(INTERACTIONS, part) != first  # rewritten
    assert lakehouse.partition_fingerprint(INTERACTIONS, other) != first


def test_missing_table_is_a_clear_error(lakehouse):
    with pytest.raises(TableNotFoundError, match="table 'items' does not exist"):
        lakehouse.read_arrow("items")
    with pytest.raises(R2RecError, match="unknown table 'nope'"):
        lakehouse.read_arrow("nope")


def test_reads_go_through_the_log_not_the_directory(lakehouse):
    """A raw Parquet scan of the directory would also see the overwritten files."""
    import pyarrow.dataset as pds

    part = {"ds": "2026-01-01", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["a", "b"]), partition=part)
    lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["c", "d", "e"]), partition=part)
    raw = pds.dataset(
        lakehouse.uri(INTERACTIONS), format="parquet", partitioning="hive"
    ).count_rows()
    assert raw == 5  # the trap this layer exists to avoid
    assert lakehouse.read_arrow(INTERACTIONS).num_rows == 3


# --- Spark DataFrames ------------------------------------------------------------------------


def spark_events(spark, n: int, ds: str):
    return spark.range(n).selectExpr(
        "concat('u', id % 97) as user_id",
        "concat('i', id) as item_id",
        "cast(id % 5 + 1 as double) as rating",
        "timestamp_seconds(1577836800 + id) as ts",
        f"'{ds}' as ds",
        "'s' as source",
    )


def test_spark_write_never_collects_rows_to_the_driver(spark, lakehouse, monkeypatch):
    n = 200_000
    df = spark_events(spark, n, "2026-01-01").repartition(4)
    DataFrame = type(df)  # the classic (non-Connect) implementation class
    collected: list[int] = []
    real_collect = DataFrame.collect

    def spy_collect(self):
        out = real_collect(self)
        collected.append(len(out))
        return out

    def forbidden(*_a, **_k):
        raise AssertionError("rows were pulled to the driver")

    monkeypatch.setattr(DataFrame, "collect", spy_collect)
    for name in ("toPandas", "toArrow", "toLocalIterator", "take", "head"):
        monkeypatch.setattr(DataFrame, name, forbidden)
    lakehouse.overwrite(INTERACTIONS, df, partition={"ds": "2026-01-01", "source": "s"})
    monkeypatch.undo()

    # One metadata row per file written (4 tasks x 1 partition value), never the data.
    assert collected == [4]
    info = lakehouse.info(INTERACTIONS)
    assert info.rows == n
    last = lakehouse.history(INTERACTIONS, limit=1)[0]
    assert last["r2rec.writer"] == "spark-executors"
    t = lakehouse.read_arrow(INTERACTIONS)
    assert sum(t["rating"].to_pylist()) == sum(k % 5 + 1 for k in range(n))


def test_spark_partition_overwrite_rejects_outside_rows(spark, lakehouse):
    part = {"ds": "2026-01-01", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, spark_events(spark, 10, "2026-01-01"), partition=part)
    before = lakehouse.version(INTERACTIONS)
    with pytest.raises(R2RecError, match="rows outside the overwrite partition"):
        lakehouse.overwrite(INTERACTIONS, spark_events(spark, 10, "2026-01-09"), partition=part)
    assert lakehouse.version(INTERACTIONS) == before
    # the rejected write's files were removed, not left behind as orphans
    import pyarrow.dataset as pds

    assert (
        pds.dataset(lakehouse.uri(INTERACTIONS), format="parquet", partitioning="hive").count_rows()
        == 10
    )


def test_spark_rerun_and_read_back(spark, lakehouse):
    part = {"ds": "2026-01-01", "source": "s"}
    v1 = lakehouse.overwrite(INTERACTIONS, spark_events(spark, 50, "2026-01-01"), partition=part)
    v2 = lakehouse.overwrite(INTERACTIONS, spark_events(spark, 50, "2026-01-01"), partition=part)
    lakehouse.overwrite(
        INTERACTIONS,
        spark_events(spark, 7, "2026-01-02"),
        partition={"ds": "2026-01-02", "source": "s"},
    )
    assert rows(lakehouse, version=v1) == rows(lakehouse, version=v2)
    sdf = lakehouse.read_spark(spark, INTERACTIONS)
    assert sdf.columns == INTERACTIONS.column_names
    assert {r["ds"]: r["count"] for r in sdf.groupBy("ds").count().collect()} == {
        "2026-01-01": 50,
        "2026-01-02": 7,
    }
    only = lakehouse.read_spark(spark, INTERACTIONS, partitions=[("ds", ">", "2026-01-01")])
    assert only.count() == 7
    old = lakehouse.read_spark(spark, INTERACTIONS, version=v1)
    assert old.count() == 50
    empty = lakehouse.read_spark(spark, INTERACTIONS, partitions=[("ds", "=", "1999-01-01")])
    assert empty.count() == 0 and empty.columns == INTERACTIONS.column_names


def test_spark_written_files_can_be_filtered_on_string_columns(spark, lakehouse):
    import pyarrow.compute as pc

    part = {"ds": "2026-01-01", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, spark_events(spark, 300, "2026-01-01"), partition=part)
    dataset = lakehouse.arrow_dataset(INTERACTIONS)
    # file stats carry string min/max; without them delta-rs skipped every file
    assert dataset.to_table(filter=pc.field("user_id") == "u5").num_rows == 4  # 5, 102, 199, 296
    assert dataset.to_table(filter=pc.field("item_id") == "i299").num_rows == 1
    assert dataset.to_table(filter=pc.field("rating") > 4.5).num_rows == 60


def test_spark_written_files_can_be_filtered_on_timestamps(spark, lakehouse):
    """The replay's backtest and an analyst's ``WHERE ts >= ...`` read 0 rows: Spark-written
    files carried no ts statistics, and delta-rs prunes a file without them."""
    import datetime as dt

    import pyarrow.compute as pc

    from r2rec.sql import run_sql

    for ds, n in (("2026-01-01", 300), ("2026-01-02", 50)):
        events = spark_events(spark, n, ds).repartition(3)
        lakehouse.overwrite(INTERACTIONS, events, partition={"ds": ds, "source": "s"})
    # One event 1 microsecond into a millisecond, which Delta's stats cannot hold: it is
    # still found by a filter at its exact time (the bound's rounding: the test below).
    odd = spark.sql("SELECT 'u1' AS user_id, 'odd' AS item_id, 5.0D AS rating, "
                    "timestamp_micros(1577836800000000 + 400000001) AS ts, "
                    "'2026-01-03' AS ds, 's' AS source")  # fmt: skip
    lakehouse.overwrite(INTERACTIONS, odd, partition={"ds": "2026-01-03", "source": "s"})
    # ts of event id is 2020-01-01 00:00:00 + id seconds, on both dates; from 290 s on:
    # ids 290..299 of the first date and the odd event.
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    dataset = lakehouse.arrow_dataset(INTERACTIONS)
    ts = pc.field("ts")
    assert dataset.to_table(filter=ts >= start + dt.timedelta(seconds=290)).num_rows == 11
    assert dataset.to_table(filter=ts < start + dt.timedelta(seconds=10)).num_rows == 20
    at_odd = start + dt.timedelta(seconds=400, microseconds=1)
    assert dataset.to_table(filter=ts >= at_odd)["item_id"].to_pylist() == ["odd"]
    assert dataset.to_table(filter=ts > at_odd).num_rows == 0
    got = run_sql("SELECT count(*) AS n FROM interactions "
                  "WHERE ts >= TIMESTAMPTZ '2020-01-01 00:04:50+00'", lakehouse)  # fmt: skip
    assert got["n"].to_pylist() == [11]


def test_timestamp_stats_bound_the_files_rows_in_milliseconds():
    from r2rec.spark_writer import _delta_timestamp, _file_stats

    micros = 1577836800_000000 + 400_000001  # 2020-01-01 00:06:40.000001 UTC
    # A minimum rounds down and a maximum up: never a bound inside the file's own range.
    assert _delta_timestamp(micros, up=False) == "2020-01-01T00:06:40.000Z"
    assert _delta_timestamp(micros, up=True) == "2020-01-01T00:06:40.001Z"
    assert _delta_timestamp(micros - 1, up=True) == "2020-01-01T00:06:40.000Z"  # exact
    assert _delta_timestamp(-1, up=False) == "1969-12-31T23:59:59.999Z"
    table = pa.table({"ts": pa.array([micros, None, micros - 5_000_000],
                                     pa.timestamp("us", tz="UTC"))})  # fmt: skip
    stats = json.loads(_file_stats(table))
    assert (stats["minValues"]["ts"], stats["maxValues"]["ts"], stats["nullCount"]["ts"]) == (
        "2020-01-01T00:06:35.000Z",
        "2020-01-01T00:06:40.001Z",
        1,
    )
    nulls = pa.table({"ts": pa.array([None], pa.timestamp("us", tz="UTC"))})
    assert "ts" not in json.loads(_file_stats(nulls))["minValues"]


def test_spark_wrong_schema_names_the_column(spark, lakehouse):
    from pyspark.sql import functions as F

    df = spark_events(spark, 3, "2026-01-01").withColumn("rating", F.col("user_id"))
    with pytest.raises(
        SchemaMismatchError, match="column 'rating' has type string, expected double"
    ):
        lakehouse.overwrite(INTERACTIONS, df, partition={"ds": "2026-01-01", "source": "s"})
    nulls = spark_events(spark, 3, "2026-01-01").selectExpr(
        "cast(null as string) as user_id", "item_id", "rating", "ts", "ds", "source"
    )
    with pytest.raises(SchemaMismatchError, match="column 'user_id' has null value"):
        lakehouse.overwrite(INTERACTIONS, nulls, partition={"ds": "2026-01-01", "source": "s"})


def test_empty_spark_overwrite_clears_the_partition(spark, lakehouse):
    part = {"ds": "2026-01-01", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, spark_events(spark, 5, "2026-01-01"), partition=part)
    lakehouse.overwrite(INTERACTIONS, spark_events(spark, 5, "2026-01-01").limit(0), partition=part)
    assert lakehouse.read_arrow(INTERACTIONS).num_rows == 0


def test_an_empty_row_list_clears_the_partition(lakehouse):
    part = {"ds": "2026-01-01", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["u1", "u2"]), partition=part)
    lakehouse.overwrite(
        INTERACTIONS, events("2026-01-02", ["u3"]), partition={**part, "ds": "2026-01-02"}
    )
    lakehouse.overwrite(INTERACTIONS, [], partition=part)  # e.g. every trace rejected
    assert [r[1] for r in rows(lakehouse)] == ["u3"]


def test_unsafe_partition_values_are_refused(lakehouse):
    with pytest.raises(R2RecError, match="unsafe partition value"):
        lakehouse.overwrite(QUARANTINE, [], partition={"ds": "2026-01-01", "job": "../etc"})


def write_files_without_ts_stats(lakehouse: Lakehouse, data: pa.Table, monkeypatch) -> None:
    """Files as the Spark path wrote them before timestamp statistics: its own executor
    function, run in this process, with the old statistics (no ts min/max)."""
    from deltalake.transaction import AddAction

    from r2rec import spark_writer

    current = spark_writer._file_stats

    def old_stats(table):
        stats = json.loads(current(table))
        for bound in ("minValues", "maxValues"):
            stats[bound].pop("ts", None)
        return json.dumps(stats)

    monkeypatch.setattr(spark_writer, "_file_stats", old_stats)
    lakehouse.ensure(INTERACTIONS)
    writer = spark_writer.make_partition_writer(INTERACTIONS, lakehouse.uri(INTERACTIONS), "old")
    files = [r for batch in writer(data.to_batches()) for r in batch.to_pylist()]
    actions = [AddAction(f["path"], f["size"], json.loads(f["partition_values"]), 0, True,
                         f["stats"]) for f in files]  # fmt: skip
    lakehouse._commit_files(INTERACTIONS, actions, "append", None, None)
    monkeypatch.setattr(spark_writer, "_file_stats", current)


def test_partitions_without_ts_statistics_are_found_and_rewritten(lakehouse, monkeypatch):
    import datetime as dt

    import pyarrow.compute as pc

    late = T0 + dt.timedelta(days=3)
    old = pa.concat_tables([events("2026-01-01", ["a", "b"]), events("2026-01-02", ["c"])])
    old = old.set_column(3, "ts", pa.array([T0, late, late], pa.timestamp("us", tz="UTC")))
    write_files_without_ts_stats(lakehouse, old, monkeypatch)
    lakehouse.overwrite(INTERACTIONS, events("2026-01-03", ["d"]),
                        partition={"ds": "2026-01-03", "source": "s"})  # fmt: skip
    before = lakehouse.version(INTERACTIONS)
    after_t0 = pc.field("ts") > T0

    # The defect: the two old files are pruned under a ts filter; only "b", "c" match.
    assert lakehouse.arrow_dataset(INTERACTIONS).to_table(filter=after_t0).num_rows == 0
    gaps = lakehouse.stats_gaps(INTERACTIONS)
    assert gaps == [
        {"partition": {"ds": "2026-01-01", "source": "s"}, "files": 1, "columns": ["ts"]},
        {"partition": {"ds": "2026-01-02", "source": "s"}, "files": 1, "columns": ["ts"]},
    ]

    repaired = lakehouse.repair_stats(INTERACTIONS)
    assert [(g["partition"]["ds"], g["rows"]) for g in repaired] == [
        ("2026-01-01", 2), ("2026-01-02", 1)]  # fmt: skip
    assert lakehouse.version(INTERACTIONS) == before + 2  # one commit per partition
    assert lakehouse.stats_gaps(INTERACTIONS) == []
    found = lakehouse.arrow_dataset(INTERACTIONS).to_table(filter=after_t0)
    assert sorted(found["user_id"].to_pylist()) == ["b", "c"]
    # The same rows as before, every column; the untouched date kept its file.
    assert rows(lakehouse) == rows(lakehouse, version=before)
    assert lakehouse.read_arrow(INTERACTIONS).sort_by("user_id")["ts"].to_pylist() == [
        T0, late, late, T0]  # fmt: skip
    assert lakehouse.repair_stats(INTERACTIONS) == []  # nothing left: no commit
    assert lakehouse.version(INTERACTIONS) == before + 2


def reader(*tables: pa.Table) -> pa.RecordBatchReader:
    """Batches produced one by one, as a job that spools its rows hands them over."""
    batches = (b for t in tables for b in t.to_batches())
    return pa.RecordBatchReader.from_batches(tables[0].schema, batches)


def test_a_stream_of_batches_replaces_its_partition_in_one_commit(lakehouse):
    part = {"ds": "2026-01-01", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["old"]), partition=part)
    lakehouse.overwrite(
        INTERACTIONS, events("2026-01-02", ["kept"]), partition={**part, "ds": "2026-01-02"}
    )
    before = lakehouse.version(INTERACTIONS)
    # int64 ratings are conformed to the contract's float per batch, like a table's.
    first = events("2026-01-01", ["a", "b"]).set_column(2, "rating", pa.array([3, 5]))
    second = events("2026-01-01", ["c"]).set_column(2, "rating", pa.array([1]))
    version = lakehouse.overwrite(INTERACTIONS, reader(first, second), partition=part)
    assert version == before + 1
    assert rows(lakehouse) == [
        ("2026-01-01", "a", 3.0), ("2026-01-01", "b", 5.0), ("2026-01-01", "c", 1.0),
        ("2026-01-02", "kept", 4.0),
    ]  # fmt: skip
    empty = pa.RecordBatchReader.from_batches(first.schema, iter([]))
    lakehouse.overwrite(INTERACTIONS, empty, partition=part)  # no rows clears it too
    assert rows(lakehouse) == [("2026-01-02", "kept", 4.0)]


@pytest.mark.parametrize(
    "batches, error, match",
    [
        # A good batch is handed over before the one outside the partition.
        (
            [events("2026-01-01", ["a", "b"]), events("2026-01-09", ["x"])],
            R2RecError,
            "1 row\\(s\\) outside the overwrite partition",
        ),
        ([events("2026-01-01", ["a"]).drop_columns(["rating"])], SchemaMismatchError, "rating"),
    ],
)
def test_a_bad_batch_in_a_stream_writes_nothing_and_says_why(lakehouse, batches, error, match):
    part = {"ds": "2026-01-01", "source": "s"}
    lakehouse.overwrite(INTERACTIONS, events("2026-01-01", ["old"]), partition=part)
    before = lakehouse.version(INTERACTIONS)
    with pytest.raises(error, match=match):
        lakehouse.overwrite(INTERACTIONS, reader(*batches), partition=part)
    assert lakehouse.version(INTERACTIONS) == before
    assert rows(lakehouse) == [("2026-01-01", "old", 4.0)]
