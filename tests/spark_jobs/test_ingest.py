"""End-to-end ingest (Spark + Delta) on small files written in each source's real format.

Each ``run_ingest`` costs seconds on a laptop, so the module-scoped fixtures run the
ingests once and several tests read the tables they wrote.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r2rec.errors import DataQualityError
from r2rec.lakehouse import Lakehouse
from spark_jobs.ingest import IngestConfig, main, run_ingest
from spark_jobs.ingest.sources import ColumnMapping, resolve_source

DS = "2024-03-10"
TABLES = ("interactions_raw", "items_raw", "interactions", "items", "quarantine")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def write(path: Path, text: str, encoding: str = "utf-8") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return str(path)


def part(ds: str, source: str) -> list[tuple[str, str, str]]:
    return [("ds", "=", ds), ("source", "=", source)]


def silver_rows(lh: Lakehouse, ds: str, source: str) -> list[tuple]:
    rows = lh.read_arrow("interactions", partitions=part(ds, source)).to_pylist()
    return sorted((r["user_id"], r["item_id"], r["rating"], r["ts"]) for r in rows)


def item_rows(lh: Lakehouse, ds: str, source: str) -> dict[str, tuple]:
    rows = lh.read_arrow("items", partitions=part(ds, source)).to_pylist()
    assert len(rows) == len({r["item_id"] for r in rows})
    return {r["item_id"]: (r["title"], r["year"], r["genres"], r["text"]) for r in rows}


def bronze_lines(lh: Lakehouse, table: str, ds: str, source: str) -> list[tuple]:
    rows = lh.read_arrow(table, partitions=part(ds, source)).to_pylist()
    return sorted(
        ((r["line_number"], r["raw_record"], r["parse_error"]) for r in rows),
        key=lambda t: (t[0] is None, t[0] or 0, t[1]),
    )


def quarantine_rows(lh: Lakehouse, ds: str, source: str) -> list[tuple]:
    rows = lh.read_arrow(
        "quarantine", partitions=[("ds", "=", ds), ("job", "=", "ingest"), ("source", "=", source)]
    ).to_pylist()
    return sorted(
        (
            r["entity"],
            Path(r["source_file"]).name,
            r["line_number"],
            r["raw_record"],
            r["reason"],
            r["detail"],
        )
        for r in rows
    )


def table_content(lh: Lakehouse, table: str, version: int | None = None) -> list[str]:
    rows = lh.read_arrow(table, version=version).to_pylist()
    return sorted(json.dumps(r, default=str, sort_keys=True) for r in rows)


# --- one small dataset per source format --------------------------------------------------

ML100K_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n"
    "186\t302\t3\t891717742\n"
    "22\t377\t1\t878887116\n"
)
ML100K_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tKolya\t1996\tComedy\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
    "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n"
    "377\tHeavyweights\t1994\tChildren's Comedy\n"
)
ML1M_RATINGS = "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n"
ML1M_MOVIES = (
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
    "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
    "1357::Métisse (Café au Lait) (1993)::Comedy\n"
)
ML_LATEST_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"
    "1,11,2.5,964982931\n"
    "2,182727,0.5,1537099000\n"
)
ML_LATEST_MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    "182727,A Christmas Story Live! (2017),(no genres listed)\n"
)
AMAZON_REVIEWS = (
    '{"rating": 5.0, "title": "Such a lovely scent but not overpowering", "text": "This spray '
    'is really nice.", "images": [], "asin": "B00YQ6X8EO", "parent_asin": "B00YQ6X8EO", '
    '"user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": 1588687728923, "helpful_vote": 0, '
    '"verified_purchase": true}\n'
    '{"rating": 4.0, "title": "Works great", "text": "Good.", "images": [], "asin": '
    '"B081TJ8YS3", "parent_asin": "B081TJ8YS3", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", '
    '"timestamp": 1588615855070, "helpful_vote": 1, "verified_purchase": true}\n'
    # A colour variant: the item is the parent product. 2004 milliseconds are where
    # ms / 1000 * 1e6 is not exact in floating point.
    '{"rating": 1.0, "title": "Meh", "text": "", "images": [], "asin": "B07PNNCSP9", '
    '"parent_asin": "B097R46CSY", "user_id": "AE74DYR3QUGVPZJ3P7RFWBGIX7XQ", '
    '"timestamp": 1073870072929, "helpful_vote": 0, "verified_purchase": false}\n'
    # An older dump without parent_asin.
    '{"rating": 3.0, "asin": "B000050FDY", "user_id": "AEOLDUSER", "timestamp": 1400000000000}\n'
)
AMAZON_META = (
    '{"main_category": "All Beauty", "title": "Howard LC0008 Leather Conditioner, 8-Ounce '
    '(4-Pack)", "average_rating": 4.8, "rating_number": 10, "features": [], "description": [], '
    '"price": null, "images": [], "videos": [], "store": "Howard Products", "categories": [], '
    '"details": {}, "parent_asin": "B01CUPMQZE", "bought_together": null}\n'
    '{"main_category": "All Beauty", "title": "Precision Hair Ties", "categories": '
    '["Beauty & Personal Care", "Hair Care"], "parent_asin": "B097R46CSY"}\n'
    '{"main_category": null, "title": "Lavender Spray", "categories": [], '
    '"parent_asin": "B00YQ6X8EO"}\n'
)
CSV_EVENTS = (
    "member,sku,stars,event_time,channel\n"
    "m1,sku-1,4,2024-03-09T23:59:59Z,web\n"
    "m1,sku-2,5,2024-03-01T08:30:00+02:00,app\n"
    "m2,sku-1,2.5,2024-02-29 12:00:00,web\n"
    'm2,"sku,3",3,2024-03-10T23:59:59.5Z,web\n'
)
CSV_CATALOG = (
    "sku,name,tags\n"
    "sku-1,Garden Hose (2019),garden;outdoor\n"
    "sku-2,Desk Lamp,home\n"
    '"sku,3",Chair,home;furniture\n'
)
CSV_MAPPING = ColumnMapping(
    user="member",
    item="sku",
    rating="stars",
    ts="event_time",
    item_title="name",
    item_genres="tags",
    genre_separator=";",
)
PARQUET_MAPPING = ColumnMapping(
    user="user",
    item="item",
    rating="stars",
    ts="at",
    item_title="title",
    item_genres="genres",
    item_year="year",
)


def _parquet(root: Path) -> tuple[str, str]:
    root.mkdir(parents=True)
    events = pa.table(
        {
            "user": pa.array([7, 7, 8], pa.int64()),
            "item": ["p1", "p2", "p1"],
            "stars": [4.5, 3.0, 5.0],
            "at": pa.array(
                [utc(2024, 3, 9, 12), utc(2024, 3, 10, 23, 59, 59, 999999), utc(2023, 12, 31)],
                pa.timestamp("us", tz="UTC"),
            ),
            "device": ["ios", "web", "web"],
        }
    )
    catalog = pa.table(
        {
            "item": ["p1", "p2"],
            "title": ["Kettle", "Toaster"],
            "year": pa.array([2019, None], pa.int32()),
            "genres": pa.array([["kitchen", "appliances"], []], pa.list_(pa.string())),
        }
    )
    pq.write_table(events, root / "events.parquet")
    pq.write_table(catalog, root / "catalog.parquet")
    return str(root / "events.parquet"), str(root / "catalog.parquet")


@pytest.fixture(scope="module")
def formats(spark, tmp_path_factory):
    """Every source format ingested for DS into one lakehouse."""
    root = tmp_path_factory.mktemp("formats")
    write(root / "ml-100k" / "ml-100k.inter", ML100K_INTER)
    write(root / "ml-100k" / "ml-100k.item", ML100K_ITEM)
    write(root / "ml-1m" / "ratings.dat", ML1M_RATINGS, "latin-1")
    write(root / "ml-1m" / "movies.dat", ML1M_MOVIES, "latin-1")
    write(root / "ml-latest" / "ratings.csv", ML_LATEST_RATINGS)
    write(root / "ml-latest" / "movies.csv", ML_LATEST_MOVIES)
    reviews = write(root / "amazon" / "All_Beauty.jsonl", AMAZON_REVIEWS)
    meta = write(root / "amazon" / "meta_All_Beauty.jsonl", AMAZON_META)
    events = write(root / "shop" / "events.csv", CSV_EVENTS)
    catalog = write(root / "shop" / "catalog.csv", CSV_CATALOG)
    pq_events, pq_catalog = _parquet(root / "pq")
    sources = [
        resolve_source("movielens-100k", str(root / "ml-100k")),
        resolve_source("movielens-1m", str(root / "ml-1m")),
        resolve_source("movielens-latest", str(root / "ml-latest")),
        resolve_source("amazon-reviews-2023", reviews, meta),
        resolve_source("csv", events, catalog, CSV_MAPPING, "iso", (1.0, 5.0)),
        resolve_source("parquet", pq_events, pq_catalog, PARQUET_MAPPING, None, (1.0, 5.0)),
    ]
    lh = Lakehouse(str(root / "lakehouse"))
    reports = {fmt.name: run_ingest(spark, lh, IngestConfig(fmt, DS)) for fmt in sources}
    return SimpleNamespace(lh=lh, root=root, reports=reports)


EXPECTED = {
    "movielens-100k": dict(
        silver=[
            ("186", "302", 3.0, utc(1998, 4, 4, 19, 22, 22)),
            ("196", "242", 3.0, utc(1997, 12, 4, 15, 55, 49)),
            ("22", "377", 1.0, utc(1997, 11, 7, 7, 18, 36)),
        ],
        items={
            "242": ("Kolya", 1996, ["Comedy"], "Kolya (1996). Genres: Comedy"),
            # ML-100k's placeholder item: its year is the word "unkonwn".
            "267": ("unkonwn", None, ["unknown"], "unkonwn. Genres: unknown"),
            "302": (
                "L.A. Confidential",
                1997,
                ["Crime", "Film-Noir", "Mystery", "Thriller"],
                "L.A. Confidential (1997). Genres: Crime, Film-Noir, Mystery, Thriller",
            ),
            "377": (
                "Heavyweights",
                1994,
                ["Children's", "Comedy"],
                "Heavyweights (1994). Genres: Children's, Comedy",
            ),
        },
        bronze=(3, 4),
        line_numbers=[2, 3, 4],
    ),
    "movielens-1m": dict(
        silver=[
            ("1", "1193", 5.0, utc(2000, 12, 31, 22, 12, 40)),
            ("1", "661", 3.0, utc(2000, 12, 31, 22, 35, 9)),
            ("2", "1357", 5.0, utc(2000, 12, 31, 21, 38, 29)),
        ],
        items={
            "1193": (
                "One Flew Over the Cuckoo's Nest",
                1975,
                ["Drama"],
                "One Flew Over the Cuckoo's Nest (1975). Genres: Drama",
            ),
            "661": (
                "James and the Giant Peach",
                1996,
                ["Animation", "Children's", "Musical"],
                "James and the Giant Peach (1996). Genres: Animation, Children's, Musical",
            ),
            "1357": (
                "Métisse (Café au Lait)",
                1993,
                ["Comedy"],
                "Métisse (Café au Lait) (1993). Genres: Comedy",
            ),
        },
        bronze=(3, 3),
        line_numbers=[1, 2, 3],
    ),
    "movielens-latest": dict(
        silver=[
            ("1", "1", 4.0, utc(2000, 7, 30, 18, 45, 3)),
            ("1", "11", 2.5, utc(2000, 7, 30, 18, 48, 51)),
            ("2", "182727", 0.5, utc(2018, 9, 16, 11, 56, 40)),
        ],
        items={
            "1": (
                "Toy Story",
                1995,
                ["Adventure", "Animation", "Children", "Comedy", "Fantasy"],
                "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy",
            ),
            "11": (
                "American President, The",
                1995,
                ["Comedy", "Drama", "Romance"],
                "American President, The (1995). Genres: Comedy, Drama, Romance",
            ),
            "182727": ("A Christmas Story Live!", 2017, [], "A Christmas Story Live! (2017)"),
        },
        bronze=(3, 3),
        line_numbers=[2, 3, 4],
    ),
    "amazon-reviews-2023": dict(
        silver=[
            (
                "AE74DYR3QUGVPZJ3P7RFWBGIX7XQ",
                "B097R46CSY",
                1.0,
                utc(2004, 1, 12, 1, 14, 32, 929000),
            ),
            ("AEOLDUSER", "B000050FDY", 3.0, utc(2014, 5, 13, 16, 53, 20)),
            ("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B00YQ6X8EO", 5.0, utc(2020, 5, 5, 14, 8, 48, 923000)),
            ("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B081TJ8YS3", 4.0, utc(2020, 5, 4, 18, 10, 55, 70000)),
        ],
        items={
            "B01CUPMQZE": (
                "Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack)",
                None,
                ["All Beauty"],
                "Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack). Genres: All Beauty",
            ),
            "B097R46CSY": (
                "Precision Hair Ties",
                None,
                ["Beauty & Personal Care", "Hair Care"],
                "Precision Hair Ties. Genres: Beauty & Personal Care, Hair Care",
            ),
            "B00YQ6X8EO": ("Lavender Spray", None, [], "Lavender Spray"),
        },
        bronze=(4, 3),
        line_numbers=[1, 2, 3, 4],
    ),
    "csv": dict(
        silver=[
            ("m1", "sku-1", 4.0, utc(2024, 3, 9, 23, 59, 59)),
            ("m1", "sku-2", 5.0, utc(2024, 3, 1, 6, 30)),
            ("m2", "sku,3", 3.0, utc(2024, 3, 10, 23, 59, 59, 500000)),
            ("m2", "sku-1", 2.5, utc(2024, 2, 29, 12)),
        ],
        items={
            "sku-1": (
                "Garden Hose",
                2019,
                ["garden", "outdoor"],
                "Garden Hose (2019). Genres: garden, outdoor",
            ),
            "sku-2": ("Desk Lamp", None, ["home"], "Desk Lamp. Genres: home"),
            "sku,3": ("Chair", None, ["home", "furniture"], "Chair. Genres: home, furniture"),
        },
        bronze=(4, 3),
        line_numbers=[2, 3, 4, 5],
    ),
    "parquet": dict(
        silver=[
            ("7", "p1", 4.5, utc(2024, 3, 9, 12)),
            ("7", "p2", 3.0, utc(2024, 3, 10, 23, 59, 59, 999999)),
            ("8", "p1", 5.0, utc(2023, 12, 31)),
        ],
        items={
            "p1": (
                "Kettle",
                2019,
                ["kitchen", "appliances"],
                "Kettle (2019). Genres: kitchen, appliances",
            ),
            "p2": ("Toaster", None, [], "Toaster"),
        },
        bronze=(3, 2),
        line_numbers=[None, None, None],
    ),
}


@pytest.mark.parametrize("source", list(EXPECTED))
def test_silver_interactions(formats, source):
    assert silver_rows(formats.lh, DS, source) == EXPECTED[source]["silver"]


@pytest.mark.parametrize("source", list(EXPECTED))
def test_silver_items(formats, source):
    assert item_rows(formats.lh, DS, source) == EXPECTED[source]["items"]


@pytest.mark.parametrize("source", list(EXPECTED))
def test_bronze_and_report(formats, source):
    lh, want = formats.lh, EXPECTED[source]
    n_inter, n_items = want["bronze"]
    inter = bronze_lines(lh, "interactions_raw", DS, source)
    assert [line for line, _, _ in inter] == want["line_numbers"]
    assert [error for _, _, error in inter] == [None] * n_inter
    assert len(bronze_lines(lh, "items_raw", DS, source)) == n_items
    assert quarantine_rows(lh, DS, source) == []

    report = formats.reports[source]
    assert (report.ds, report.source) == (DS, source)
    assert (report.interactions.records, report.interactions.written) == (n_inter, n_inter)
    assert (report.items.records, report.items.written) == (n_items, n_items)
    assert report.interactions.quarantined == {}
    assert report.items.quarantined == {}
    assert report.already_ingested == 0
    # Sources ran in EXPECTED's order, one commit per table each, after the table's
    # creation with its properties (version 0).
    assert report.versions == {t: 1 + list(EXPECTED).index(source) for t in TABLES}


def test_latin1_raw_record_round_trips(formats):
    """ML-1M's .dat files are Latin-1: 'é' is the single byte 0xE9 on disk."""
    assert b"Caf\xe9" in (formats.root / "ml-1m" / "movies.dat").read_bytes()
    raw = bronze_lines(formats.lh, "items_raw", DS, "movielens-1m")
    assert raw[2] == (3, "1357::Métisse (Café au Lait) (1993)::Comedy", None)


