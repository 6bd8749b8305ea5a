"""Shared fixtures: one local SparkSession for the whole run, a fresh lakehouse per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("R2REC_SPARK_SHUFFLE_PARTITIONS", "4")


@pytest.fixture(scope="session")
def spark():
    from r2rec.config import SparkConfig
    from spark_jobs.session import get_spark

    session = get_spark(SparkConfig(master="local[2]", driver_memory="2g", shuffle_partitions=4))
    yield session
    session.stop()


@pytest.fixture
def lakehouse(tmp_path):
    from r2rec.lakehouse import Lakehouse

    return Lakehouse(str(tmp_path / "lakehouse"))
