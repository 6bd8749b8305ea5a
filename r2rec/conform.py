"""Schema conformance: make data match a table contract, or say which column does not.

Only lossless, unambiguous conversions are applied (integer widening, string flavours,
timestamp units); anything else fails naming the offending column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from r2rec.contracts import TableSpec
from r2rec.errors import R2RecError, SchemaMismatchError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import DataFrame


def arrow_cast_allowed(src: pa.DataType, dst: pa.DataType) -> bool:
    import pyarrow.types as t

    if src.equals(dst) or t.is_null(src):
        return True
    if t.is_dictionary(src):
        return arrow_cast_allowed(src.value_type, dst)
    if t.is_integer(src) and (t.is_integer(dst) or t.is_floating(dst)):
        return True
    if t.is_floating(src) and t.is_floating(dst):
        return True
    if t.is_string(src) or t.is_large_string(src) or t.is_string_view(src):
        return t.is_string(dst)
    if t.is_timestamp(src) and t.is_timestamp(dst):
        return True
    if (t.is_list(src) or t.is_large_list(src)) and t.is_list(dst):
        return arrow_cast_allowed(src.value_type, dst.value_type)
    if t.is_struct(src) and t.is_struct(dst):
        src_fields = {src.field(k).name: src.field(k).type for k in range(src.num_fields)}
        return {dst.field(k).name for k in range(dst.num_fields)} == set(src_fields) and all(
            arrow_cast_allowed(src_fields[dst.field(k).name], dst.field(k).type)
            for k in range(dst.num_fields)
        )
    if t.is_map(src) and t.is_map(dst):
        return arrow_cast_allowed(src.key_type, dst.key_type) and arrow_cast_allowed(
            src.item_type, dst.item_type
        )
    return False


def conform_arrow(spec: TableSpec, data: Any) -> pa.Table:
    """Return ``data`` as an Arrow table with exactly the contract's schema.

    Only lossless, unambiguous conversions are applied (integer widening, string
    flavours, timestamp units); anything else fails with an error that names the
    offending column. Naive timestamps are taken to be UTC.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    target = spec.arrow_schema()
    if isinstance(data, list | tuple) and not data:
        # No rows is a real outcome (a teacher whose every trace failed): it must clear
        # the partition, not fail because an empty list has no columns.
        return target.empty_table()
    table = _to_arrow(data)
    have = set(table.column_names)
    for name in spec.column_names:
        if name not in have:
            raise SchemaMismatchError(spec.name, name, "is missing")
    for name in table.column_names:
        if name not in target.names:
            raise SchemaMismatchError(spec.name, name, "is not in the table's contract")
    arrays = []
    for field in target:
        col = table.column(field.name)
        if not arrow_cast_allowed(col.type, field.type):
            raise SchemaMismatchError(
                spec.name, field.name, f"has type {col.type}, expected {field.type}"
            )
        if pa.types.is_timestamp(col.type) and col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")
        try:
            col = col.cast(field.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaMismatchError(
                spec.name, field.name, f"cannot be converted to {field.type}: {exc}"
            ) from None
        if not field.nullable and col.null_count:
            raise SchemaMismatchError(
                spec.name, field.name, f"has {col.null_count} null value(s) but is not nullable"
            )
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=target)


def _to_arrow(data: Any) -> pa.Table:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "to_arrow") and not hasattr(data, "sparkSession"):
        return data.to_arrow()
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, list):
        return pa.Table.from_pylist(data)
    raise R2RecError(f"cannot write data of type {type(data).__name__}")


def _spark_cast_allowed(src: Any, dst: Any) -> bool:
    from pyspark.sql import types as T

    if src == dst or isinstance(src, T.NullType):
        return True
    ints = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    if isinstance(src, ints) and isinstance(dst, (*ints, T.DoubleType)):
        return True
    if isinstance(src, T.FloatType) and isinstance(dst, T.DoubleType):
        return True
    if isinstance(src, T.TimestampNTZType) and isinstance(dst, T.TimestampType):
        return True
    if isinstance(src, T.ArrayType) and isinstance(dst, T.ArrayType):
        return _spark_cast_allowed(src.elementType, dst.elementType)
    if isinstance(src, T.MapType) and isinstance(dst, T.MapType):
        return _spark_cast_allowed(src.keyType, dst.keyType) and _spark_cast_allowed(
            src.valueType, dst.valueType
        )
    return False


def conform_spark(spec: TableSpec, df: DataFrame) -> DataFrame:
    """Select the contract's columns in order, cast losslessly, or fail naming the column."""
    from pyspark.sql import functions as F

    fields = {f.name: f.dataType for f in df.schema.fields}
    for name in spec.column_names:
        if name not in fields:
            raise SchemaMismatchError(spec.name, name, "is missing")
    for name in fields:
        if name not in spec.column_names:
            raise SchemaMismatchError(spec.name, name, "is not in the table's contract")
    cols = []
    for target in spec.spark_schema().fields:
        src = fields[target.name]
        if not _spark_cast_allowed(src, target.dataType):
            raise SchemaMismatchError(
                spec.name,
                target.name,
                f"has type {src.simpleString()}, expected {target.dataType.simpleString()}",
            )
        cols.append(F.col(target.name).cast(target.dataType).alias(target.name))
    return df.select(*cols)