def test_bronze_keeps_raw_values_as_strings(formats):
    rows = formats.lh.read_arrow("interactions_raw", partitions=part(DS, "parquet")).to_pylist()
    by_item = {dict(r["fields"])["item"] + dict(r["fields"])["user"]: r for r in rows}
    row = by_item["p27"]
    assert dict(row["fields"]) == {
        "user": "7",
        "item": "p2",
        "rating": "3.0",
        "ts": "2024-03-10 23:59:59.999999",
    }
    assert json.loads(row["raw_record"]) == {
        "user": 7,
        "item": "p2",
        "stars": 3.0,
        "at": json.loads(row["raw_record"])["at"],
        "device": "web",
    }
    assert row["source_file"].endswith("/pq/events.parquet")


def test_incremental_run_writes_only_new_events(formats, capsys, monkeypatch):
    """ds2 re-delivers ds1's three ML-1M ratings plus two new ones (and a blank line).

    Run through the command line, which prints the report as JSON.
    """
    monkeypatch.setenv("R2REC_INGEST_ROOTS", str(formats.root))
    ds2 = "2024-03-11"
    base = formats.root / "ml-1m-day2"
    write(
        base / "ratings.dat",
        ML1M_RATINGS + "\n2::661::4::978299000\n3::1193::2::978301000\n",
        "latin-1",
    )
    write(base / "movies.dat", ML1M_MOVIES, "latin-1")
    rc = main(
        [
            "--source",
            "movielens-1m",
            "--path",
            str(base),
            "--ds",
            ds2,
            "--lakehouse",
            formats.lh.root,
            "--max-quarantine-share",
            "0.2",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0
    assert "error" not in err.lower() and "warn" not in err.lower(), err
    report = json.loads(out)
    assert report["already_ingested"] == 3
    assert report["interactions"] == {
        "records": 6,
        "written": 2,
        "quarantined": {"unparseable": 1},
    }
    assert silver_rows(formats.lh, ds2, "movielens-1m") == [
        ("2", "661", 4.0, utc(2000, 12, 31, 21, 43, 20)),
        ("3", "1193", 2.0, utc(2000, 12, 31, 22, 16, 40)),
    ]
    # The earlier partition is untouched.
    assert silver_rows(formats.lh, DS, "movielens-1m") == EXPECTED["movielens-1m"]["silver"]
    # A blank line is a record too: it keeps its place, so later line numbers stay right.
    assert [
        line for line, _, _ in bronze_lines(formats.lh, "interactions_raw", ds2, "movielens-1m")
    ] == [1, 2, 3, 4, 5, 6]
    assert quarantine_rows(formats.lh, ds2, "movielens-1m") == [
        (
            "interaction",
            "ratings.dat",
            4,
            "",
            "unparseable",
            "expected 4 '::'-separated fields, found 1",
        ),
    ]


# --- quarantine: one record per reason ---------------------------------------------------

DS0, DS1, DS2 = "2024-01-01", "2024-01-02", "2024-01-03"
CLEAN_RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,2.5,964982931\n"
CLEAN_MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
)
# Line numbers are 1-based and count the header. Epochs: 1704067200 = 2024-01-01 00:00 UTC,
# 1704239999 = 2024-01-02 23:59:59, 1704240000 = 2024-01-03 00:00 (the end of DS1).
DIRTY_RATINGS = (
    "userId,movieId,rating,timestamp\n"  # 1
    "10,1,4.0,1704067200\n"  # 2  ok
    "10,2,3.5,1704239999\n"  # 3  ok: the last second of DS1
    "10,3,4.0\n"  # 4  unparseable
    ",1,4.0,1704067200\n"  # 5  missing_user
    "11,,4.0,1704067200\n"  # 6  missing_item
    "11,1,great,1704067200\n"  # 7  bad_rating
    "11,2,7.0,1704067200\n"  # 8  rating_out_of_range
    "11,3,4.0,yesterday\n"  # 9  bad_timestamp
    "11,4,4.0,1704240000\n"  # 10 after DS1 ends: deferred on DS1, written on DS2
    "12,1,2.0,1704100000\n"  # 11 duplicate_event of line 12
    "12,1,5.0,1704100000\n"  # 12 ok: the last of the duplicates is kept
    "13, 7 ,0.5,1704100000\n"  # 13 ok: ids are trimmed, 0.5 is the lowest rating
)
DIRTY_MOVIES = (
    "movieId,title,genres\n"  # 1
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"  # 2 ok
    "2,Jumanji (1995)\n"  # 3 unparseable
    ",Nameless (2000),Drama\n"  # 4 missing_item
    "5,Father of the Bride Part II (1995),Comedy\n"  # 5 duplicate_item of line 6
    "5,Father of the Bride Part II (1995),Comedy|Family\n"  # 6 ok
    '7,"Sabrina (1995)",(no genres listed)\n'  # 7 ok
)
SRC = "movielens-latest"


def _expected_quarantine(ds: str, dirty: Path) -> list[tuple]:
    rows = [
        (
            "interaction",
            "ratings.csv",
            4,
            "10,3,4.0",
            "unparseable",
            "expected 4 CSV fields, found 3",
        ),
        ("interaction", "ratings.csv", 5, ",1,4.0,1704067200", "missing_user", "no user id"),
        ("interaction", "ratings.csv", 6, "11,,4.0,1704067200", "missing_item", "no item id"),
        (
            "interaction",
            "ratings.csv",
            7,
            "11,1,great,1704067200",
            "bad_rating",
            "rating 'great' is not a number",
        ),
        (
            "interaction",
            "ratings.csv",
            8,
            "11,2,7.0,1704067200",
            "rating_out_of_range",
            "rating 7.0 outside [0.5, 5.0]",
        ),
        (
            "interaction",
            "ratings.csv",
            9,
            "11,3,4.0,yesterday",
            "bad_timestamp",
            "timestamp 'yesterday' is not a valid s time",
        ),
        (
            "interaction",
            "ratings.csv",
            11,
            "12,1,2.0,1704100000",
            "duplicate_event",
            f"same key as {dirty}/ratings.csv:12",
        ),
        (
            "item",
            "movies.csv",
            3,
            "2,Jumanji (1995)",
            "unparseable",
            "expected 3 CSV fields, found 2",
        ),
        ("item", "movies.csv", 4, ",Nameless (2000),Drama", "missing_item", "no item id"),
        (
            "item",
            "movies.csv",
            5,
            "5,Father of the Bride Part II (1995),Comedy",
            "duplicate_item",
            f"same key as {dirty}/movies.csv:6",
        ),
    ]
    return sorted(rows)


@pytest.fixture(scope="module")
def quality(spark, tmp_path_factory):
    """DS0: a clean batch. DS1: one record per reason, allowed, then rerun. DS2: over limit."""
    root = tmp_path_factory.mktemp("quality")
    clean, dirty = root / "clean", root / "dirty"
    write(clean / "ratings.csv", CLEAN_RATINGS)
    write(clean / "movies.csv", CLEAN_MOVIES)
    write(dirty / "ratings.csv", DIRTY_RATINGS)
    write(dirty / "movies.csv", DIRTY_MOVIES)
    lh = Lakehouse(str(root / "lakehouse"))
    ns = SimpleNamespace(lh=lh, dirty=dirty)

    def ingest(path: Path, ds: str, share: float):
        return run_ingest(spark, lh, IngestConfig(resolve_source(SRC, str(path)), ds, share))

    ns.report0 = ingest(clean, DS0, 0.01)
    ns.report1 = ingest(dirty, DS1, 1.0)
    ns.before_rerun = {t: (lh.version(t), len(lh.history(t)), table_content(lh, t)) for t in TABLES}
    ns.rerun = ingest(dirty, DS1, 1.0)
    ns.before_failure = {t: (lh.version(t), table_content(lh, t)) for t in TABLES}
    with pytest.raises(DataQualityError) as exc:
        ingest(dirty, DS2, 0.01)
    ns.error = str(exc.value)
    return ns


def test_quarantine_holds_one_row_per_reason(quality):
    got = quarantine_rows(quality.lh, DS1, SRC)
    assert got == _expected_quarantine(DS1, quality.dirty)
    assert sorted(row[4] for row in got) == [
        "bad_rating",
        "bad_timestamp",
        "duplicate_event",
        "duplicate_item",
        "missing_item",
        "missing_item",
        "missing_user",
        "rating_out_of_range",
        "unparseable",
        "unparseable",
    ]  # the event after DS1 (line 10) is deferred, not quarantined


def test_quarantine_silver_holds_exactly_the_good_rows(quality):
    assert silver_rows(quality.lh, DS1, SRC) == [
        ("10", "1", 4.0, utc(2024, 1, 1)),
        ("10", "2", 3.5, utc(2024, 1, 2, 23, 59, 59)),  # on DS1 itself: kept
        ("12", "1", 5.0, utc(2024, 1, 1, 9, 6, 40)),  # the last duplicate wins
        ("13", "7", 0.5, utc(2024, 1, 1, 9, 6, 40)),
    ]
    # Toy Story came on DS0 with the same metadata: DS1 writes only what is new.
    assert item_rows(quality.lh, DS1, SRC) == {
        "5": (
            "Father of the Bride Part II",
            1995,
            ["Comedy", "Family"],
            "Father of the Bride Part II (1995). Genres: Comedy, Family",
        ),
        "7": ("Sabrina", 1995, [], "Sabrina (1995)"),
    }
    # Bronze keeps every record, good or bad; headers are not records.
    assert [n for n, _, _ in bronze_lines(quality.lh, "interactions_raw", DS1, SRC)] == list(
        range(2, 14)
    )
    assert [n for n, _, _ in bronze_lines(quality.lh, "items_raw", DS1, SRC)] == list(range(2, 8))


def test_quarantine_report(quality):
    report = quality.report1
    assert report.interactions.records == 12
    assert report.interactions.written == 4
    assert report.interactions.quarantined == {
        "unparseable": 1,
        "missing_user": 1,
        "missing_item": 1,
        "bad_rating": 1,
        "rating_out_of_range": 1,
        "bad_timestamp": 1,
        "duplicate_event": 1,
    }
    assert report.interactions.malformed == 6  # duplicates do not count
    assert report.deferred == 1  # line 10 waits for DS2
    # Three events of DS0 that DS0's run (the clean batch) did not see arrive now.
    assert report.late == 3
    assert report.items.records == 6
    # Toy Story was ingested on DS0 with the same metadata: only new items are written.
    assert report.items.written == 2 and report.items_unchanged == 1
    assert report.items.quarantined == {"unparseable": 1, "missing_item": 1, "duplicate_item": 1}
    assert report.items.malformed == 2
    assert report.already_ingested == 0
    metrics = {
        r["metric"]: r["value"]
        for r in quality.lh.read_arrow(
            "job_metrics", partitions=[("ds", "=", DS1), ("job", "=", f"ingest.{SRC}")]
        ).to_pylist()
    }
    assert metrics["interactions.deferred"] == 1 and metrics["interactions.written"] == 4
    assert metrics["interactions.quarantined.bad_timestamp"] == 1
    assert metrics["items.unchanged"] == 1


def test_time_boundary_depends_on_the_run_date(quality):
    """2024-01-03 00:00 UTC is after run date DS1: deferred there, quarantined nowhere."""
    for ds in (DS1, DS2):
        assert not any(line == 10 for _, _, line, *_ in quarantine_rows(quality.lh, ds, SRC))
    assert ("11", "4") not in {(u, i) for u, i, *_ in silver_rows(quality.lh, DS1, SRC)}
    assert ("10", "2") in {(u, i) for u, i, *_ in silver_rows(quality.lh, DS1, SRC)}  # 23:59:59


def test_over_the_limit_fails_with_reasons(quality):
    assert quality.error == (
        "ingest movielens-latest 2024-01-03: 6 of 12 interactions records (50.00%) "
        "quarantined, over the 1.00% limit; reasons: bad_rating=1, bad_timestamp=1, "
        'duplicate_event=1, missing_item=1. Inspect: r2rec sql "select reason, detail, '
        "raw_record from quarantine where ds = '2024-01-03' and job = 'ingest' and "
        "source = 'movielens-latest'\""
    )


def test_over_the_limit_writes_quarantine_and_bronze_but_not_silver(quality):
    lh = quality.lh
    assert quarantine_rows(lh, DS2, SRC) == _expected_quarantine(DS2, quality.dirty)
    assert len(bronze_lines(lh, "interactions_raw", DS2, SRC)) == 12
    assert len(bronze_lines(lh, "items_raw", DS2, SRC)) == 6
    for table in ("interactions", "items"):
        version, content = quality.before_failure[table]
        assert lh.version(table) == version
        assert table_content(lh, table) == content
    assert silver_rows(lh, DS2, SRC) == []
    # What the failed run did write is one commit per table, after the rerun's.
    for table in ("interactions_raw", "items_raw", "quarantine"):
        assert lh.version(table) == quality.before_failure[table][0] + 1


def test_rerun_is_idempotent(quality):
    lh = quality.lh
    assert quality.rerun.interactions == quality.report1.interactions
    assert quality.rerun.items == quality.report1.items
    for table in TABLES:
        version, history_len, content = quality.before_rerun[table]
        rerun_version = quality.rerun.versions[table]
        assert rerun_version == version + 1, table
        assert table_content(lh, table, rerun_version) == content, table
        assert table_content(lh, table, rerun_version - 1) == content, table
        history = lh.history(table)
        # The failed DS2 run committed to bronze and quarantine after the rerun.
        extra = 1 if table in ("interactions_raw", "items_raw", "quarantine") else 0
        assert len(history) == history_len + 1 + extra, table
        rerun_commit = next(h for h in history if h["version"] == rerun_version)
        assert rerun_commit["operation"] == "WRITE"
        assert rerun_commit["operationParameters"]["mode"] == "Overwrite"


def test_earlier_partition_survives_later_runs(quality):
    assert silver_rows(quality.lh, DS0, SRC) == [
        ("1", "1", 4.0, utc(2000, 7, 30, 18, 45, 3)),
        ("1", "11", 2.5, utc(2000, 7, 30, 18, 48, 51)),
    ]
    assert quality.report0.interactions.written == 2
    assert quarantine_rows(quality.lh, DS0, SRC) == []


# --- command line ---------------------------------------------------------------------------


def error_line(err: str) -> str:
    """The operator's one error line: the last on stderr, after the run's end line
    (which repeats it), with no traceback and nothing else."""
    lines = err.splitlines()
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("error: "), err
    others = [ln for ln in lines[:-1] if not ln.startswith("r2rec ingest ds=")]
    assert others == [], err
    said = lines[-2].split("; error: ", 1)[1].removesuffix("…")  # the end line, maybe cut
    assert lines[-1].removeprefix("error: ").startswith(said), err
    return lines[-1]


@pytest.mark.parametrize(
    ("ds", "message"),
    [
        ("2024-13-01", "run date '2024-13-01' is not a calendar date: month must be in 1..12"),
        ("20240101", "run date '20240101' is not of the form YYYY-MM-DD"),
        ("", "a run date (--ds YYYY-MM-DD) is required; jobs never default to today"),
    ],
)
def test_cli_bad_ds_is_one_line_error(capsys, tmp_path, ds, message):
    rc = main(["--source", "movielens-100k", "--ds", ds, "--lakehouse", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out == ""
    assert error_line(err) == f"error: {message}"


def test_cli_missing_dataset_file_is_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("R2REC_INGEST_ROOTS", str(tmp_path))
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n")
    rc = main(["--source", "movielens-1m", "--path", str(tmp_path), "--ds", DS])
    out, err = capsys.readouterr()
    assert (rc, out) == (1, "")
    missing = tmp_path / "ratings.dat"
    expected = f"error: source 'movielens-1m': {missing} is missing (expected in --path)"
    assert error_line(err) == expected


@pytest.mark.parametrize(("option", "path"), [("--path", "/etc"), ("--items-path", "/etc/passwd")])
def test_cli_path_outside_the_ingest_roots_is_refused_before_any_work(
    capsys, tmp_path, monkeypatch, option, path
):
    import spark_jobs.session

    def no_spark(*args, **kwargs):
        raise AssertionError("ingest started Spark for a refused path")

    monkeypatch.setattr(spark_jobs.session, "get_spark", no_spark)
    allowed = tmp_path / "data"
    monkeypatch.setenv("R2REC_INGEST_ROOTS", str(allowed))
    lake = tmp_path / "lakehouse"

    rc = main(["--source", "amazon-reviews-2023", "--path", str(allowed / "reviews.jsonl"),
               option, path, "--ds", DS, "--lakehouse", str(lake)])  # fmt: skip

    out, err = capsys.readouterr()
    assert (rc, out) == (1, "")
    assert error_line(err) == (
        f"error: ingest {option} '{path}' is outside the allowed ingest roots ({allowed}); "
        "set R2REC_INGEST_ROOTS (colon-separated) to allow another directory"
    )
    assert not lake.exists()


def test_cli_dataset_file_linked_out_of_the_root_is_refused(capsys, tmp_path, monkeypatch):
    base = tmp_path / "ml-1m"
    base.mkdir()
    (base / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n")
    (tmp_path / "elsewhere.dat").write_text("1::1::5::978300760\n")
    (base / "ratings.dat").symlink_to(tmp_path / "elsewhere.dat")
    monkeypatch.setenv("R2REC_INGEST_ROOTS", str(base))

    rc = main(["--source", "movielens-1m", "--path", str(base), "--ds", DS,
               "--lakehouse", str(tmp_path / "lakehouse")])  # fmt: skip

    _, err = capsys.readouterr()
    assert rc == 1
    assert error_line(err).startswith(
        f"error: ingest --path '{base}' (it holds '{base}/ratings.dat', a link"
    )
    assert not (tmp_path / "lakehouse").exists()


# --- replaying a log date by date --------------------------------------------------------

REPLAY = [  # (user, item, rating, epoch): one event a day, 2024-01-01 .. 2024-01-04, 10:00
    ("1", "1", 4.0, 1704103200), ("2", "1", 3.0, 1704103200), ("1", "11", 5.0, 1704189600),
    ("2", "11", 2.0, 1704276000), ("3", "1", 1.0, 1704362400),
]  # fmt: skip


def dump(path: Path, events) -> Path:
    write(path / "ratings.csv", "userId,movieId,rating,timestamp\n"
          + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in events))  # fmt: skip
    write(path / "movies.csv", CLEAN_MOVIES)
    return path


def test_a_replayed_log_equals_the_log_arriving_day_by_day(spark, tmp_path, capsys):
    """Each date of a replay takes the events before its end that no earlier run brought
    and defers the rest: the partitions equal those of dumps cut at each date."""
    from r2rec.config import ds_end

    full = dump(tmp_path / "full", REPLAY)
    replay, daily = Lakehouse(str(tmp_path / "replay")), Lakehouse(str(tmp_path / "daily"))
    dates = ["2023-12-30", "2024-01-01", "2024-01-02", "2024-01-03"]
    reports = []
    for ds in dates:
        reports.append(run_ingest(spark, replay, IngestConfig(resolve_source(SRC, str(full)), ds)))
        cut = [e for e in REPLAY if datetime.fromtimestamp(e[3], UTC) < ds_end(ds)]
        src = resolve_source(SRC, str(dump(tmp_path / f"cut-{ds}", cut)))
        run_ingest(spark, daily, IngestConfig(src, ds))
    for ds in dates:
        assert silver_rows(replay, ds, SRC) == silver_rows(daily, ds, SRC), ds
        assert item_rows(replay, ds, SRC) == item_rows(daily, ds, SRC), ds
    assert [len(silver_rows(replay, ds, SRC)) for ds in dates] == [0, 2, 1, 1]
    assert [r.deferred for r in reports] == [5, 3, 2, 1]
    assert [r.already_ingested for r in reports] == [0, 0, 2, 3]
    # A date before the first event: empty partitions, and it says why.
    assert "no event before the end of 2023-12-30; all 5 valid events are later" in (
        capsys.readouterr().err
    )
    assert all(not r.quarantined for r in (reports[0].interactions,))  # nothing quarantined

    # Late data: an event of 2024-01-01 appears in the log after that date was ingested.
    late = dump(tmp_path / "late", [*REPLAY, ("9", "7", 4.0, 1704110000)])
    report = run_ingest(spark, replay, IngestConfig(resolve_source(SRC, str(late)), "2024-01-04"))
    assert report.late == 1 and report.interactions.written == 2  # the late one and 01-04's
    again = run_ingest(spark, replay, IngestConfig(resolve_source(SRC, str(late)), "2024-01-05"))
    assert again.interactions.written == 0 and again.already_ingested == 6  # never twice
    everything = replay.read_arrow("interactions").to_pylist()
    assert len(everything) == len({(r["user_id"], r["item_id"], r["ts"]) for r in everything}) == 6
