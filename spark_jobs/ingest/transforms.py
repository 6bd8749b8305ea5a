"""Ingest transforms: raw lines -> bronze records -> silver rows + quarantine rows.

Every function here is a pure DataFrame -> DataFrame transform (the reads at the top
only build lazy plans); the job module does the I/O. A record that cannot become a
silver row always leaves with a reason: nothing is dropped silently.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from r2rec.config import ds_end
from r2rec.contracts import INTERACTIONS, INTERACTIONS_RAW, ITEMS, QUARANTINE

if TYPE_CHECKING:  # pragma: no cover
    from spark_jobs.ingest.sources import SourceFormat

JOB = "ingest"
# Reasons that mean "the record is broken"; duplicates are removed and recorded but do
# not count towards the quarantine-share limit, since clean dumps contain them too.
DUPLICATE_REASONS = ("duplicate_event", "duplicate_item")
_MAX_EPOCH_S = 32503680000.0  # 3000-01-01: anything later is a unit or parsing error

_PARSED_SCHEMA = T.StructType(
    [
        T.StructField("source_file", T.StringType(), False),
        T.StructField("line_number", T.LongType(), True),
        T.StructField("raw_record", T.StringType(), False),
        T.StructField("fields", T.MapType(T.StringType(), T.StringType(), True), True),
        T.StructField("parse_error", T.StringType(), True),
    ]
)


# --- reading ---------------------------------------------------------------------------------


def read_lines(spark: SparkSession, path: str, encoding: str = "utf-8") -> DataFrame:
    """One row per line of a text file: (source_file, line_number, raw_record).

    Line numbers come from ``zipWithIndex`` so the file is still split across tasks.
    """
    lines = spark.read.text(path)
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        # The text source splits on newline bytes and keeps each line's bytes as they
        # are (no UTF-8 validation), so decoding them is exact for ASCII-compatible
        # single-byte charsets such as ISO-8859-1. (The CSV source would decode too, but
        # it skips blank lines, which shifts every later line number.)
        lines = lines.select(F.decode(F.col("value").cast("binary"), encoding).alias("value"))
    indexed = lines.rdd.zipWithIndex().map(lambda pair: (path, pair[1] + 1, pair[0][0]))
    return spark.createDataFrame(
        indexed, "source_file string, line_number long, raw_record string"
    ).withColumn("raw_record", F.coalesce(F.col("raw_record"), F.lit("")))


def parse_lines(lines: DataFrame, fmt: SourceFormat, kind: str) -> DataFrame:
    """Apply the source's record parser on the executors; headers are not records."""

    def parse(batches):
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(_PARSED_SCHEMA)
        parser = fmt.interaction_parser() if kind == "interactions" else fmt.item_parser()
        for batch in batches:
            out = {name: [] for name in _PARSED_SCHEMA.fieldNames()}
            for row in batch.to_pylist():
                fields, error = parser(row["raw_record"], row["line_number"])
                if fields is None and error is None:
                    continue
                out["source_file"].append(row["source_file"])
                out["line_number"].append(row["line_number"])
                out["raw_record"].append(row["raw_record"])
                out["fields"].append(list(fields.items()) if fields is not None else None)
                out["parse_error"].append(error)
            yield pa.RecordBatch.from_pydict(out, schema=schema)

    return lines.mapInArrow(parse, _PARSED_SCHEMA)


def read_columnar(spark: SparkSession, path: str, fmt: SourceFormat, kind: str) -> DataFrame:
    """Parquet sources: every row is a record; the raw record is kept as JSON."""
    from spark_jobs.ingest.sources import ColumnMapping

    m: ColumnMapping = fmt.mapping
    df = spark.read.parquet(path)
    wanted = (
        {"user": m.user, "item": m.item, "rating": m.rating, "ts": m.ts}
        if kind == "interactions"
        else {"item": m.item, "title": m.item_title, "year": m.item_year, "genres": m.item_genres}
    )
    pairs = []
    for key, col in wanted.items():
        value = (
            F.col(col).cast("string") if col and col in df.columns else F.lit(None).cast("string")
        )
        if key == "genres" and col and col in df.columns:
            dtype = df.schema[col].dataType
            value = (
                F.array_join(F.col(col).cast("array<string>"), "|")
                if isinstance(dtype, T.ArrayType)
                else F.regexp_replace(F.col(col).cast("string"), re.escape(m.genre_separator), "|")
            )
        pairs += [F.lit(key), value]
    missing = [c for c in wanted.values() if c and c not in df.columns]
    return df.select(
        F.input_file_name().alias("source_file"),
        F.lit(None).cast("long").alias("line_number"),
        F.to_json(F.struct(*[F.col(c) for c in df.columns])).alias("raw_record"),
        F.create_map(*pairs).alias("fields"),
        (F.lit(f"missing column(s) {missing}") if missing else F.lit(None))
        .cast("string")
        .alias("parse_error"),
    )


