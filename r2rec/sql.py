"""Ad-hoc SQL (DuckDB) over the lakehouse's Delta tables.

Each table is registered as a view over ``DeltaTable.to_pyarrow_dataset()``, i.e. over
exactly the files of one Delta snapshot. DuckDB's own delta extension is not used (it
is downloaded at run time, which our machines cannot do), and the table directories
are never scanned as plain Parquet: that would also return files later commits removed.

The connection is confined to those views: DuckDB may not touch files, extensions or
settings (``read_csv('/etc/passwd')``, ``COPY ... TO``, ``ATTACH``, ``INSTALL``, ``SET``),
so a query can neither read outside the lakehouse nor write anywhere (one once forged a
Delta commit into a table's ``_delta_log``). The views still work: pyarrow, not DuckDB,
reads their files. Scratch tables live in memory and vanish with the connection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse, arrow_filesystem

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa


# No files (COPY, read_csv, ATTACH, EXPORT), no Python objects from the caller's scope
# (replacement scans), no extension installs or loads from disk.
_CONFINED = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
}
_CONFINED_HINT = "r2rec sql only reads the lakehouse's tables: no files, extensions or settings"


def table_uris(lakehouse: Lakehouse) -> dict[str, str]:
    """Name -> URI of every queryable table: the contract tables that exist, plus any
    other Delta table directly under a local root (scratch or hand-made tables)."""
    from deltalake import DeltaTable

    from r2rec.contracts import TABLES

    uris = {spec.name: lakehouse.uri(spec) for spec in lakehouse.tables()}
    if "://" not in lakehouse.root and os.path.isdir(lakehouse.root):
        for entry in sorted(os.scandir(lakehouse.root), key=lambda e: e.name):
            # Files beside the tables (a run log, a report) are not tables, and delta-rs
            # raises on them instead of answering no.
            if entry.name in TABLES or not entry.is_dir(follow_symlinks=False):
                continue
            if DeltaTable.is_deltatable(entry.path):
                uris[entry.name] = entry.path
    return uris


def connect(
    lakehouse: Lakehouse | None = None, version: Mapping[str, int] | None = None
) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection with one view per table, confined to them
    (no file, extension or setting access) and with its configuration locked.

    ``version`` maps table names to the Delta version to read (time travel); the other
    tables are read at their latest version.
    """
    import duckdb
    from deltalake import DeltaTable

    lakehouse = lakehouse or Lakehouse()
    uris = table_uris(lakehouse)
    version = dict(version or {})
    unknown = sorted(set(version) - set(uris))
    if unknown:
        raise R2RecError(
            f"cannot time-travel {', '.join(unknown)}: no such table ({_available(uris)})"
        )
    con = duckdb.connect(config=_CONFINED)
    # The pipeline is UTC throughout; without this, timestamps print in the host's zone.
    con.execute("SET TimeZone = 'UTC'")
    for name, uri in uris.items():
        at = version.get(name)
        try:
            dt = DeltaTable(uri, version=at, storage_options=lakehouse.storage_options)
            con.register(name, dt.to_pyarrow_dataset(filesystem=arrow_filesystem(dt.table_uri)))
        except Exception as exc:  # delta-rs raises several types (bad version, protocol)
            what = f"version {at} of table '{name}'" if at is not None else f"table '{name}'"
            raise R2RecError(f"cannot read {what}: {_one_line(str(exc))}") from None
    # Last, so no query can turn external access (or anything else) back on.
    con.execute("SET lock_configuration = true")
    return con


def run_sql(
    query: str,
    lakehouse: Lakehouse | None = None,
    version: Mapping[str, int] | None = None,
    *,
    limit: int | None = None,
) -> pa.Table:
    """Run one query (or a script; the last statement's result is returned) as Arrow.

    ``limit`` stops reading after that many rows, so a huge result is never built just
    to show its first lines. Statements without a result return an empty table.
    """
    import duckdb
    import pyarrow as pa

    con = connect(lakehouse, version)
    tables = _view_names(con)
    try:
        rel = con.sql(query)
        if rel is None:
            return pa.table({})
        if limit is None:
            return rel.to_arrow_table()
        batches, rows = [], 0
        with rel.to_arrow_reader() as reader:
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows >= limit:
                    break
        return pa.Table.from_batches(batches, schema=reader.schema).slice(0, limit)
    except duckdb.Error as exc:
        raise R2RecError(_explain(exc, tables)) from None
    finally:
        con.close()


def _view_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1")
    return [r[0] for r in rows.fetchall()]


def _explain(exc: Exception, tables: list[str]) -> str:
    import duckdb

    msg = _one_line(str(exc))
    if isinstance(exc, duckdb.CatalogException) and "Table with name" in str(exc):
        # DuckDB's "Did you mean" may point at its own catalog (pg_enum); list ours instead.
        msg = msg.split(" Did you mean", 1)[0]
        return f"{msg} ({_available(tables)})"
    if isinstance(exc, duckdb.PermissionException) or "configuration has been locked" in msg:
        return f"{msg} ({_CONFINED_HINT})"
    return msg


def _available(tables: Mapping[str, str] | list[str]) -> str:
    names = sorted(tables)
    return f"available tables: {', '.join(names)}" if names else "the lakehouse has no tables"


def _one_line(text: str) -> str:
    """DuckDB appends the query and a caret marker on extra lines; keep the words only."""
    lines = [ln.strip() for ln in text.splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(keep)
