"""Writing Spark DataFrames into Delta tables without the driver holding the rows.

Without delta-spark jars (our machines cannot reach Maven), executors write Parquet
files straight into the table directory and return a few hundred bytes of metadata per
file; the driver commits them in one transaction with delta-rs. With delta-spark on
the classpath (a cluster), Spark's own ``format("delta")`` is used instead.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from r2rec.contracts import TableSpec

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import SparkSession

SAFE_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_.:\-]+$")
# Marker that lets the driver recognise a contract violation raised inside an executor.
EXECUTOR_SCHEMA_ERROR = "R2REC_SCHEMA_ERROR"

FILE_META_SCHEMA = "path string, size long, partition_values string, stats string, num_records long"


def bounded(arrow_type: pa.DataType) -> bool:
    """Whether a file's statistics carry this column's min/max (see :func:`_file_stats`);
    ``Lakehouse.stats_gaps`` looks for files that lack what this promises."""
    import pyarrow.types as t

    return (t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_string(arrow_type)
            or t.is_large_string(arrow_type) or t.is_timestamp(arrow_type))  # fmt: skip


def _file_stats(table: pa.Table) -> str:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as t

    stats: dict[str, Any] = {
        "numRecords": table.num_rows,
        "nullCount": {},
        "minValues": {},
        "maxValues": {},
    }
    for name, col in zip(table.column_names, table.columns, strict=True):
        if t.is_nested(col.type):
            continue
        stats["nullCount"][name] = col.null_count
        # min/max only where their JSON form is unambiguous, so data skipping stays exact.
        # Strings need them too: delta-rs 1.6.6 prunes *every* file whose stats lack a
        # column filtered on, so a filter on a string column silently read 0 rows.
        # Timestamps too: without them a `ts >= ...` filter (the backtest's future window,
        # an analyst's SQL) read 0 rows of a Spark-written table.
        if col.null_count == len(col) or not bounded(col.type):
            continue
        if t.is_timestamp(col.type):
            micros = col.cast(pa.timestamp("us", tz=col.type.tz)).cast(pa.int64())
            mm = pc.min_max(micros).as_py()
            stats["minValues"][name] = _delta_timestamp(mm["min"], up=False)
            stats["maxValues"][name] = _delta_timestamp(mm["max"], up=True)
        else:
            mm = pc.min_max(col).as_py()
            if all(v is None or v == v for v in mm.values()):  # skip NaN
                stats["minValues"][name], stats["maxValues"][name] = mm["min"], mm["max"]
    return json.dumps(stats)


def _delta_timestamp(micros: int, *, up: bool) -> str:
    """A stats bound in Delta's form, ISO-8601 UTC in milliseconds. The log cannot hold
    microseconds, so a minimum rounds down and a maximum up: a bound that cut off its own
    file's last microseconds would let readers prune rows that match."""
    millis = -(-micros // 1000) if up else micros // 1000
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def make_partition_writer(spec: TableSpec, table_uri: str, run_id: str):
    """Build the function ``mapInArrow`` runs on each Spark partition."""

    def write(batches):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        batches = list(batches)
        if not batches:
            return
        data = pa.Table.from_batches(batches)
        if data.num_rows == 0:
            return
        target = spec.arrow_schema()
        for field in target:
            if not field.nullable and data.column(field.name).null_count:
                raise ValueError(
                    f"{EXECUTOR_SCHEMA_ERROR}|{spec.name}|{field.name}|"
                    "has null value(s) but is not nullable"
                )
        data = data.select(target.names).cast(target)
        fs, root = pafs.FileSystem.from_uri(table_uri)
        part_cols = list(spec.partition_by)
        data_cols = [c for c in target.names if c not in part_cols]
        groups = data.group_by(part_cols).aggregate([]).to_pylist() if part_cols else [{}]
        rows = []
        for values in groups:
            mask = None
            for col, val in values.items():
                cond = pc.is_null(data[col]) if val is None else pc.equal(data[col], val)
                mask = cond if mask is None else pc.and_(mask, cond)
            part = data if mask is None else data.filter(mask)
            part = part.select(data_cols)
            for col, val in values.items():
                if val is None or not SAFE_PARTITION_VALUE.match(str(val)):
                    raise ValueError(f"unsafe partition value {col}={val!r} in {spec.name}")
            rel_dir = "/".join(f"{col}={values[col]}" for col in part_cols)
            rel = f"{rel_dir}/" if rel_dir else ""
            rel += f"part-{run_id}-{uuid.uuid4().hex}.snappy.parquet"
            full = f"{root}/{rel}"
            fs.create_dir(full.rsplit("/", 1)[0], recursive=True)
            pq.write_table(part, full, filesystem=fs, compression="snappy")
            size = fs.get_file_info(full).size
            rows.append(
                {
                    "path": rel,
                    "size": size,
                    "partition_values": json.dumps({c: str(values[c]) for c in part_cols}),
                    "stats": _file_stats(part),
                    "num_records": part.num_rows,
                }
            )
        yield pa.RecordBatch.from_pylist(
            rows,
            schema=pa.schema(
                [
                    ("path", pa.string()),
                    ("size", pa.int64()),
                    ("partition_values", pa.string()),
                    ("stats", pa.string()),
                    ("num_records", pa.int64()),
                ]
            ),
        )

    return write


def spark_has_native_delta(spark: SparkSession) -> bool:
    """True when the session was configured with delta-spark (jars on the classpath)."""
    ext = spark.conf.get("spark.sql.extensions", "") or ""
    if "io.delta.sql.DeltaSparkSessionExtension" not in ext:
        return False
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]
    except Exception:
        return False
    return True