def to_bronze(parsed: DataFrame, ds: str, source: str) -> DataFrame:
    return parsed.select(
        F.lit(ds).alias("ds"), F.lit(source).alias("source"), *_PARSED_SCHEMA.fieldNames()
    ).select(*INTERACTIONS_RAW.column_names)


# --- silver ------------------------------------------------------------------------------


def _first_reason(*checks: tuple) -> tuple:
    """Fold (condition, reason, detail) checks into one reason and detail column."""
    reason, detail = F.lit(None).cast("string"), F.lit(None).cast("string")
    for cond, why, what in reversed(checks):
        reason = F.when(cond, F.lit(why)).otherwise(reason)
        detail = F.when(cond, what).otherwise(detail)
    return reason, detail


def _parse_ts(raw, unit: str):
    if unit == "iso":
        return F.try_to_timestamp(raw)
    num = raw.try_cast("double")
    seconds = num / 1000.0 if unit == "ms" else num
    ok = seconds.between(0.0, _MAX_EPOCH_S)
    # Rounded, not truncated: 1073870072929 ms / 1000 * 1e6 is 1073870072928999.9 in floats.
    epoch = F.when(ok, F.timestamp_micros(F.round(seconds * 1_000_000).cast("long")))
    # A written-out date-time is unambiguous whatever the declared unit; typed timestamp
    # columns of Parquet sources arrive in bronze in exactly that form.
    return F.when(num.isNull(), F.try_to_timestamp(raw)).otherwise(epoch)


def normalize_interactions(bronze: DataFrame, fmt: SourceFormat, ds: str) -> DataFrame:
    """Type every bronze record and give each bad one a reason; keeps all rows."""
    fld = F.col("fields")
    user, item = F.trim(fld["user"]), F.trim(fld["item"])
    rating_raw = F.trim(fld["rating"])
    rating = rating_raw.try_cast("double")
    ts = _parse_ts(F.trim(fld["ts"]), fmt.ts_unit)
    end = F.lit(ds_end(ds)).cast("timestamp")
    lo, hi = fmt.rating_range or (None, None)
    out_of_range = (rating < F.lit(lo)) | (rating > F.lit(hi)) if fmt.rating_range else F.lit(False)
    bad_rating = (F.coalesce(rating_raw, F.lit("")) != "") & (
        rating.isNull() | F.isnan(rating) | (F.abs(rating) == float("inf"))
    )
    reason, detail = _first_reason(
        (F.col("parse_error").isNotNull(), "unparseable", F.col("parse_error")),
        (F.coalesce(user, F.lit("")) == "", "missing_user", F.lit("no user id")),
        (F.coalesce(item, F.lit("")) == "", "missing_item", F.lit("no item id")),
        (
            bad_rating,
            "bad_rating",
            F.concat(F.lit("rating '"), rating_raw, F.lit("' is not a number")),
        ),
        (
            out_of_range,
            "rating_out_of_range",
            F.concat(F.lit("rating "), rating_raw, F.lit(f" outside [{lo}, {hi}]")),
        ),
        (
            ts.isNull(),
            "bad_timestamp",
            F.concat(
                F.lit("timestamp '"),
                F.coalesce(fld["ts"], F.lit("")),
                F.lit(f"' is not a valid {fmt.ts_unit} time"),
            ),
        ),
    )
    typed = bronze.select(
        "*",
        user.alias("user_id"),
        item.alias("item_id"),
        rating.alias("rating"),
        ts.alias("ts"),
        reason.alias("reason"),
        detail.alias("detail"),
    )
    marked = _mark_duplicates(typed, ["user_id", "item_id", "ts"], "duplicate_event")
    # A valid event after the end of D is not bad data: the log holds the future of a
    # replayed date. It is deferred (counted, left for the run of its own date), never
    # quarantined.
    return marked.withColumn("deferred", F.col("reason").isNull() & (F.col("ts") >= end))


