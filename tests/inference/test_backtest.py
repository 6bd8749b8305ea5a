"""The backtest: published top-k and baselines as of D against interactions in [D, D + H)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from inference import backtest
from inference.backtest import list_metrics, user_metrics
from inference.metrics import interval
from r2rec.contracts import (
    BACKTEST_METRICS,
    GRAPH_EDGES,
    INTERACTIONS,
    ITEMS,
    RECOMMENDATIONS,
    SERVE_CANDIDATES,
    retrieval_order,
)
from r2rec.jobs import record_metrics

D = "1998-01-05"


def test_user_metrics_by_hand():
    future = {"b", "d", "x"}
    m = user_metrics(["a", "b", "c", "d"], future, k=4)
    assert m["hr"] == 1.0
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg"] == pytest.approx(dcg / ideal)
    # Only the first k count: "d" at rank 4 is outside k = 3.
    assert user_metrics(["a", "b", "c", "d"], future, k=3)["recall"] == pytest.approx(1 / 3)
    assert user_metrics(["a", "c"], future, k=2) == {"hr": 0.0, "recall": 0.0, "ndcg": 0.0,
                                                     "mrr": 0.0}  # fmt: skip


def test_users_without_a_future_are_out_of_hr_and_in_the_active_share():
    lists = {"u1": ["a", "b"], "u2": ["a", "c"], "u3": ["c", "d"]}
    future = {"u1": {"b"}, "u3": {"z"}}  # u2 did nothing in the horizon
    pop = {"a": 0.5, "b": 0.25, "c": 0.125}
    out = list_metrics(lists, future, 2, catalogue=8, popularity=pop, floor=1 / 16)
    assert out["hr@2"][0] == pytest.approx(1 / 2) and out["hr@2"][3] == 2  # u1, u3 only
    assert out["share_active"][0] == pytest.approx(2 / 3)
    assert out["users"][0] == 3 and out["users_with_future"][0] == 2
    assert out["coverage@2"][0] == pytest.approx(4 / 8)  # a, b, c, d of 8 items
    # Self-information in bits; "d" nobody took before D gets the floor.
    bits = [1, 2, 1, 3, 3, 4]
    assert out["novelty@2"][0] == pytest.approx(sum(bits) / 6)
    # HR is one 0/1 per user: Wilson's interval for 1 of 2 (a normal one would be
    # 0.5 +- 0.69, below 0 and above 1).
    assert out["hr@2"][1:3] == pytest.approx((0.0945, 0.9055), abs=5e-4)
    # The other per-user metrics keep the normal interval of a mean.
    assert out["recall@2"][1:3] == pytest.approx(interval([1 / 1, 0.0]))


def test_retrieval_order_is_chains_by_paths_then_popular_by_share():
    items = ["p1", "c1", "c2", "p2", "c3"]
    sources = ["popular", "chain", "chain", "popular", "chain"]
    scores = [0.2, 3.0, 5.0, 0.4, 3.0]
    assert retrieval_order(items, sources, scores) == ["c2", "c1", "c3", "p2", "p1"]


# --- the job on a small lakehouse ---------------------------------------------------------
def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def day(offset: int) -> str:
    return (datetime.fromisoformat(D) + timedelta(days=offset)).date().isoformat()


PAST = [  # (user, item, day offset) before D
    ("u1", "i1", -3), ("u1", "i2", -2), ("u2", "i1", -3), ("u2", "i3", -1),
    ("u3", "i2", -2), ("u3", "i4", -1), ("u4", "i1", -2), ("u4", "i2", -1),
]  # fmt: skip
FUTURE = [  # after D: u1 takes i3 on D+1, u2 takes i2 on D+9, u3 retakes i2 (a rewatch)
    ("u1", "i3", 1), ("u2", "i2", 9), ("u3", "i2", 2),
]  # fmt: skip


def write(lh, ingested_days: int) -> None:
    """Interactions ingested daily from D-3 to D+ingested_days, the graph and serve
    candidates of D, and u1..u3's published lists (u4 was not active, not published)."""
    events = PAST + FUTURE
    last = ingested_days
    for offset in range(-3, last + 1):
        ds = day(offset)
        rows = [e for e in events if e[2] == offset]
        lh.overwrite(
            INTERACTIONS,
            pa.table({
                "user_id": [u for u, _, _ in rows], "item_id": [i for _, i, _ in rows],
                "rating": [4.0] * len(rows), "ts": [at(ds) for _ in rows],
                "ds": [ds] * len(rows), "source": ["test"] * len(rows),
            }, INTERACTIONS.arrow_schema()),
            partition={"ds": ds, "source": "test"},
        )  # fmt: skip
        record_metrics(lh, "ingest.test", ds, {"interactions.written": len(rows)})
    lh.overwrite(
        ITEMS,
        pa.table({
            "item_id": [f"i{k}" for k in range(1, 7)], "title": [f"T{k}" for k in range(1, 7)],
            "year": [1990] * 6, "genres": [["Drama"]] * 6, "text": ["t"] * 6,
            "ds": [day(-3)] * 6, "source": ["test"] * 6,
        }, ITEMS.arrow_schema()),
        partition={"ds": day(-3), "source": "test"},
    )  # fmt: skip
    lh.overwrite(
        GRAPH_EDGES,
        pa.table({
            "ds": [D] * len(PAST), "user_id": [u for u, _, _ in PAST],
            "item_id": [i for _, i, _ in PAST], "rating": [4.0] * len(PAST),
            "ts": [at(day(o)) for _, _, o in PAST], "weight": [4.0] * len(PAST),
        }, GRAPH_EDGES.arrow_schema()),
        partition={"ds": D},
    )  # fmt: skip
    cands = {  # retrieval order: chain by paths, then popular
        "u1": (["i4", "i3"], ["popular", "chain"], [0.2, 2.0]),
        "u2": (["i2", "i4"], ["chain", "chain"], [1.0, 3.0]),
        "u3": (["i1", "i3"], ["chain", "popular"], [1.0, 0.3]),
    }
    lh.overwrite(
        SERVE_CANDIDATES,
        pa.Table.from_pylist([
            {"ds": D, "user_id": u, "history": [i for uu, i, _ in PAST if uu == u],
             "items": items, "labels": ["C1", "C2"], "sources": src, "retrieval_scores": sc}
            for u, (items, src, sc) in cands.items()
        ], SERVE_CANDIDATES.arrow_schema()),
        partition={"ds": D},
    )  # fmt: skip
    published = {"u1": ["i4", "i3"], "u2": ["i2", "i4"], "u3": ["i3", "i1"]}
    rows = [
        {"ds": D, "mode": "serve", "user_id": u, "sample_id": None, "rank": r, "item_id": i,
         "label": f"C{r}", "score": -float(r), "reasoning": "...", "answer_valid": True,
         "errors": [], "history_truncated": False, "model_version": "m@1", "prompt_version": "v2",
         "run_id": "r", "evidence": "chains", "prompt_flags": [], "reasoning_names_top": True,
         "reasoning_grounded": True, "reasoning_no_repeat": True}
        for u, items in published.items()
        for r, i in enumerate(items, start=1)
    ]  # fmt: skip
    lh.overwrite(
        RECOMMENDATIONS,
        pa.Table.from_pylist(rows, RECOMMENDATIONS.arrow_schema()),
        partition={"ds": D, "mode": "serve"},
    )


