"""Seeded synthetic interactions with power-law user activity and item popularity.

    python -m bench.synthetic --events 1000000 --lakehouse /tmp/bench-lh --ds 2026-11-25

Real logs are heavy-tailed on both sides: a few users rate thousands of items and a
few blockbusters collect most ratings. That tail is what makes naive chain expansion
quadratic, so the benchmark data must have it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from r2rec.contracts import INTERACTIONS
from r2rec.lakehouse import Lakehouse

SOURCE = "synthetic"


def generate(
    events: int, seed: int = 0, zipf_users: float = 1.0, zipf_items: float = 1.0
) -> pa.Table:
    """Exactly ``events`` distinct (user, item) interactions, ~events/50 users, ~events/25 items."""
    rng = np.random.default_rng(seed)
    n_users = max(events // 50, 10)
    n_items = max(events // 25, 50)
    user_p = 1.0 / np.arange(1, n_users + 1) ** zipf_users
    item_p = 1.0 / np.arange(1, n_items + 1) ** zipf_items
    user_p, item_p = user_p / user_p.sum(), item_p / item_p.sum()
    # Every user gets three events so each has a history; the rest follow the power law.
    pairs = np.unique(
        np.repeat(np.arange(n_users), 3) * n_items + rng.choice(n_items, 3 * n_users, p=item_p)
    )
    while len(pairs) < events:
        need = int((events - len(pairs)) * 1.3) + 100
        draw = rng.choice(n_users, need, p=user_p) * n_items + rng.choice(n_items, need, p=item_p)
        pairs = np.unique(np.concatenate([pairs, draw]))
    pairs = rng.permutation(pairs)[:events]
    users, items = pairs // n_items, pairs % n_items
    start = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    span = datetime(2026, 1, 1, tzinfo=UTC).timestamp() - start
    ts_us = ((start + rng.random(events) * span) * 1e6).astype("int64")
    ratings = rng.integers(1, 6, size=events).astype("float64")
    return pa.table(
        {
            "user_id": pa.array(np.char.add("u", users.astype(str))),
            "item_id": pa.array(np.char.add("i", items.astype(str))),
            "rating": pa.array(ratings),
            "ts": pa.array(ts_us, pa.timestamp("us", tz="UTC")),
        }
    )


def write(lakehouse: Lakehouse, table: pa.Table, ds: str) -> None:
    n = table.num_rows
    table = table.append_column("ds", pa.array([ds] * n)).append_column(
        "source", pa.array([SOURCE] * n)
    )
    lakehouse.overwrite(INTERACTIONS, table, partition={"ds": ds, "source": SOURCE})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lakehouse", required=True)
    p.add_argument("--ds", default="2026-11-25")
    args = p.parse_args(argv)
    write(Lakehouse(args.lakehouse), generate(args.events, args.seed), args.ds)


if __name__ == "__main__":
    main()