def _mark_duplicates(df: DataFrame, key: list[str], why: str) -> DataFrame:
    """Among valid rows sharing a key, keep the last line and mark the rest."""
    w = Window.partitionBy(F.col("reason").isNull(), *key).orderBy(
        F.col("source_file").desc(), F.col("line_number").desc_nulls_last()
    )
    rn = F.row_number().over(w)
    kept = F.first(F.concat_ws(":", "source_file", F.col("line_number").cast("string"))).over(w)
    dup = F.col("reason").isNull() & (rn > 1)
    return df.withColumn(
        "detail", F.when(dup, F.concat(F.lit("same key as "), kept)).otherwise(F.col("detail"))
    ).withColumn("reason", F.when(dup, F.lit(why)).otherwise(F.col("reason")))


def normalize_items(bronze: DataFrame) -> DataFrame:
    fld = F.col("fields")
    item = F.trim(fld["item"])
    title = F.nullif(F.trim(fld["title"]), F.lit(""))
    year = F.trim(fld["year"]).try_cast("int")
    year = F.when(year.between(1800, 2100), year)
    genres = F.filter(
        F.split(F.coalesce(fld["genres"], F.lit("")), r"\|"), lambda g: F.trim(g) != ""
    )
    genres = F.transform(genres, lambda g: F.trim(g))
    reason, detail = _first_reason(
        (F.col("parse_error").isNotNull(), "unparseable", F.col("parse_error")),
        (F.coalesce(item, F.lit("")) == "", "missing_item", F.lit("no item id")),
    )
    typed = bronze.select(
        "*",
        item.alias("item_id"),
        title.alias("title"),
        year.alias("year"),
        genres.alias("genres"),
        reason.alias("reason"),
        detail.alias("detail"),
    ).withColumn("text", item_text(F.col("title"), F.col("year"), F.col("genres")))
    return _mark_duplicates(typed, ["item_id"], "duplicate_item")


def item_text(title, year, genres):
    """'Toy Story (1995). Genres: Animation, Children's, Comedy' — the prompt's item line."""
    head = F.concat_ws(
        " ",
        F.coalesce(title, F.lit("(untitled)")),
        F.when(year.isNotNull(), F.concat(F.lit("("), year.cast("string"), F.lit(")"))),
    )
    return F.when(
        F.size(genres) > 0, F.concat(head, F.lit(". Genres: "), F.array_join(genres, ", "))
    ).otherwise(head)


def silver_interactions(
    normalized: DataFrame, earlier: DataFrame, ds: str, source: str
) -> DataFrame:
    """Valid events of this batch up to the end of D that no earlier ingest run brought."""
    fresh = normalized.filter(F.col("reason").isNull() & ~F.col("deferred")).select(
        "user_id", "item_id", "rating", "ts"
    )
    seen = earlier.filter(F.col("source") == source).select("user_id", "item_id", "ts")
    fresh = fresh.join(seen, on=["user_id", "item_id", "ts"], how="left_anti")
    return fresh.select(
        "user_id", "item_id", "rating", "ts", F.lit(ds).alias("ds"), F.lit(source).alias("source")
    ).select(*INTERACTIONS.column_names)


def silver_items(normalized: DataFrame, ds: str, source: str, earlier: DataFrame) -> DataFrame:
    """Items that are new, or whose metadata changed, since the latest earlier version.

    Each run re-reads the whole catalogue; writing all of it again would make every
    reader of "items as of D" (the latest version per item) read one catalogue per date.
    """
    latest = Window.partitionBy("item_id").orderBy(F.col("ds").desc())
    known = (
        earlier.filter(F.col("source") == source)
        .withColumn("_rn", F.row_number().over(latest))
        .filter(F.col("_rn") == 1)
        .select("item_id", "title", "year", "genres", "text")
    )
    same = ["item_id", "title", "year", "genres", "text"]
    current = normalized.filter(F.col("reason").isNull()).select(*same)
    changed = current.alias("n").join(
        known.alias("k"),
        [F.col(f"n.{c}").eqNullSafe(F.col(f"k.{c}")) for c in same],
        "left_anti",
    )
    return changed.select(
        "item_id",
        "title",
        "year",
        "genres",
        "text",
        F.lit(ds).alias("ds"),
        F.lit(source).alias("source"),
    ).select(*ITEMS.column_names)


def quarantine_rows(normalized: DataFrame, ds: str, source: str, entity: str) -> DataFrame:
    return (
        normalized.filter(F.col("reason").isNotNull())
        .select(
            F.lit(ds).alias("ds"),
            F.lit(JOB).alias("job"),
            F.lit(source).alias("source"),
            F.lit(entity).alias("entity"),
            "source_file",
            "line_number",
            "raw_record",
            "reason",
            "detail",
        )
        .select(*QUARANTINE.column_names)
    )
