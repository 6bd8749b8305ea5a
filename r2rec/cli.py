"""The ``r2rec`` command: inspect and query the lakehouse, run jobs.

Heavy modules (deltalake, duckdb, pyspark, torch) are imported inside the commands so
``r2rec --help`` stays instant.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from r2rec.errors import R2RecError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from r2rec.lakehouse import Lakehouse


class _OperatorErrors(TyperGroup):
    """Print operator-facing errors as one red line on stderr and exit 1.

    Done here rather than in ``Typer.__call__`` so it also applies under ``CliRunner``,
    which invokes the click group directly.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except R2RecError as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            err = Console(stderr=True, highlight=False)
            err.print(Text(f"error: {message}", style="bold red"), soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_OperatorErrors,
    help="R2Rec: batch recommender on Spark + Delta Lake.",
    no_args_is_help=True,
    add_completion=False,
    # Locals can hold storage credentials; never print them in a traceback.
    pretty_exceptions_show_locals=False,
)

LakehouseOpt = Annotated[
    str | None,
    typer.Option(
        "--lakehouse",
        "-L",
        metavar="PATH",
        help="Lakehouse root (default: $R2REC_LAKEHOUSE, else ./lakehouse).",
        show_default=False,
    ),
]


def _lakehouse(root: str | None) -> Lakehouse:
    from r2rec.lakehouse import Lakehouse

    return Lakehouse(root)


def _console() -> Console:
    return Console(highlight=False)


@app.command()
def tables(lakehouse: LakehouseOpt = None) -> None:
    """List the tables of the lakehouse with their size and version."""
    lh = _lakehouse(lakehouse)
    specs = lh.tables()
    console = _console()
    if not specs:
        console.print(
            Text(f"No tables under {lh.root} yet; `r2rec ingest` creates them.", style="yellow")
        )
        return
    # Every table lives at <root>/<name>: the root goes in the title, not in a column
    # that would wrap one character per line in an 80-column terminal or a log.
    headers = ["name", "layer", "rows", "version", "partitions", "schema", "partitioned by"]
    rows = []
    for spec in specs:
        info = lh.info(spec)
        rows.append([info.name, spec.layer, info.rows, info.version, info.partitions,
                     info.schema_version, ", ".join(spec.partition_by) or "-"])  # fmt: skip
    _print_rows(f"Tables in {lh.root}", headers, rows, numeric={2, 3, 4})


CELL_WIDTH = 48  # characters of a value shown in a table; longer ones end in "…"


def _is_terminal() -> bool:
    return sys.stdout.isatty()


def _cell(value: Any, width: int = CELL_WIDTH) -> str:
    text = "NULL" if value is None else " ".join(str(value).split())  # one line per cell
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_rows(title: str | None, headers: list[str], rows: list[list], numeric: set[int]) -> None:
    """A table that reads well anywhere: rich on a terminal, plain aligned text in a log
    or a pipe (Airflow's task logs, CI), values cut with an ellipsis, never wrapped."""
    cells = [[_cell(v) for v in row] for row in rows]
    if _is_terminal():
        out = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for k, name in enumerate(headers):
            out.add_column(name, justify="right" if k in numeric else "left", no_wrap=True,
                           overflow="ellipsis")  # fmt: skip
        for row, raw in zip(cells, rows, strict=True):
            out.add_row(*(Text(c, style="dim") if v is None else Text(c)
                          for c, v in zip(row, raw, strict=True)))  # fmt: skip
        _console().print(out)
        return
    widths = [max([len(h), *(len(r[k]) for r in cells)]) for k, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if k in numeric else v.ljust(w)
            for k, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    if title:
        sys.stdout.write(title + "\n")
    sys.stdout.write(line(headers) + "\n" + line(["-" * w for w in widths]) + "\n")
    for row in cells:
        sys.stdout.write(line(row) + "\n")


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _parse_versions(values: list[str]) -> dict[str, int]:
    versions = {}
    for value in values:
        name, sep, ver = value.partition("=")
        if not sep or not ver.isdigit():
            raise typer.BadParameter(f"'{value}' is not TABLE=VERSION", param_hint="--as-of")
        versions[name] = int(ver)
    return versions


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL (DuckDB dialect); tables are views.")],
    lakehouse: LakehouseOpt = None,
    limit: Annotated[int, typer.Option(min=0, help="Rows to show; 0 shows all.")] = 50,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="json is one array of objects.")
    ] = OutputFormat.table,
    as_of: Annotated[
        list[str] | None,
        typer.Option("--as-of", metavar="TABLE=VERSION", help="Read a table at a past version."),
    ] = None,
) -> None:
    """Run a SQL query over the Delta tables (read through the Delta log)."""
    from r2rec.sql import run_sql

    versions = _parse_versions(as_of or [])
    lh = _lakehouse(lakehouse)
    # One row more than shown tells us whether the output was cut.
    result = run_sql(query, lh, versions, limit=limit + 1 if limit else None)
    cut = bool(limit) and result.num_rows > limit
    if cut:
        result = result.slice(0, limit)
    if fmt is OutputFormat.csv:
        _write_csv(result)
    elif fmt is OutputFormat.json:
        rows = _finite(_pylist(result))
        sys.stdout.write(json.dumps(rows, default=_json_value, allow_nan=False) + "\n")
    else:
        _print_table(result)
    if cut:
        note = f"showing the first {limit} rows; --limit 0 shows all"
        Console(stderr=True, highlight=False).print(Text(note, style="dim"))
    _warn_stats_gaps(lh, query, versions)


