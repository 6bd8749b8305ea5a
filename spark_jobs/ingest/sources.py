"""Source formats: where each dataset's files are and how one raw record splits into fields.

Parsing is plain Python on one record at a time, so every format is unit-testable
without Spark and every failure becomes a reason string instead of an exception.
Parsed fields stay *strings* here (bronze keeps raw values); typing happens in silver.

Canonical field names: interactions ``user``, ``item``, ``rating``, ``ts``;
items ``item``, ``title``, ``year``, ``genres`` (``|``-joined).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from r2rec.assets import movielens_100k_dir
from r2rec.errors import R2RecError

Fields = dict[str, str | None]
# A parser returns (fields, None) or (None, reason); None, None means "not a record" (a header).
Parser = Callable[[str, int], tuple[Fields | None, str | None]]

_YEAR_IN_TITLE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")


class ParseError(ValueError):
    pass


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each canonical field (generic CSV/Parquet sources)."""

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = "rating"
    ts: str = "timestamp"
    item_title: str | None = "title"
    item_genres: str | None = "genres"
    item_year: str | None = None
    genre_separator: str = "|"


@dataclass(frozen=True)
class SourceFormat:
    """How to read one source: its files, parsers, encodings and value domains."""

    name: str
    interaction_files: tuple[str, ...]
    item_files: tuple[str, ...] = ()
    kind: str = "text"  # text: line-based; parquet: columnar
    encoding: str = "utf-8"
    ts_unit: str = "s"  # s | ms | iso
    rating_range: tuple[float, float] | None = None
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    csv_delimiter: str = ","
    # Generic CSV only: header of each file, read once on the driver, because Spark
    # splits a file across tasks and only one of them sees line 1.
    csv_headers: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def interaction_parser(self) -> Parser:
        return _PARSERS[(self.parser_family, "interactions")](self)

    def item_parser(self) -> Parser:
        return _PARSERS[(self.parser_family, "items")](self)

    @property
    def parser_family(self) -> str:
        return (
            self.name if self.name in _FAMILIES else ("csv" if self.kind == "text" else "parquet")
        )


# --- MovieLens-100k as shipped in RecBole's atomic files ---------------------------------


def _ml100k_inter(_: SourceFormat) -> Parser:
    def parse(line: str, line_number: int):
        if line_number == 1 and line.startswith("user_id:"):
            return None, None
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != 4:
            return None, f"expected 4 tab-separated fields, found {len(parts)}"
        user, item, rating, ts = parts
        return {"user": user, "item": item, "rating": rating, "ts": ts}, None

    return parse


def _ml100k_items(_: SourceFormat) -> Parser:
    def parse(line: str, line_number: int):
        if line_number == 1 and line.startswith("item_id:"):
            return None, None
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != 4:
            return None, f"expected 4 tab-separated fields, found {len(parts)}"
        item, title, year, genres = parts
        return {
            "item": item,
            "title": title,
            "year": year,
            "genres": "|".join(genres.split()),
        }, None

    return parse


# --- MovieLens-1M/10M (``::``-separated .dat) ----------------------------------------------


def _ml1m_ratings(_: SourceFormat) -> Parser:
    def parse(line: str, line_number: int):
        parts = line.rstrip("\r\n").split("::")
        if len(parts) != 4:
            return None, f"expected 4 '::'-separated fields, found {len(parts)}"
        user, item, rating, ts = parts
        return {"user": user, "item": item, "rating": rating, "ts": ts}, None

    return parse


def _title_and_year(title: str) -> tuple[str, str | None]:
    m = _YEAR_IN_TITLE.match(title)
    return (m["title"], m["year"]) if m else (title, None)


def _ml1m_movies(_: SourceFormat) -> Parser:
    def parse(line: str, line_number: int):
        parts = line.rstrip("\r\n").split("::")
        if len(parts) != 3:
            return None, f"expected 3 '::'-separated fields, found {len(parts)}"
        item, title, genres = parts
        title, year = _title_and_year(title)
        return {"item": item, "title": title, "year": year, "genres": genres}, None

    return parse


# --- MovieLens latest / 20M / 25M (ratings.csv + movies.csv) -------------------------------


def _csv_row(line: str, delimiter: str = ",") -> list[str]:
    rows = list(csv.reader([line], delimiter=delimiter, strict=True))
    if len(rows) != 1:
        raise ParseError("not exactly one CSV record on the line")
    return rows[0]