def metric(lh, h: int, model: str, name: str) -> float:
    rows = lh.read_arrow(BACKTEST_METRICS, partitions=[("ds", "=", D)]).to_pylist()
    (hit,) = [r for r in rows if (r["horizon_days"], r["model"], r["metric"]) == (h, model, name)]
    return hit["value"]


def test_a_date_is_backtested_once_observable_and_each_model_is_scored(lakehouse, capsys):
    write(lakehouse, ingested_days=6)  # [D, D+7) is in; [D, D+30) is not
    out = backtest.run(None, lakehouse, D, horizons=(7, 30), k=2,
                       baselines=("popularity", "itemknn"))  # fmt: skip
    assert out["not_yet_observable"] == [{"ds": D, "horizon_days": 30, "observable_after": day(29)}]
    assert "H=30: not yet observable" in capsys.readouterr().err
    # H=7: u1 took i3 (new); u2's i2 is on D+9, outside; u3's i2 is a rewatch, not new.
    assert metric(lakehouse, 7, "llm:m@1", "users") == 3
    assert metric(lakehouse, 7, "llm:m@1", "users_with_future") == 1
    assert metric(lakehouse, 7, "llm:m@1", "share_active") == pytest.approx(1 / 3)
    # Published u1 = [i4, i3]: a hit at rank 2. Retrieval u1 = [i3 (chain), i4]: rank 1.
    assert metric(lakehouse, 7, "llm:m@1", "hr@2") == 1.0
    assert metric(lakehouse, 7, "llm:m@1", "mrr@2") == pytest.approx(0.5)
    assert metric(lakehouse, 7, "retrieval", "mrr@2") == pytest.approx(1.0)
    # Popularity as of D over u1's unseen items: i3 (1 user) and i4 (1 user), id order.
    assert metric(lakehouse, 7, "popularity", "hr@2") == 1.0
    # Published lists show i1..i4 of the 6 catalogue items; retrieval's top 2 the same.
    assert metric(lakehouse, 7, "llm:m@1", "coverage@2") == pytest.approx(4 / 6)
    detail = json.loads(lakehouse.read_arrow(BACKTEST_METRICS).to_pylist()[0]["detail"])
    assert detail["catalogue"] == 6 and detail["train_edges"] == len(PAST)
    assert {r["horizon_days"] for r in lakehouse.read_arrow(BACKTEST_METRICS).to_pylist()} == {7}
    assert out["report"].endswith("backtest/backtest.md")
    assert any(c.endswith("hr_H7.png") for c in out["charts"])