def _warn_stats_gaps(lh: Lakehouse, query: str, versions: dict[str, int]) -> None:
    """A line on stderr for each table the query names whose files lack column
    statistics: a filter on those columns can silently miss their rows."""
    import re

    err = Console(stderr=True, highlight=False)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query.lower()))
    for spec in lh.tables():
        if spec.name not in words or spec.name in versions:
            continue
        gaps = lh.stats_gaps(spec)
        if gaps:
            files = sum(g["files"] for g in gaps)
            columns = sorted({c for g in gaps for c in g["columns"]})
            err.print(Text(
                f"warning: {spec.name} has {files} file(s) in {len(gaps)} partition(s) "
                f"without statistics for {', '.join(columns)}: a filter on them can miss "
                f"rows. `r2rec repair-stats {spec.name}` rewrites those partitions.",
                style="yellow",
            ), soft_wrap=True)  # fmt: skip


@app.command("repair-stats")
def repair_stats(
    names: Annotated[
        list[str] | None, typer.Argument(metavar="[TABLE]...", help="Default: every table.")
    ] = None,
    lakehouse: LakehouseOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the partitions; rewrite nothing.")
    ] = False,
) -> None:
    """Rewrite the partitions whose files lack column statistics, with the same rows.

    Spark-written files from before timestamp statistics have none for their timestamp
    columns, and a filter on one (``WHERE ts >= ...``) skips those files.
    """
    from r2rec.contracts import get_table

    lh = _lakehouse(lakehouse)
    specs = [get_table(n) for n in names] if names else lh.tables()
    headers = ["table", "partition", "files", "columns", "rows rewritten"]
    out = []
    for spec in specs:
        if not lh.exists(spec):
            raise R2RecError(f"table '{spec.name}' does not exist under {lh.root}")
        gaps = lh.stats_gaps(spec) if dry_run else lh.repair_stats(spec)
        for g in gaps:
            where = ", ".join(f"{k}={v}" for k, v in g["partition"].items()) or "-"
            out.append([spec.name, where, g["files"], ", ".join(g["columns"]),
                        "-" if dry_run else g["rows"]])  # fmt: skip
    if not out:
        _console().print("Every file has statistics for its columns; nothing to rewrite.")
        return
    title = "Partitions to rewrite (dry run)" if dry_run else "Partitions rewritten"
    _print_rows(title, headers, out, numeric={2, 4})


def _pylist(result: pa.Table) -> list[dict]:
    """Rows as dicts, a MAP column as an object (Arrow gives a list of pairs), so
    `inputs` of job_runs reads {"interactions": 2} in every output format."""
    import pyarrow as pa

    rows = result.to_pylist()
    maps = [n for n, t in zip(result.column_names, result.schema.types, strict=True)
            if pa.types.is_map(t)]  # fmt: skip
    for row in rows if maps else ():
        for name in maps:
            if row[name] is not None:
                row[name] = dict(row[name])
    return rows


