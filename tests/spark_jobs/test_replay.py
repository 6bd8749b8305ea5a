"""A replay of one log, date by date, equals the log arriving day by day, downstream too.

tests/spark_jobs/test_ingest.py holds ingest to it; this test carries the same two
lakehouses through the jobs of the data and score DAGs (graph, samples and candidates,
chains, evidence, serve candidates) and compares every partition they wrote, row for
row: a backfill over history must leave what nightly runs would have left.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from r2rec.config import ds_end
from r2rec.lakehouse import Lakehouse
from spark_jobs import chains, evidence, graph, retrieval, samples
from spark_jobs.ingest import IngestConfig, run_ingest
from spark_jobs.ingest.sources import resolve_source
from spark_jobs.params import CandidateParams, ChainParams

SRC = "movielens-latest"
FEW = CandidateParams(n=5, seeds=(0,))
CLOSE = ChainParams(min_overlap=1)  # so few events: one shared item closes a chain
DATES = ["2024-01-03", "2024-01-05"]
TABLES = {  # table -> the jobs' partitions of a date beyond ds
    "graph_edges": {},
    "graph_stats": {},
    "samples": {},
    "candidates": {},
    "chains": {},
    "candidate_evidence": {"scope": "samples"},
    "serve_candidates": {},
}


def events() -> list[tuple[str, str, float, int]]:
    """12 users over 8 items, a few events a day from 2024-01-01 to 2024-01-06."""
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = set()
    for user in range(1, 13):
        for item in rng.sample(range(1, 9), 6):
            at = start + timedelta(hours=rng.randrange(6 * 24))
            out.add((str(user), str(item), float(rng.randint(1, 5)), int(at.timestamp())))
    return sorted(out, key=lambda e: (e[3], e[0], e[1]))


def dump(path: Path, rows) -> str:
    path.mkdir(parents=True)
    (path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    )
    (path / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(f"{i},Movie {i} (1995),Drama\n" for i in range(1, 9))
    )
    return str(path)


def content(lake: Lakehouse, table: str, ds: str, extra: dict) -> list[str]:
    parts = [("ds", "=", ds), *((k, "=", v) for k, v in extra.items())]
    rows = lake.read_arrow(table, partitions=parts).to_pylist()
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def test_downstream_tables_of_a_replay_equal_those_of_daily_arrivals(spark, tmp_path):
    log = events()
    full = dump(tmp_path / "full", log)
    replay, daily = Lakehouse(str(tmp_path / "replay")), Lakehouse(str(tmp_path / "daily"))
    for ds in DATES:
        cut = [e for e in log if datetime.fromtimestamp(e[3], UTC) < ds_end(ds)]
        sources = {replay: full, daily: dump(tmp_path / f"cut-{ds}", cut)}
        for lake, path in sources.items():
            run_ingest(spark, lake, IngestConfig(resolve_source(SRC, path), ds))
            graph.run(spark, lake, ds)
            samples.run(spark, lake, ds, candidate_params=FEW)  # 8 items: 5 candidates
            chains.run(spark, lake, ds, CLOSE)
            retrieval.run(spark, lake, ds)
            evidence.run(spark, lake, ds, scope="samples")

    sizes = {}
    for ds in DATES:
        for table, extra in TABLES.items():
            got = content(replay, table, ds, extra)
            assert got == content(daily, table, ds, extra), (table, ds)
            sizes[(table, ds)] = len(got)
    # Each date saw more history than the one before: a real replay, not one dump thrice.
    assert sizes[("graph_edges", DATES[0])] < sizes[("graph_edges", DATES[-1])]
    assert [t for t in TABLES if sizes[(t, DATES[-1])] == 0] == []  # nothing vacuous
