"""The private PostgreSQL server: a kept cluster outlives its call with its data, a
throw-away one leaves nothing behind."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from tests.dags.postgres import bindir, postgres_server


def psql(url: str, sql: str) -> str:
    u = urlparse(url)
    out = subprocess.run(
        [str(bindir() / "psql"), "-h", u.hostname, "-p", str(u.port), "-U", u.username,
         "-d", u.path.lstrip("/"), "-tA", "-c", sql],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_a_kept_cluster_starts_again_with_its_data():
    # Not under pytest's tmp_path: its root-owned 0700 parents are closed to 'postgres'.
    keep = Path(tempfile.mkdtemp(prefix="r2rec-pg-kept-"))
    try:
        with postgres_server(keep=keep) as url:
            psql(url, "CREATE TABLE runs (ds text); INSERT INTO runs VALUES ('1997-10-06')")
        assert (keep / "data" / "PG_VERSION").is_file()
        with postgres_server(keep=keep) as again:
            assert urlparse(again).path == "/airflow"
            assert psql(again, "SELECT ds FROM runs") == "1997-10-06"
    finally:
        shutil.rmtree(keep, ignore_errors=True)


def test_a_throw_away_cluster_is_removed():
    with postgres_server() as url:
        assert psql(url, "SELECT 1") == "1"
        data = Path(psql(url, "SHOW data_directory"))
    assert not data.exists() and not data.parent.exists()
