"""Small Delta tables built with delta-rs (no Spark); ``lakehouse`` is in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from r2rec.lakehouse import Lakehouse

DS = "2026-01-01"
SOURCE = "test"


def _interactions(user_ids: list[str], ds: str) -> pa.Table:
    """One event per user id: item ``i<k>``, rating k, at 2025-12-31 12:k UTC."""
    n = len(user_ids)
    return pa.table(
        {
            "user_id": user_ids,
            "item_id": [f"i{k}" for k in range(n)],
            "rating": [float(k) for k in range(n)],
            "ts": [datetime(2025, 12, 31, 12, k, tzinfo=UTC) for k in range(n)],
            "ds": [ds] * n,
            "source": [SOURCE] * n,
        }
    )


@pytest.fixture
def write_partition(lakehouse: Lakehouse) -> Callable[..., int]:
    """Overwrite the (ds, SOURCE) partition of ``interactions``; returns the new version.

    A new table is created, schema and properties in one commit, at version 0, so the
    first write is version 1.
    """

    def write(users: list[str], ds: str = DS) -> int:
        data = _interactions(users, ds)
        return lakehouse.overwrite("interactions", data, partition={"ds": ds, "source": SOURCE})

    return write
