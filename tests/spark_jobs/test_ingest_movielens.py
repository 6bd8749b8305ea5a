"""The real MovieLens-100k, as shipped in the recbole wheel, through the whole ingest job."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow.compute as pc
import pytest

from spark_jobs.ingest import IngestConfig, run_ingest
from spark_jobs.ingest.sources import resolve_source

pytestmark = pytest.mark.slow

DS = "2026-11-25"
SRC = "movielens-100k"
PART = [("ds", "=", DS), ("source", "=", SRC)]


@pytest.fixture(scope="module")
def ml100k(spark, tmp_path_factory):
    from r2rec.lakehouse import Lakehouse

    lh = Lakehouse(str(tmp_path_factory.mktemp("ml100k") / "lakehouse"))
    report = run_ingest(spark, lh, IngestConfig(resolve_source(SRC), DS))
    return lh, report


def test_interactions(ml100k):
    lh, report = ml100k
    inter = lh.read_arrow("interactions", partitions=PART)
    assert inter.num_rows == 100_000
    assert len(pc.unique(inter["user_id"])) == 943
    assert len(pc.unique(inter["item_id"])) == 1_682
    assert pc.min_max(inter["rating"]).as_py() == {"min": 1.0, "max": 5.0}
    assert report.interactions.records == 100_000
    assert report.interactions.written == 100_000
    assert report.interactions.quarantined == {}
    assert lh.read_arrow("interactions_raw", partitions=PART).num_rows == 100_000

    # The first data line of ml-100k.inter: 196 242 3 881250949.
    row = inter.filter(
        pc.and_(pc.equal(inter["user_id"], "196"), pc.equal(inter["item_id"], "242"))
    ).to_pylist()
    assert [(r["rating"], r["ts"]) for r in row] == [
        (3.0, datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC))
    ]
    assert row[0]["ts"] == datetime.fromtimestamp(881250949, UTC)


def test_items(ml100k):
    lh, report = ml100k
    items = lh.read_arrow("items", partitions=PART)
    assert items.num_rows == 1_682
    assert len(pc.unique(items["item_id"])) == 1_682
    assert report.items.records == 1_682
    assert report.items.quarantined == {}
    toy_story = items.filter(pc.equal(items["item_id"], "1")).to_pylist()
    assert [(r["title"], r["year"], r["genres"], r["text"]) for r in toy_story] == [
        (
            "Toy Story",
            1995,
            ["Animation", "Children's", "Comedy"],
            "Toy Story (1995). Genres: Animation, Children's, Comedy",
        )
    ]


def test_nothing_quarantined(ml100k):
    lh, _ = ml100k
    quarantine = lh.read_arrow(
        "quarantine", partitions=[("ds", "=", DS), ("job", "=", "ingest"), ("source", "=", SRC)]
    )
    assert quarantine.num_rows == 0