def _ml_latest_ratings(_: SourceFormat) -> Parser:
    def parse(line: str, line_number: int):
        if line_number == 1 and line.startswith("userId"):
            return None, None
        try:
            parts = _csv_row(line)
        except (csv.Error, ParseError) as exc:
            return None, f"bad CSV: {exc}"
        if len(parts) != 4:
            return None, f"expected 4 CSV fields, found {len(parts)}"
        user, item, rating, ts = parts
        return {"user": user, "item": item, "rating": rating, "ts": ts}, None

    return parse


def _ml_latest_movies(_: SourceFormat) -> Parser:
    def parse(line: str, line_number: int):
        if line_number == 1 and line.startswith("movieId"):
            return None, None
        try:
            parts = _csv_row(line)
        except (csv.Error, ParseError) as exc:
            return None, f"bad CSV: {exc}"
        if len(parts) != 3:
            return None, f"expected 3 CSV fields, found {len(parts)}"
        item, title, genres = parts
        title, year = _title_and_year(title)
        genres = "" if genres == "(no genres listed)" else genres
        return {"item": item, "title": title, "year": year, "genres": genres}, None

    return parse


# --- Amazon Reviews 2023 (JSON Lines: reviews + item metadata) ----------------------------


def _json_object(line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ParseError(f"bad JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise ParseError("JSON line is not an object")
    return obj


def _str(value) -> str | None:
    return None if value is None else str(value)


def _amazon_reviews(_: SourceFormat) -> Parser:
    def parse(line: str, line_number: int):
        try:
            obj = _json_object(line)
        except ParseError as exc:
            return None, str(exc)
        # parent_asin groups colour/size variants into one product, as the 2023
        # benchmark does; asin is the fallback for older dumps.
        item = obj.get("parent_asin") or obj.get("asin")
        return {
            "user": _str(obj.get("user_id")),
            "item": _str(item),
            "rating": _str(obj.get("rating")),
            "ts": _str(obj.get("timestamp")),
        }, None

    return parse


def _amazon_meta(_: SourceFormat) -> Parser:
    def parse(line: str, line_number: int):
        try:
            obj = _json_object(line)
        except ParseError as exc:
            return None, str(exc)
        cats = obj.get("categories") or []
        if not isinstance(cats, list):
            cats = [cats]
        if not cats and obj.get("main_category"):
            cats = [obj["main_category"]]
        return {
            "item": _str(obj.get("parent_asin") or obj.get("asin")),
            "title": _str(obj.get("title")),
            "year": None,
            "genres": "|".join(str(c).replace("|", "/") for c in cats),
        }, None

    return parse


# --- generic delimited text with a header and a column mapping ---------------------------


def _generic_csv(kind: str) -> Callable[[SourceFormat], Parser]:
    def build(fmt: SourceFormat) -> Parser:
        m = fmt.mapping
        header = list(fmt.csv_headers[0 if kind == "interactions" else 1])

        def parse(line: str, line_number: int):
            try:
                parts = _csv_row(line, fmt.csv_delimiter)
            except (csv.Error, ParseError) as exc:
                return None, f"bad CSV: {exc}"
            if line_number == 1:
                return None, None
            if len(parts) != len(header):
                return None, f"expected {len(header)} CSV fields, found {len(parts)}"
            row = dict(zip(header, parts, strict=True))
            return _map_row(row, m, kind), None

        return parse

    return build


def _map_row(row: dict, m: ColumnMapping, kind: str) -> Fields:
    def get(col: str | None) -> str | None:
        return None if col is None else _str(row.get(col))

    if kind == "interactions":
        return {"user": get(m.user), "item": get(m.item), "rating": get(m.rating), "ts": get(m.ts)}
    genres = get(m.item_genres)
    if genres is not None and m.genre_separator != "|":
        genres = "|".join(genres.split(m.genre_separator))
    title, year = get(m.item_title), get(m.item_year)
    if title and year is None:
        title, year = _title_and_year(title)
    return {"item": get(m.item), "title": title, "year": year, "genres": genres}


def map_columnar_row(row: dict, fmt: SourceFormat, kind: str) -> Fields:
    """Fields of one row of a columnar (Parquet) source."""
    return _map_row(row, fmt.mapping, kind)


_PARSERS: dict[tuple[str, str], Callable[[SourceFormat], Parser]] = {
    ("movielens-100k", "interactions"): _ml100k_inter,
    ("movielens-100k", "items"): _ml100k_items,
    ("movielens-1m", "interactions"): _ml1m_ratings,
    ("movielens-1m", "items"): _ml1m_movies,
    ("movielens-latest", "interactions"): _ml_latest_ratings,
    ("movielens-latest", "items"): _ml_latest_movies,
    ("amazon-reviews-2023", "interactions"): _amazon_reviews,
    ("amazon-reviews-2023", "items"): _amazon_meta,
    ("csv", "interactions"): _generic_csv("interactions"),
    ("csv", "items"): _generic_csv("items"),
}
_FAMILIES = {name for name, _ in _PARSERS if name != "csv"}
SOURCES = (*sorted(_FAMILIES), "csv", "parquet")


def _read_header(path: str, delimiter: str) -> tuple[str, ...]:
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(path if "://" in path else str(Path(path).resolve()))
    if fs.get_file_info(p).type == pafs.FileType.Directory:
        raise R2RecError(f"csv source expects a file, got the directory {path}")
    with fs.open_input_stream(p) as fh:
        # utf-8-sig drops the byte-order mark that e.g. Excel writes before the header.
        first = fh.read(1 << 16).decode("utf-8-sig", errors="replace").splitlines()
    if not first:
        raise R2RecError(f"{path} is empty")
    return tuple(_csv_row(first[0], delimiter))


def resolve_source(
    name: str,
    path: str | None = None,
    items_path: str | None = None,
    mapping: ColumnMapping | None = None,
    ts_unit: str | None = None,
    rating_range: tuple[float, float] | None = None,
    delimiter: str = ",",
) -> SourceFormat:
    """Turn a source name plus user-given paths into a :class:`SourceFormat`."""
    if name not in SOURCES:
        raise R2RecError(f"unknown source '{name}' (known: {', '.join(SOURCES)})")

    def need(p: str | None, what: str) -> str:
        if not p:
            raise R2RecError(f"source '{name}' needs --{what}")
        if "://" not in p and not Path(p).exists():
            raise R2RecError(f"source '{name}': {what} '{p}' does not exist")
        return p

    def inside(base: Path, file: str) -> str:
        # Checked here: Spark's own "path does not exist" would surface as a traceback.
        if not (base / file).is_file():
            raise R2RecError(f"source '{name}': {base / file} is missing (expected in --path)")
        return str(base / file)

    if name == "movielens-100k":
        base = Path(path) if path else movielens_100k_dir()
        return SourceFormat(
            name,
            (inside(base, "ml-100k.inter"),),
            (inside(base, "ml-100k.item"),),
            ts_unit="s",
            rating_range=rating_range or (1.0, 5.0),
        )
    if name == "movielens-1m":
        base = Path(need(path, "path"))
        # The .dat files of ML-1M are Latin-1, not UTF-8. Spark 4 accepts only canonical
        # charset names ("latin-1" is refused), hence ISO-8859-1.
        return SourceFormat(
            name,
            (inside(base, "ratings.dat"),),
            (inside(base, "movies.dat"),),
            encoding="iso-8859-1",
            rating_range=rating_range or (1.0, 5.0),
        )
    if name == "movielens-latest":
        base = Path(need(path, "path"))
        return SourceFormat(
            name,
            (inside(base, "ratings.csv"),),
            (inside(base, "movies.csv"),),
            rating_range=rating_range or (0.5, 5.0),
        )
    if name == "amazon-reviews-2023":
        return SourceFormat(
            name,
            (need(path, "path"),),
            (need(items_path, "items-path"),) if items_path else (),
            ts_unit="ms",
            rating_range=rating_range or (1.0, 5.0),
        )
    files = (need(path, "path"),)
    item_files = (need(items_path, "items-path"),) if items_path else ()
    headers: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    if name == "csv":
        headers = (
            _read_header(files[0], delimiter),
            _read_header(item_files[0], delimiter) if item_files else (),
        )
        m = mapping or ColumnMapping()
        wanted = [(files[0], headers[0], (m.user, m.item, m.ts, m.rating))]
        if item_files:
            wanted.append((item_files[0], headers[1], (m.item,)))
        for file, header, cols in wanted:
            for col in cols:
                if col is not None and col not in header:
                    raise R2RecError(
                        f"column '{col}' is not in the header of {file}: {list(header)}"
                    )
    return SourceFormat(
        name,
        files,
        item_files,
        csv_headers=headers,
        kind="text" if name == "csv" else "parquet",
        ts_unit=ts_unit or "s",
        rating_range=rating_range,
        mapping=mapping or ColumnMapping(),
        csv_delimiter=delimiter,
    )
