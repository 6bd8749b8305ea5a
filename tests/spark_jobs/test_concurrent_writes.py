"""Two real processes commit Spark writes to one Delta table at the same moment.

Airflow backfills with ``max_active_runs > 1`` run jobs of different dates at once, and
a retried task can overlap its stuck predecessor on the same date. Each writer here is
its own process with its own SparkSession; an injected barrier (r2rec.faults) holds
both after they read the table's snapshot, so both commits race every time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r2rec import faults
from r2rec.contracts import INTERACTIONS
from r2rec.lakehouse import Lakehouse

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys
from datetime import datetime, timezone
from r2rec.config import SparkConfig
from r2rec.lakehouse import Lakehouse
from r2rec.spark import get_spark
root, ds, users = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
spark = get_spark(SparkConfig(master="local[1]", driver_memory="512m", shuffle_partitions=1))
t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
rows = [(u, f"i{k}", 4.0, t0, ds, "s") for k, u in enumerate(users)]
df = spark.createDataFrame(rows, "user_id string, item_id string, rating double, ts timestamp, "
                                 "ds string, source string")
version = Lakehouse(root).overwrite("interactions", df, partition={"ds": ds, "source": "s"})
print(version)
"""


def write_at_once(root: str, tmp_path: Path, jobs: list[tuple[str, list[str]]]) -> list[str]:
    """Start one writer process per job, all held at the commit until all are there."""
    barrier = tmp_path / f"barrier-{len(list(tmp_path.iterdir()))}"
    env = {**os.environ, faults.BARRIER_ENV: f"lakehouse.before_commit:{len(jobs)}:{barrier}"}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, root, ds, ",".join(users)], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for ds, users in jobs
    ]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert len(list(barrier.iterdir())) == len(jobs)  # both really met before committing
    return [out.strip().splitlines()[-1] for out, _ in outs]


def users_by_date(lake: Lakehouse) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in lake.read_arrow(INTERACTIONS).to_pylist():
        out.setdefault(r["ds"], []).append(r["user_id"])
    return {ds: sorted(us) for ds, us in out.items()}


def commit_attempts(lake: Lakehouse) -> list[str]:
    return [
        json.dumps(c.get("r2rec.attempt"))
        for c in lake.history(INTERACTIONS)
        if c.get("r2rec.writer") == "spark-executors"
    ]


def test_writers_of_different_dates_both_commit(lakehouse, tmp_path):
    from tests.core.test_lakehouse import events

    for ds in ("2026-01-01", "2026-01-02"):  # two existing dates
        lakehouse.overwrite(INTERACTIONS, events(ds, ["old"]), partition={"ds": ds, "source": "s"})
    # Now both existing dates are reprocessed at the same moment.
    write_at_once(lakehouse.root, tmp_path, [("2026-01-01", ["a1", "a2"]), ("2026-01-02", ["b1"])])
    assert users_by_date(lakehouse) == {"2026-01-01": ["a1", "a2"], "2026-01-02": ["b1"]}
    # One of the two lost the race and committed on its retry, against the new snapshot.
    assert '"2"' in commit_attempts(lakehouse)


def test_two_writers_of_the_same_new_date_never_double_it(lakehouse, tmp_path):
    write_at_once(lakehouse.root, tmp_path, [("2026-01-03", ["p1", "p2"]), ("2026-01-03", ["q1"])])
    got = users_by_date(lakehouse)["2026-01-03"]
    assert got in (["p1", "p2"], ["q1"])  # exactly one writer's rows: replaced, not added
    assert '"2"' in commit_attempts(lakehouse)  # the loser retried and replaced exactly
