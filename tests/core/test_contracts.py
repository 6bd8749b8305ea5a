from __future__ import annotations

import pyarrow as pa
import pytest

from r2rec.config import ds_end, ds_start, lakehouse_root, parse_ds
from r2rec.contracts import TABLES, Column, TableSpec, get_table, to_arrow, to_spark
from r2rec.errors import R2RecError


def test_every_contract_is_consistent_in_both_engines():
    for spec in TABLES.values():
        arrow, spark = spec.arrow_schema(), spec.spark_schema()
        assert arrow.names == spark.fieldNames() == spec.column_names
        assert set(spec.partition_by) <= set(spec.column_names)
        assert spec.properties["r2rec.schema_version"] == str(spec.schema_version)


def test_type_notation():
    assert to_arrow("map<string,string>") == pa.map_(pa.string(), pa.string())
    assert to_arrow("array<string>") == pa.list_(pa.string())
    assert to_arrow("timestamp") == pa.timestamp("us", tz="UTC")
    assert to_spark("array<int64>").simpleString() == "array<bigint>"
    assert to_spark("map<string,double>").simpleString() == "map<string,double>"
    with pytest.raises(ValueError, match="unsupported contract type 'decimal'"):
        to_arrow("decimal")


def test_bad_contracts_are_refused():
    with pytest.raises(ValueError, match="'nope' is not a column"):
        TableSpec("t", "ops", (Column("a", "string"),), partition_by=("nope",))
    with pytest.raises(ValueError, match="duplicate column"):
        TableSpec("t", "ops", (Column("a", "string"), Column("a", "int64")))


def test_silver_contracts_have_the_columns_downstream_needs():
    assert {"user_id", "item_id", "rating", "ts"} <= set(get_table("interactions").column_names)
    assert {"item_id", "title", "text"} <= set(get_table("items").column_names)
    assert {"source", "raw_record", "reason", "ds"} <= set(get_table("quarantine").column_names)
    with pytest.raises(R2RecError, match="unknown table 'x'"):
        get_table("x")


def test_run_dates():
    assert parse_ds("2026-11-25") == "2026-11-25"
    assert ds_start("2026-11-25").isoformat() == "2026-11-25T00:00:00+00:00"
    assert ds_end("2026-11-25").isoformat() == "2026-11-26T00:00:00+00:00"
    for bad, msg in [
        (None, "required"),
        ("", "required"),
        ("2026-13-01", "calendar"),
        ("25/11/2026", "form"),
    ]:
        with pytest.raises(R2RecError, match=msg):
            parse_ds(bad)


def test_lakehouse_root_passes_object_store_uris_through(tmp_path):
    assert lakehouse_root("s3://b/x/") == "s3://b/x"
    assert lakehouse_root(f"file://{tmp_path}") == str(tmp_path)
