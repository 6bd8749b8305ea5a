"""Record parsers and source resolution of the ingest job: plain Python, no Spark.

Every line below is in the exact format of the real dataset it stands for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from r2rec.errors import R2RecError
from spark_jobs.ingest.sources import (
    SOURCES,
    ColumnMapping,
    SourceFormat,
    map_columnar_row,
    resolve_source,
)


def _fmt(name: str) -> SourceFormat:
    return SourceFormat(name, ("interactions",), ("items",))


def _write(path: Path, text: str, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_known_sources():
    assert SOURCES == (
        "amazon-reviews-2023",
        "movielens-100k",
        "movielens-1m",
        "movielens-latest",
        "csv",
        "parquet",
    )


# --- MovieLens-100k (RecBole atomic files) -------------------------------------------------


def test_ml100k_interactions():
    parse = _fmt("movielens-100k").interaction_parser()
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert parse(header, 1) == (None, None)
    assert parse("196\t242\t3\t881250949", 2) == (
        {"user": "196", "item": "242", "rating": "3", "ts": "881250949"},
        None,
    )
    assert parse("196\t242\t3\t881250949\r\n", 3)[0] == {
        "user": "196",
        "item": "242",
        "rating": "3",
        "ts": "881250949",
    }
    assert parse("196\t242\t3", 4) == (None, "expected 4 tab-separated fields, found 3")
    assert parse("196 242 3 881250949", 5) == (None, "expected 4 tab-separated fields, found 1")


def test_ml100k_header_is_only_skipped_on_line_1():
    parse = _fmt("movielens-100k").interaction_parser()
    # The same text further down is a record (it fails typing later, in silver).
    fields, error = parse("user_id:token\titem_id:token\trating:float\ttimestamp:float", 7)
    assert error is None
    assert fields == {
        "user": "user_id:token",
        "item": "item_id:token",
        "rating": "rating:float",
        "ts": "timestamp:float",
    }


def test_ml100k_items():
    parse = _fmt("movielens-100k").item_parser()
    header = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
    assert parse(header, 1) == (None, None)
    assert parse("1\tToy Story\t1995\tAnimation Children's Comedy", 2) == (
        {
            "item": "1",
            "title": "Toy Story",
            "year": "1995",
            "genres": "Animation|Children's|Comedy",
        },
        None,
    )
    assert parse("302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller", 303) == (
        {
            "item": "302",
            "title": "L.A. Confidential",
            "year": "1997",
            "genres": "Crime|Film-Noir|Mystery|Thriller",
        },
        None,
    )
    assert parse("1\tToy Story\t1995", 2) == (None, "expected 4 tab-separated fields, found 3")


# --- MovieLens-1M (.dat, '::') ---------------------------------------------------------------


def test_ml1m_ratings_have_no_header():
    parse = _fmt("movielens-1m").interaction_parser()
    assert parse("1::1193::5::978300760", 1) == (
        {"user": "1", "item": "1193", "rating": "5", "ts": "978300760"},
        None,
    )
    assert parse("1::1193::5", 2) == (None, "expected 4 '::'-separated fields, found 3")
    assert parse("", 3) == (None, "expected 4 '::'-separated fields, found 1")


def test_ml1m_movies():
    parse = _fmt("movielens-1m").item_parser()
    assert parse("1::Toy Story (1995)::Animation|Children's|Comedy", 1) == (
        {
            "item": "1",
            "title": "Toy Story",
            "year": "1995",
            "genres": "Animation|Children's|Comedy",
        },
        None,
    )
    assert parse("11::American President, The (1995)::Comedy|Drama|Romance", 11) == (
        {
            "item": "11",
            "title": "American President, The",
            "year": "1995",
            "genres": "Comedy|Drama|Romance",
        },
        None,
    )
    # Parentheses inside the title stay; only the trailing (YYYY) is the year.
    assert parse("1357::Métisse (Café au Lait) (1993)::Comedy", 2)[0] == {
        "item": "1357",
        "title": "Métisse (Café au Lait)",
        "year": "1993",
        "genres": "Comedy",
    }
    assert parse("9::No Year Given::Drama", 3)[0] == {
        "item": "9",
        "title": "No Year Given",
        "year": None,
        "genres": "Drama",
    }
    assert parse("11::American President", 4) == (None, "expected 3 '::'-separated fields, found 2")


def test_ml1m_is_latin1(tmp_path):
    (tmp_path / "ratings.dat").write_bytes(b"")
    (tmp_path / "movies.dat").write_bytes(b"")
    fmt = resolve_source("movielens-1m", str(tmp_path))
    # Spark 4 accepts only canonical charset names: "latin-1" would be refused.
    assert fmt.encoding == "iso-8859-1"
    assert fmt.interaction_files == (str(tmp_path / "ratings.dat"),)
    assert fmt.item_files == (str(tmp_path / "movies.dat"),)
    assert fmt.rating_range == (1.0, 5.0)
    assert fmt.ts_unit == "s"


# --- MovieLens latest (CSV with quoted titles) ---------------------------------------------


def test_ml_latest_ratings():
    parse = _fmt("movielens-latest").interaction_parser()
    assert parse("userId,movieId,rating,timestamp", 1) == (None, None)
    assert parse("1,1,4.0,964982703", 2) == (
        {"user": "1", "item": "1", "rating": "4.0", "ts": "964982703"},
        None,
    )
    assert parse("1,1,4.0", 3) == (None, "expected 4 CSV fields, found 3")
    assert parse("1,1,4.0,964982703,x", 4) == (None, "expected 4 CSV fields, found 5")


def test_ml_latest_movies():
    parse = _fmt("movielens-latest").item_parser()
    assert parse("movieId,title,genres", 1) == (None, None)
    assert parse('11,"American President, The (1995)",Comedy|Drama|Romance', 10) == (
        {
            "item": "11",
            "title": "American President, The",
            "year": "1995",
            "genres": "Comedy|Drama|Romance",
        },
        None,
    )
    assert parse("182727,A Christmas Story Live! (2017),(no genres listed)", 9700) == (
        {"item": "182727", "title": "A Christmas Story Live!", "year": "2017", "genres": ""},
        None,
    )
    assert parse('3,"Grumpier Old Men ""II"" (1995)",Comedy', 4)[0] == {
        "item": "3",
        "title": 'Grumpier Old Men "II"',
        "year": "1995",
        "genres": "Comedy",
    }


def test_ml_latest_movies_bad_lines():
    parse = _fmt("movielens-latest").item_parser()
    # Without the quotes, the comma in the title makes four fields.
    assert parse("11,American President, The (1995),Comedy", 2) == (
        None,
        "expected 3 CSV fields, found 4",
    )
    assert parse('11,"American President, The (1995),Comedy', 3) == (
        None,
        "bad CSV: unexpected end of data",
    )
    assert parse('11,"American" President,Comedy', 4) == (
        None,
        "bad CSV: ',' expected after '\"'",
    )


# --- Amazon Reviews 2023 (JSON Lines) ---------------------------------------------------


REVIEW = (
    '{"rating": 5.0, "title": "Such a lovely scent but not overpowering", "text": "This '
    'spray is really nice.", "images": [], "asin": "B00YQ6X8EO", "parent_asin": '
    '"B00YQ6X8EO", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": 1588687728923, '
    '"helpful_vote": 0, "verified_purchase": true}'
)
META = (
    '{"main_category": "All Beauty", "title": "Howard LC0008 Leather Conditioner, 8-Ounce '
    '(4-Pack)", "average_rating": 4.8, "rating_number": 10, "features": [], "description": '
    '[], "price": null, "images": [], "videos": [], "store": "Howard Products", '
    '"categories": [], "details": {"Package Dimensions": "7.1 x 5.5 x 3 inches"}, '
    '"parent_asin": "B01CUPMQZE", "bought_together": null}'
)


def test_amazon_review():
    parse = _fmt("amazon-reviews-2023").interaction_parser()
    assert parse(REVIEW, 1) == (
        {
            "user": "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
            "item": "B00YQ6X8EO",
            "rating": "5.0",
            "ts": "1588687728923",
        },
        None,
    )


def test_amazon_review_item_is_parent_asin_with_asin_fallback():
    parse = _fmt("amazon-reviews-2023").interaction_parser()
    variant = '{"rating": 1, "asin": "B07PNNCSP9", "parent_asin": "B097R46CSY", "user_id": "U1", '
    fields, _ = parse(variant + '"timestamp": 1589665266052}', 1)
    assert fields["item"] == "B097R46CSY"
    older = '{"rating": 4, "asin": "B0OLD00001", "user_id": "U2", "timestamp": 1400000000000}'
    assert parse(older, 2) == (
        {"user": "U2", "item": "B0OLD00001", "rating": "4", "ts": "1400000000000"},
        None,
    )
    null_parent = '{"asin": "B0OLD00002", "parent_asin": null, "user_id": "U3", "timestamp": 1}'
    assert parse(null_parent, 3) == (
        {"user": "U3", "item": "B0OLD00002", "rating": None, "ts": "1"},
        None,
    )


def test_amazon_review_missing_fields_become_none():
    parse = _fmt("amazon-reviews-2023").interaction_parser()
    assert parse('{"rating": 3.0, "parent_asin": "B1"}', 1) == (
        {"user": None, "item": "B1", "rating": "3.0", "ts": None},
        None,
    )


def test_amazon_bad_json():
    parse = _fmt("amazon-reviews-2023").interaction_parser()
    assert parse('{"rating": 5.0, "asin": "B01",', 1) == (
        None,
        "bad JSON: Expecting property name enclosed in double quotes at column 31",
    )
    assert parse('["B01", 5.0]', 2) == (None, "JSON line is not an object")
    assert parse("", 3) == (None, "bad JSON: Expecting value at column 1")
    meta = _fmt("amazon-reviews-2023").item_parser()
    assert meta("{'parent_asin': 'B01'}", 1) == (
        None,
        "bad JSON: Expecting property name enclosed in double quotes at column 2",
    )


def test_amazon_meta():
    parse = _fmt("amazon-reviews-2023").item_parser()
    # No categories: main_category stands in.
    assert parse(META, 1) == (
        {
            "item": "B01CUPMQZE",
            "title": "Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack)",
            "year": None,
            "genres": "All Beauty",
        },
        None,
    )
    line = (
        '{"main_category": "All Beauty", "title": "Hair Ties", "categories": '
        '["Beauty & Personal Care", "Hair Care|Accessories"], "asin": "B0FALLBACK"}'
    )
    assert parse(line, 2) == (
        {
            "item": "B0FALLBACK",
            "title": "Hair Ties",
            "year": None,
            "genres": "Beauty & Personal Care|Hair Care/Accessories",
        },
        None,
    )
    assert parse('{"parent_asin": "B2", "categories": "Books"}', 3)[0]["genres"] == "Books"
    assert parse('{"parent_asin": "B3"}', 4)[0] == {
        "item": "B3",
        "title": None,
        "year": None,
        "genres": "",
    }


# --- generic CSV -------------------------------------------------------------------------


def test_generic_csv(tmp_path):
    events = _write(
        tmp_path / "events.csv",
        "member;sku;stars;when;channel\nm1;s-1;4,5;2024-03-01T10:00:00Z;web\n",
    )
    items = _write(tmp_path / "catalog.csv", "sku;name;tags\ns-1;Widget (2020);home,garden\n")
    mapping = ColumnMapping(
        user="member",
        item="sku",
        rating="stars",
        ts="when",
        item_title="name",
        item_genres="tags",
        genre_separator=",",
    )
    fmt = resolve_source("csv", events, items, mapping, ts_unit="iso", delimiter=";")
    assert fmt.kind == "text"
    assert fmt.ts_unit == "iso"
    assert fmt.rating_range is None
    assert fmt.csv_headers == (
        ("member", "sku", "stars", "when", "channel"),
        ("sku", "name", "tags"),
    )

    inter = fmt.interaction_parser()
    assert inter("member;sku;stars;when;channel", 1) == (None, None)
    assert inter("m1;s-1;4,5;2024-03-01T10:00:00Z;web", 2) == (
        {"user": "m1", "item": "s-1", "rating": "4,5", "ts": "2024-03-01T10:00:00Z"},
        None,
    )
    assert inter('m2;"s;2";3;2024-03-01;app', 3)[0]["item"] == "s;2"
    assert inter("m1;s-1;4", 4) == (None, "expected 5 CSV fields, found 3")

    item = fmt.item_parser()
    assert item("sku;name;tags", 1) == (None, None)
    assert item("s-1;Widget (2020);home,garden", 2) == (
        {"item": "s-1", "title": "Widget", "year": "2020", "genres": "home|garden"},
        None,
    )
    assert item("s-2;Gadget;", 3) == (
        {"item": "s-2", "title": "Gadget", "year": None, "genres": ""},
        None,
    )


def test_generic_csv_implicit_feedback_and_year_column(tmp_path):
    events = _write(tmp_path / "clicks.csv", "user_id,item_id,timestamp\nu,i,1700000000\n")
    items = _write(tmp_path / "items.csv", "item_id,title,year\ni,Widget (2020),2019\n")
    mapping = ColumnMapping(rating=None, item_year="year", item_genres=None)
    fmt = resolve_source("csv", events, items, mapping)
    assert fmt.interaction_parser()("u,i,1700000000", 2) == (
        {"user": "u", "item": "i", "rating": None, "ts": "1700000000"},
        None,
    )
    # A year column wins over a year in the title, which then stays as written.
    assert fmt.item_parser()("i,Widget (2020),2019", 2) == (
        {"item": "i", "title": "Widget (2020)", "year": "2019", "genres": None},
        None,
    )


def test_generic_csv_header_with_byte_order_mark(tmp_path):
    events = tmp_path / "excel.csv"
    events.write_bytes(b"\xef\xbb\xbfuser_id,item_id,rating,timestamp\r\nu,i,5,1700000000\r\n")
    fmt = resolve_source("csv", str(events))
    assert fmt.csv_headers == (("user_id", "item_id", "rating", "timestamp"), ())


def test_map_columnar_row():
    fmt = SourceFormat(
        "parquet",
        ("x.parquet",),
        kind="parquet",
        mapping=ColumnMapping(user="u", item="i", rating=None, ts="t", item_year="y"),
    )
    assert map_columnar_row({"u": 7, "i": "a", "t": 1700000000}, fmt, "interactions") == {
        "user": "7",
        "item": "a",
        "rating": None,
        "ts": "1700000000",
    }
    assert map_columnar_row(
        {"i": "a", "title": "Widget", "y": 2001, "genres": "x|y"}, fmt, "items"
    ) == {"item": "a", "title": "Widget", "year": "2001", "genres": "x|y"}


# --- resolve_source errors --------------------------------------------------------------


def test_unknown_source():
    with pytest.raises(R2RecError) as exc:
        resolve_source("netflix-prize", "/data")
    assert str(exc.value) == (
        "unknown source 'netflix-prize' (known: amazon-reviews-2023, movielens-100k, "
        "movielens-1m, movielens-latest, csv, parquet)"
    )


@pytest.mark.parametrize(
    "name", ["movielens-1m", "movielens-latest", "amazon-reviews-2023", "csv", "parquet"]
)
def test_missing_path(name):
    with pytest.raises(R2RecError, match=f"^source '{name}' needs --path$"):
        resolve_source(name)


def test_path_does_not_exist(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(R2RecError) as exc:
        resolve_source("movielens-latest", missing)
    assert str(exc.value) == f"source 'movielens-latest': path '{missing}' does not exist"
    reviews = _write(tmp_path / "All_Beauty.jsonl", REVIEW + "\n")
    with pytest.raises(R2RecError) as exc:
        resolve_source("amazon-reviews-2023", reviews, missing)
    assert str(exc.value) == (
        f"source 'amazon-reviews-2023': items-path '{missing}' does not exist"
    )


def test_dataset_directory_without_the_dataset_files(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n")
    with pytest.raises(R2RecError) as exc:
        resolve_source("movielens-1m", str(tmp_path))
    assert str(exc.value) == (
        f"source 'movielens-1m': {tmp_path / 'movies.dat'} is missing (expected in --path)"
    )
    with pytest.raises(R2RecError, match=r"ratings\.csv is missing \(expected in --path\)$"):
        resolve_source("movielens-latest", str(tmp_path))
    with pytest.raises(R2RecError, match=r"ml-100k\.inter is missing \(expected in --path\)$"):
        resolve_source("movielens-100k", str(tmp_path))


def test_csv_mapping_column_not_in_header(tmp_path):
    events = _write(tmp_path / "events.csv", "member,sku,stars,when\nm,s,5,1700000000\n")
    with pytest.raises(R2RecError) as exc:
        resolve_source("csv", events)  # default mapping expects user_id, item_id, ...
    assert str(exc.value) == (
        f"column 'user_id' is not in the header of {events}: ['member', 'sku', 'stars', 'when']"
    )
    mapping = ColumnMapping(user="member", item="sku", rating="score", ts="when")
    with pytest.raises(R2RecError, match=r"^column 'score' is not in the header of "):
        resolve_source("csv", events, mapping=mapping)
    # Wrong delimiter: the whole header is one column, and the message shows it.
    with pytest.raises(R2RecError, match=r": \['member,sku,stars,when'\]$"):
        resolve_source("csv", events, mapping=ColumnMapping(user="member"), delimiter=";")


def test_csv_item_column_not_in_items_header(tmp_path):
    events = _write(tmp_path / "events.csv", "member,sku,stars,when\nm,s,5,1700000000\n")
    items = _write(tmp_path / "items.csv", "id,name\ns,Widget\n")
    mapping = ColumnMapping(user="member", item="sku", rating="stars", ts="when")
    with pytest.raises(R2RecError) as exc:
        resolve_source("csv", events, items, mapping)
    assert str(exc.value) == f"column 'sku' is not in the header of {items}: ['id', 'name']"


def test_csv_path_must_be_a_file(tmp_path):
    with pytest.raises(R2RecError) as exc:
        resolve_source("csv", str(tmp_path))
    assert str(exc.value) == f"csv source expects a file, got the directory {tmp_path}"