def _json_value(value: Any) -> Any:
    # Timestamps as ISO-8601 (json has no date type); Decimal and the like as text.
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _finite(value: Any) -> Any:
    # NaN/Infinity are not JSON; null is what other tools (jq, DuckDB) produce for them.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=_json_value)
    return _json_value(value) if hasattr(value, "isoformat") else value


def _write_csv(result: pa.Table) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(result.column_names)
    for row in _pylist(result):
        writer.writerow([_csv_cell(v) for v in row.values()])


def _print_table(result: pa.Table) -> None:
    numeric = {
        k for k, typ in enumerate(result.schema.types)
        if str(typ).startswith(("int", "uint", "float", "double", "decimal"))
    }  # fmt: skip
    rows = [list(row.values()) for row in _pylist(result)]
    _print_rows(None, result.column_names, rows, numeric)
    if _is_terminal():
        _console().print(Text(f"{result.num_rows} row(s)", style="dim"))
    else:
        sys.stdout.write(f"{result.num_rows} row(s)\n")


@app.command()
def history(
    table: Annotated[str, typer.Argument(help="Table name, e.g. interactions.")],
    lakehouse: LakehouseOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Newest N versions only.")] = None,
) -> None:
    """Show a table's Delta commits, newest first."""
    lh = _lakehouse(lakehouse)
    out = Table(title=f"History of {table}", title_justify="left")
    out.add_column("version", justify="right", no_wrap=True)
    out.add_column("timestamp", no_wrap=True)
    out.add_column("operation")
    out.add_column("parameters", overflow="fold")
    for commit in lh.history(table, limit):
        ts = datetime.fromtimestamp(commit["timestamp"] / 1000, tz=UTC)
        params = commit.get("operationParameters") or {}
        out.add_row(
            str(commit.get("version", "?")),
            ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            commit.get("operation", "?"),
            Text(", ".join(f"{k}={_shorten(str(v))}" for k, v in params.items())),
        )
    _console().print(out)


def _shorten(value: str, width: int = 120) -> str:
    # CREATE TABLE carries the whole schema as JSON; a listing needs only its start.
    return value if len(value) <= width else value[: width - 1] + "…"


_JOBS = {
    "ingest": ("spark_jobs.ingest", "Ingest raw sources into bronze/silver tables."),
    "graph": ("spark_jobs.graph", "Build the interaction graph and degree stats as of --ds."),
    "samples": ("spark_jobs.samples", "Make time-ordered samples and candidate lists as of --ds."),
    "chains": ("spark_jobs.chains", "Sample top-K interaction chains per training sample."),
    "evidence": ("spark_jobs.evidence", "Find the chains that reach every candidate of a prompt."),
    "traces": ("trainer.traces", "Turn evidence chains into traces, SFT examples, RL prompts."),
    "retrieval": ("spark_jobs.retrieval", "Retrieve serve candidates for every active user."),
    "score": ("inference.score", "Score users with the LLM: top-k items with their reasoning."),
    "evaluate": ("inference.evaluate", "Evaluate baselines and the LLM on valid/test samples."),
    "sft": ("trainer.sft", "Supervised fine-tuning on reasoning traces (trl SFTTrainer, LoRA)."),
    "grpo": ("trainer.grpo", "GRPO from the SFT adapter with accuracy/format/grounding rewards."),
    "promote": ("trainer.promote", "Promote a trained version if its validation HR@1 holds up."),
    "results": ("inference.results", "The results table of a date, from eval_metrics."),
    "backtest": ("inference.backtest", "Published recommendations against what users did next."),
}


def _job_command(name: str, module: str, summary: str) -> None:
    """Register ``r2rec <name> ...`` as a pass-through to ``python -m <module> ...``.

    The job's own argparse is the one parser, so ``r2rec <name> --help`` shows exactly
    what ``python -m <module> --help`` shows and the two can never drift apart.
    """

    def command(ctx: typer.Context) -> None:
        import importlib

        try:
            job = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            raise R2RecError(f"the {name} job ({module}) is not installed") from None
        raise typer.Exit(job.main(list(ctx.args)) or 0)

    command.__doc__ = f"{summary} (see `r2rec {name} --help`)"
    app.command(
        name=name,
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],
        },
        add_help_option=False,
    )(command)


for _name, (_module, _summary) in _JOBS.items():
    _job_command(_name, _module, _summary)


if __name__ == "__main__":  # pragma: no cover
    app()
