"""Delta Lake I/O for every stage: one interface, two backends.

* delta-rs (``deltalake``) is the default. It needs no JVM jars, so it works on
  machines without Maven access (ours) and against object stores.
* When a Spark session carries the delta-spark extension (a real cluster), Spark
  DataFrames are written and read with Spark's native ``format("delta")`` instead,
  with the same semantics (``replaceWhere`` for partition overwrites).

Large Spark DataFrames are never collected to the driver on the delta-rs path:
executors write Parquet files straight into the table directory and return only a
few bytes of file metadata each; the driver then commits those files in one Delta
transaction (``DeltaTable.create_write_transaction``).

Tables are always read through the Delta log. Reading the directory as plain Parquet
would also return files that later commits removed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from r2rec import progress, runlog
from r2rec.config import lakehouse_root
from r2rec.conform import arrow_cast_allowed, conform_arrow, conform_spark
from r2rec.contracts import TableSpec, get_table, to_arrow
from r2rec.errors import R2RecError, SchemaMismatchError, TableNotFoundError
from r2rec.spark_writer import (
    EXECUTOR_SCHEMA_ERROR,
    FILE_META_SCHEMA,
    SAFE_PARTITION_VALUE,
    bounded,
    make_partition_writer,
    spark_has_native_delta,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame, SparkSession

Filters = Sequence[tuple[str, str, Any]]
COMMIT_ATTEMPTS = 8  # retries of a Spark write's commit after concurrent commits


@dataclass(frozen=True)
class TableInfo:
    name: str
    uri: str
    version: int
    rows: int
    partitions: int
    schema_version: str


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def partition_predicate(partition: Mapping[str, Any]) -> str:
    """SQL predicate selecting exactly one partition, e.g. ``ds = '2026-11-25'``."""
    return " AND ".join(f"{col} = {_sql_literal(val)}" for col, val in partition.items())


def _check_partition(spec: TableSpec, partition: Mapping[str, Any]) -> None:
    for col, val in partition.items():
        if col not in spec.partition_by:
            raise R2RecError(f"table '{spec.name}': '{col}' is not a partition column")
        if val is None or val == "" or not SAFE_PARTITION_VALUE.match(str(val)):
            # Such values would need URL-encoding in file paths, or (empty) read back as
            # null; refuse rather than guess.
            raise R2RecError(f"table '{spec.name}': unsafe partition value {col}={val!r}")


def _matches(values: Mapping[str, Any], filters: Filters | None) -> bool:
    """Evaluate delta-rs style AND-ed (column, op, value) filters on partition values."""
    for col, op, want in filters or ():
        have = values.get(col)
        if op == "in":
            ok = have in want
        elif op == "not in":
            ok = have not in want
        elif have is None:
            ok = False
        else:
            ok = {
                "=": have == want,
                "==": have == want,
                "!=": have != want,
                "<": have < want,
                "<=": have <= want,
                ">": have > want,
                ">=": have >= want,
            }[op]
        if not ok:
            return False
    return True


# ----------------------------------------------------------------------------------------
# The lakehouse
# ----------------------------------------------------------------------------------------


class Lakehouse:
    """All tables of one deployment, under one root (local path or object-store URI)."""

    def __init__(self, root: str | None = None, storage_options: dict[str, str] | None = None):
        self.root = lakehouse_root(root)
        self.storage_options = storage_options

    def __repr__(self) -> str:
        return f"Lakehouse({self.root!r})"

    # --- locating -------------------------------------------------------------------------
    def uri(self, table: str | TableSpec) -> str:
        name = table.name if isinstance(table, TableSpec) else table
        return f"{self.root}/{name}"

    @staticmethod
    def _spec(table: str | TableSpec) -> TableSpec:
        return table if isinstance(table, TableSpec) else get_table(table)

    def exists(self, table: str | TableSpec) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.uri(self._spec(table)), self.storage_options)

    def delta_table(self, table: str | TableSpec, version: int | None = None) -> DeltaTable:
        from deltalake import DeltaTable

        spec = self._spec(table)
        if not self.exists(spec):
            raise TableNotFoundError(
                f"table '{spec.name}' does not exist at {self.uri(spec)} "
                "(run the job that writes it)"
            )
        try:
            return DeltaTable(self.uri(spec), version=version, storage_options=self.storage_options)
        except Exception as exc:  # delta-rs raises several types for a bad version
            if version is not None:
                raise R2RecError(f"table '{spec.name}' has no version {version}: {exc}") from None
            raise

    # --- creating -------------------------------------------------------------------------
    def ensure(self, table: str | TableSpec) -> DeltaTable:
        """Create the table from its contract if missing; check the contract if present."""
        from deltalake import DeltaTable

        spec = self._spec(table)
        if not self.exists(spec):
            try:
                # One commit: schema and properties together, so no reader ever sees the
                # table without its schema version (two commits left a crash or a
                # concurrent creator with "schema_version None ... migrate the table").
                DeltaTable.create(
                    self.uri(spec),
                    schema=spec.arrow_schema(),
                    mode="error",
                    partition_by=list(spec.partition_by) or None,
                    name=spec.name,
                    description=spec.doc,
                    configuration=spec.properties,
                    raise_if_key_not_exists=False,
                    storage_options=self.storage_options,
                )
            except Exception as exc:
                # Another writer created it first (e.g. two backfill dates at once).
                if not self.exists(spec):
                    raise R2RecError(f"could not create table '{spec.name}': {exc}") from exc
        dt = self.delta_table(spec)
        self._check_contract(spec, dt)
        return dt

    def _check_contract(self, spec: TableSpec, dt: DeltaTable) -> None:
        import pyarrow as pa

        found = pa.schema(dt.schema())
        expected = spec.arrow_schema()
        for field in expected:
            if field.name not in found.names:
                raise SchemaMismatchError(
                    spec.name, field.name, "is in the contract but not in the stored table"
                )
            stored = found.field(field.name).type
            if not arrow_cast_allowed(field.type, stored) or not arrow_cast_allowed(
                stored, field.type
            ):
                raise SchemaMismatchError(
                    spec.name, field.name, f"is stored as {stored}, contract says {field.type}"
                )
        for name in found.names:
            if name not in expected.names:
                # A write would drop it without a word (a Spark overwrite writes the
                # contract's columns): refuse, naming it.
                raise SchemaMismatchError(
                    spec.name, name, "is in the stored table but not in the contract"
                )
        stored_version = dt.metadata().configuration.get("r2rec.schema_version")
        if stored_version is None and set(found.names) == set(expected.names):
            # Created by a process that died before its properties commit (older code
            # wrote them separately): the schema is the contract's, so finish the job.
            dt.alter.set_table_properties(spec.properties, raise_if_not_exists=False)
            return
        if stored_version != str(spec.schema_version):
            raise R2RecError(
                f"table '{spec.name}' has schema_version {stored_version}, code expects "
                f"{spec.schema_version}: migrate the table before writing"
            )

    # --- writing --------------------------------------------------------------------------
    def append(self, table: str | TableSpec, data: Any) -> int:
        return self.write(table, data, mode="append")

    def overwrite(
        self,
        table: str | TableSpec,
        data: Any,
        *,
        partition: Mapping[str, Any] | None = None,
        predicate: str | None = None,
    ) -> int:
        """Replace exactly one partition (or predicate); rows outside it are rejected.

        With neither ``partition`` nor ``predicate`` nothing is replaced: overwriting a
        whole table is too destructive to be a default and is not offered here.
        """
        return self.write(table, data, mode="overwrite", partition=partition, predicate=predicate)

    def write(
        self,
        table: str | TableSpec,
        data: Any,
        *,
        mode: str,
        partition: Mapping[str, Any] | None = None,
        predicate: str | None = None,
    ) -> int:
        """Write Arrow/pandas/Spark data; returns the new table version."""
        spec = self._spec(table)
        if mode not in ("append", "overwrite"):
            raise R2RecError(f"unknown write mode '{mode}'")
        if partition is not None:
            _check_partition(spec, partition)
            if predicate is not None:
                raise R2RecError("give a partition or a predicate, not both")
        if mode == "overwrite" and partition is None and predicate is None:
            raise R2RecError(
                "overwrite needs a partition or a predicate (whole-table overwrite is refused)"
            )
        if _is_spark_df(data):
            version = self._write_spark(
                spec, data, mode=mode, partition=partition, predicate=predicate
            )
        elif _is_batch_reader(data):
            version = self._write_stream(spec, data, mode, partition, predicate)
        else:
            table = conform_arrow(spec, data)
            if partition is not None:
                _reject_outside_partition(spec, table, partition)
            version = self._write_arrow(spec, table, mode, partition, predicate)
        runlog.note_write(spec.name, version)
        return version

    def _write_arrow(
        self,
        spec: TableSpec,
        data: pa.Table | pa.RecordBatchReader,
        mode: str,
        partition: Mapping[str, Any] | None,
        predicate: str | None,
    ) -> int:
        from deltalake import write_deltalake

        self.ensure(spec)
        if partition is not None:  # its rows were checked by the caller, table or stream
            predicate = partition_predicate(partition)
        try:
            write_deltalake(
                self.uri(spec),
                data,
                mode=mode,
                predicate=predicate if mode == "overwrite" else None,
                storage_options=self.storage_options,
            )
        except Exception as exc:
            text = str(exc).lower()
            if "failed validation check" in text or "predicate" in text:
                raise R2RecError(
                    f"table '{spec.name}': rows outside the overwrite predicate "
                    f"[{predicate}]: {exc}"
                ) from None
            raise
        return self.delta_table(spec).version()

    def _write_stream(
        self,
        spec: TableSpec,
        reader: pa.RecordBatchReader,
        mode: str,
        partition: Mapping[str, Any] | None,
        predicate: str | None,
    ) -> int:
        """A stream of record batches, each conformed and checked as it passes, in one
        commit: memory holds a batch, not the table. A batch that fails its contract or
        falls outside the partition stops the write before the commit, so nothing is
        written, and its error is raised as it is (not as the writer's wrapper of it)."""
        import pyarrow as pa

        failed: list[BaseException] = []

        def conformed():
            try:
                for batch in reader:
                    table = conform_arrow(spec, batch)
                    if partition is not None:
                        _reject_outside_partition(spec, table, partition)
                    yield from table.to_batches()
            except Exception as exc:
                failed.append(exc)
                raise

        stream = pa.RecordBatchReader.from_batches(spec.arrow_schema(), conformed())
        try:
            return self._write_arrow(spec, stream, mode, partition, predicate)
        except Exception:
            if failed:
                raise failed[0] from None
            raise

    def _write_spark(
        self,
        spec: TableSpec,
        df: DataFrame,
        *,
        mode: str,
        partition: Mapping[str, Any] | None,
        predicate: str | None,
    ) -> int:
        df = conform_spark(spec, df)
        self.ensure(spec)
        where = partition_predicate(partition) if partition is not None else predicate
        progress.step(f"write {spec.name} {where}" if where else f"write {spec.name}")
        if spark_has_native_delta(df.sparkSession):
            writer = df.write.format("delta").mode(mode)
            if mode == "overwrite":
                writer = writer.option("replaceWhere", where)
            writer.save(self.uri(spec))
            return self.delta_table(spec).version()
        if predicate is not None:
            raise R2RecError(
                "Spark writes without delta-spark overwrite by partition only; pass partition="
            )
        return self._write_spark_files(spec, df, mode=mode, partition=partition)

    def _write_spark_files(
        self, spec: TableSpec, df: DataFrame, *, mode: str, partition: Mapping[str, Any] | None
    ) -> int:
        from deltalake.transaction import AddAction

        run_id = uuid.uuid4().hex[:12]
        writer = make_partition_writer(spec, self.uri(spec), run_id)
        try:
            # Only file metadata (a few hundred bytes per file) reaches the driver.
            files = df.mapInArrow(writer, FILE_META_SCHEMA).collect()
        except Exception as exc:
            msg = str(exc)
            if EXECUTOR_SCHEMA_ERROR in msg:
                _, table, column, problem = msg.split(EXECUTOR_SCHEMA_ERROR, 1)[1].split("|", 3)
                raise SchemaMismatchError(table, column, problem.splitlines()[0]) from None
            raise
        now_ms = int(time.time() * 1000)
        actions = []
        for f in files:
            values = json.loads(f["partition_values"])
            if partition is not None and any(values.get(k) != str(v) for k, v in partition.items()):
                self._delete_files([x["path"] for x in files], spec)
                raise R2RecError(
                    f"table '{spec.name}': rows outside the overwrite partition "
                    f"[{partition_predicate(partition)}], e.g. {values}; nothing was written"
                )
            actions.append(AddAction(f["path"], f["size"], values, now_ms, True, f["stats"]))
        filters = [(k, "=", str(v)) for k, v in (partition or {}).items()] or None
        return self._commit_files(spec, actions, mode, filters, partition)

    def _commit_files(self, spec, actions, mode, filters, partition) -> int:
        """Commit files others wrote, surviving concurrent writers of the same table.

        delta-rs' ``create_write_transaction`` records no predicate, so a concurrent
        commit makes ours fail (CommitFailedError) even on another partition, and two
        writers of one *new* partition both succeed, doubling its rows. Hence: an
        overwrite carries an idempotent transaction id per (table, partition) (app id +
        version), which makes a second writer of the same partition conflict; and after a
        conflict the snapshot is read again and the commit retried, its removes recomputed
        from that snapshot, so a disjoint partition just commits and the same partition
        is replaced exactly (the last writer wins, nothing doubles).
        """
        import random

        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import CommitProperties, Transaction

        from r2rec import faults

        app = None
        if mode == "overwrite" and partition:
            app = f"r2rec:{spec.name}:" + ",".join(f"{k}={v}" for k, v in partition.items())
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            dt = self.delta_table(spec)  # the snapshot this attempt's removes come from
            txns = None
            if app is not None:
                txns = [Transaction(app, (dt.transaction_version(app) or 0) + 1)]
            faults.barrier("lakehouse.before_commit")
            try:
                dt.create_write_transaction(
                    actions,
                    mode=mode,
                    schema=spec.arrow_schema(),
                    partition_by=list(spec.partition_by) or None,
                    partition_filters=filters if mode == "overwrite" else None,
                    commit_properties=CommitProperties(
                        custom_metadata={
                            "r2rec.writer": "spark-executors",
                            "r2rec.files": str(len(actions)),
                            "r2rec.attempt": str(attempt),
                        },
                        app_transactions=txns,
                    ),
                )
                return self.delta_table(spec).version()
            except CommitFailedError as exc:
                if attempt == COMMIT_ATTEMPTS:
                    raise R2RecError(
                        f"table '{spec.name}': commit failed {attempt} times against "
                        f"concurrent writers: {exc}"
                    ) from None
                time.sleep(random.uniform(0.05, 0.2) * attempt)
        raise AssertionError("unreachable")

    def _delete_files(self, rel_paths: list[str], spec: TableSpec) -> None:
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(self.uri(spec))
        for rel in rel_paths:
            fs.delete_file(f"{root}/{rel}")

    def merge(self, table: str | TableSpec, data: Any, key: Sequence[str] | None = None) -> dict:
        """Upsert by key: matching rows are updated, new rows inserted. Returns metrics.

        The source goes through the driver (delta-rs merges Arrow data), so MERGE is for
        dimension-sized data; large fact writes use partition overwrites.
        """
        spec = self._spec(table)
        key = tuple(key or spec.key)
        if not key:
            raise R2RecError(f"table '{spec.name}' has no key to merge on")
        if _is_spark_df(data):
            data = data.toArrow()
        source = conform_arrow(spec, data)
        dt = self.ensure(spec)
        on = " AND ".join(f"t.{k} = s.{k}" for k in key)
        metrics = (
            dt.merge(source=source, predicate=on, source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        runlog.note_write(spec.name, self.version(spec))
        return metrics

    # --- reading --------------------------------------------------------------------------
    def read_arrow(
        self,
        table: str | TableSpec,
        *,
        version: int | None = None,
        partitions: Filters | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        return self.arrow_dataset(table, version=version, partitions=partitions).to_table(
            columns=columns
        )

    def arrow_dataset(
        self,
        table: str | TableSpec,
        *,
        version: int | None = None,
        partitions: Filters | None = None,
    ):
        """A lazy ``pyarrow.dataset.Dataset`` of the table's live files (via the log)."""
        dt = self.delta_table(table, version)
        runlog.note_read(self._spec(table).name, dt.version())
        return dt.to_pyarrow_dataset(
            partitions=list(partitions) if partitions else None,
            filesystem=arrow_filesystem(dt.table_uri),
        )

    def read_pandas(self, table: str | TableSpec, **kwargs: Any) -> pd.DataFrame:
        return self.read_arrow(table, **kwargs).to_pandas()

    def read_spark(
        self,
        spark: SparkSession,
        table: str | TableSpec,
        *,
        version: int | None = None,
        partitions: Filters | None = None,
    ) -> DataFrame:
        """Read through the Delta log into Spark without touching the driver's memory."""
        from pyspark.sql import functions as F

        spec = self._spec(table)
        if spark_has_native_delta(spark):
            reader = spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            df = reader.load(self.uri(spec))
            runlog.note_read(spec.name, self.version(spec) if version is None else version)
            for col, op, val in partitions or ():
                df = df.filter(F.expr(f"{col} {'=' if op == '==' else op} {_sql_literal(val)}"))
            return df.select(*spec.column_names)
        dt = self.delta_table(spec, version)
        runlog.note_read(spec.name, dt.version())
        schema = spec.spark_schema()
        data_schema = type(schema)([f for f in schema.fields if f.name not in spec.partition_by])
        groups: dict[tuple, list[str]] = {}
        for action in _arro3_to_pylist(dt.get_add_actions(flatten=True)):
            values = {c: action.get(f"partition.{c}") for c in spec.partition_by}
            if not _matches(values, partitions):
                continue
            groups.setdefault(tuple(values[c] for c in spec.partition_by), []).append(
                _spark_path(self.uri(spec), action["path"])
            )
        frames = []
        for values, paths in sorted(groups.items(), key=lambda kv: [str(v) for v in kv[0]]):
            df = spark.read.schema(data_schema).parquet(*paths)
            for col, val in zip(spec.partition_by, values, strict=True):
                df = df.withColumn(col, F.lit(val).cast(schema[col].dataType))
            frames.append(df.select(*spec.column_names))
        if not frames:
            return spark.createDataFrame([], schema)
        out = frames[0]
        for frame in frames[1:]:
            out = out.unionByName(frame)
        return out

    # --- inspecting -----------------------------------------------------------------------
    def version(self, table: str | TableSpec) -> int:
        return self.delta_table(table).version()

    def history(self, table: str | TableSpec, limit: int | None = None) -> list[dict]:
        return self.delta_table(table).history(limit)

    def partitions(self, table: str | TableSpec) -> list[dict[str, str]]:
        return self.delta_table(table).partitions()

    def partition_fingerprint(self, table: str | TableSpec, partition: Mapping[str, Any]) -> str:
        """A hash of the live files of one partition: it changes exactly when that
        partition is rewritten, not when another date of the table is."""
        import hashlib

        spec = self._spec(table)
        _check_partition(spec, partition)
        want = {k: str(v) for k, v in partition.items()}
        dt = self.delta_table(spec)
        runlog.note_read(spec.name, dt.version())
        files = sorted(
            (a["path"], a["size_bytes"])
            for a in _arro3_to_pylist(dt.get_add_actions(flatten=True))
            if all(a.get(f"partition.{k}") == v for k, v in want.items())
        )
        return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]

    def stats_gaps(self, table: str | TableSpec) -> list[dict[str, Any]]:
        """The partitions holding a live file whose statistics lack the min/max of a
        column with values in it: one ``{"partition": {...}, "files": n, "columns":
        [...]}`` each. delta-rs prunes such a file under any filter on that column, so a
        query silently misses its rows. Spark-written files before timestamp statistics
        (``r2rec.spark_writer``) are the known case."""
        spec = self._spec(table)
        # The columns the Spark path bounds, among the first 32 (Delta's default number
        # of indexed columns); delta-rs bounds at least these too.
        data = [c for c in spec.columns if c.name not in spec.partition_by][:32]
        watched = [c.name for c in data if bounded(to_arrow(c.type))]
        found: dict[tuple, dict[str, Any]] = {}
        for a in _arro3_to_pylist(self.delta_table(spec).get_add_actions(flatten=True)):
            rows = a.get("num_records")
            missing = [
                c for c in watched
                if a.get(f"min.{c}") is None
                and (rows is None or a.get(f"null_count.{c}") is None
                     or a[f"null_count.{c}"] < rows)
            ]  # fmt: skip
            if not missing:
                continue
            part = {k: a.get(f"partition.{k}") for k in spec.partition_by}
            gap = found.setdefault(
                tuple(sorted(part.items())), {"partition": part, "files": 0, "columns": []}
            )
            gap["files"] += 1
            gap["columns"] = sorted(set(gap["columns"]) | set(missing))
        return [found[k] for k in sorted(found, key=lambda k: [(n, v or "") for n, v in k])]

    def repair_stats(self, table: str | TableSpec) -> list[dict[str, Any]]:
        """Rewrite each partition :meth:`stats_gaps` names, with the same rows, so its
        files get full statistics: one overwrite commit per partition (the rerun of a
        date replaces exactly that date). Returns the gaps repaired, each with its rows."""
        spec = self._spec(table)
        gaps = self.stats_gaps(spec)
        if gaps and not spec.partition_by:
            raise R2RecError(
                f"table '{spec.name}' is not partitioned: its {gaps[0]['files']} file(s) "
                "without statistics would need a whole-table rewrite, which is refused"
            )
        for gap in gaps:
            part = gap["partition"]
            if any(v is None for v in part.values()):
                raise R2RecError(f"table '{spec.name}': a null partition value in {part}")
            where = [(k, "=", v) for k, v in part.items()]
            rows = self.read_arrow(spec, partitions=where)
            self.overwrite(spec, rows, partition=part)
            after = self.arrow_dataset(spec, partitions=where).count_rows()
            if after != rows.num_rows:  # a concurrent writer of that partition
                raise R2RecError(
                    f"table '{spec.name}' partition {part}: {rows.num_rows} rows read, "
                    f"{after} after the rewrite"
                )
            gap["rows"] = rows.num_rows
        return gaps

    def info(self, table: str | TableSpec) -> TableInfo:
        spec = self._spec(table)
        dt = self.delta_table(spec)
        rows = _arro3_to_pylist(dt.get_add_actions(flatten=True))
        counted = sum(int(r.get("num_records") or 0) for r in rows)
        if any(r.get("num_records") is None for r in rows):
            counted = self.arrow_dataset(spec).count_rows()
        return TableInfo(
            name=spec.name,
            uri=self.uri(spec),
            version=dt.version(),
            rows=counted,
            partitions=len(dt.partitions()) if spec.partition_by else 1,
            schema_version=dt.metadata().configuration.get("r2rec.schema_version", "?"),
        )

    def tables(self) -> list[TableSpec]:
        """Contracts of the tables that exist under this root."""
        from r2rec.contracts import TABLES

        return [spec for spec in TABLES.values() if self.exists(spec)]


def arrow_filesystem(table_uri: str):
    """The filesystem to scan a table's files with: pyarrow's own for local tables.

    delta-rs' default Python filesystem handler aborts the interpreter at exit
    ("terminate called without an active exception") once two snapshots of a table
    have been scanned in one process; object stores keep the delta-rs handler.
    Use as ``dt.to_pyarrow_dataset(filesystem=arrow_filesystem(dt.table_uri))``.
    """
    import pyarrow.fs as pafs

    if "://" in table_uri and not table_uri.startswith("file://"):
        return None
    path = table_uri.removeprefix("file://").rstrip("/")
    return pafs.SubTreeFileSystem(path, pafs.LocalFileSystem())


def _arro3_to_pylist(table: Any) -> list[dict]:
    import pyarrow as pa

    return pa.table(table).to_pylist()


def _spark_path(table_uri: str, rel: str) -> str:
    from urllib.parse import unquote

    rel = unquote(rel)
    if rel.startswith("/") or "://" in rel:
        return rel if "://" in rel else f"file://{rel}"
    base = table_uri if "://" in table_uri else f"file://{table_uri}"
    return f"{base}/{rel}"


def _is_spark_df(data: Any) -> bool:
    return hasattr(data, "sparkSession") and hasattr(data, "mapInArrow")


class Spool:
    """A table's rows, added a chunk at a time, conformed to its contract and kept in a
    Parquet file until :meth:`reader` streams them into one write: a job whose output
    outgrows memory holds a chunk, not the table."""

    def __init__(self, table: str | TableSpec, path: str):
        self.spec = Lakehouse._spec(table)
        self.path = path
        self._writer = None

    def add(self, rows: Any) -> None:
        import pyarrow.parquet as pq

        chunk = conform_arrow(self.spec, rows)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, chunk.schema)
        self._writer.write_table(chunk)

    def reader(self, batch_rows: int = 1024) -> pa.RecordBatchReader:
        """Every row added, as a stream of batches of ``batch_rows`` (a prompt row is
        kilobytes: Parquet's default 64k rows would be a large part of the table); none
        when nothing was added."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            return pa.RecordBatchReader.from_batches(self.spec.arrow_schema(), iter([]))
        self._writer.close()
        stored = pq.ParquetFile(self.path)
        return pa.RecordBatchReader.from_batches(
            stored.schema_arrow, stored.iter_batches(batch_size=batch_rows)
        )


def _is_batch_reader(data: Any) -> bool:
    import pyarrow as pa

    return isinstance(data, pa.RecordBatchReader)


def _reject_outside_partition(
    spec: TableSpec, data: pa.Table, partition: Mapping[str, Any]
) -> None:
    import pyarrow.compute as pc

    for col, val in partition.items():
        outside = (
            len(data) - pc.sum(pc.equal(data[col], str(val)).fill_null(False)).as_py()
            if len(data)
            else 0
        )
        if outside:
            raise R2RecError(
                f"table '{spec.name}': {outside} row(s) outside the overwrite partition "
                f"[{partition_predicate(partition)}]; nothing was written"
            )