def test_pending_catches_up_as_days_are_ingested_and_a_rerun_replaces_its_rows(lakehouse):
    write(lakehouse, ingested_days=3)
    first = backtest.run(None, lakehouse, day(3), horizons=(7,), k=2, baselines=(),
                         pending=True)  # fmt: skip
    assert first["backtested"] == {} and len(first["not_yet_observable"]) == 1
    assert not lakehouse.exists(BACKTEST_METRICS)
    write(lakehouse, ingested_days=9)
    second = backtest.run(None, lakehouse, day(9), horizons=(7,), k=2, baselines=(),
                          pending=True)  # fmt: skip
    assert list(second["backtested"]) == [D]
    rows = lakehouse.read_arrow(BACKTEST_METRICS).num_rows
    # Nothing pending any more; an explicit rerun replaces (D, 7) and does not add to it.
    third = backtest.run(None, lakehouse, day(9), horizons=(7,), k=2, baselines=(),
                         pending=True)  # fmt: skip
    assert third["backtested"] == {}
    backtest.run(None, lakehouse, D, horizons=(7,), k=2, baselines=())
    assert lakehouse.read_arrow(BACKTEST_METRICS).num_rows == rows


def test_a_date_never_published_fails_clearly(lakehouse, capsys):
    write(lakehouse, ingested_days=9)
    code = backtest.main(["--ds", day(1), "--lakehouse", lakehouse.root, "--baselines", ""])
    assert code == 1
    assert f"no recommendations were published for {day(1)}" in capsys.readouterr().err
    bad = backtest.main(["--ds", D, "--lakehouse", lakehouse.root, "--horizons", "7,x"])
    assert bad == 1
    assert "--horizons must be integers" in capsys.readouterr().err
    assert backtest.main(["--ds", D, "--lakehouse", lakehouse.root, "--baselines", "bpr"]) == 1
    assert "unknown baseline(s) ['bpr']" in capsys.readouterr().err


def test_the_future_window_holds_on_a_spark_written_interactions_table(spark, lakehouse):
    # The replay's first backtest found no future at all: as a scan filter, the ts window
    # let delta-rs prune the files Spark had written. The table here is Spark's too.
    events = PAST + FUTURE
    table = pa.table({
        "user_id": [u for u, _, _ in events], "item_id": [i for _, i, _ in events],
        "rating": [4.0] * len(events), "ts": [at(day(o)) for _, _, o in events],
        "ds": [day(o) for _, _, o in events], "source": ["test"] * len(events),
    }, INTERACTIONS.arrow_schema())  # fmt: skip
    lakehouse.write(INTERACTIONS, spark.createDataFrame(table.to_pandas()), mode="append")

    seen = {"u3": {"i2", "i4"}}
    future = backtest.future_items(lakehouse, D, 7, {"u1", "u2", "u3"}, seen)

    # u1's i3 on D+1 counts; u2's i2 on D+9 is past the horizon; u3's i2 is a rewatch.
    assert future == {"u1": {"i3"}}
    assert backtest.future_items(lakehouse, D, 10, {"u1", "u2"}, seen) == {
        "u1": {"i3"}, "u2": {"i2"}}  # fmt: skip
