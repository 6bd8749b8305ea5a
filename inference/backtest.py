"""Backtest job: what the nightly job published for D, against what users did next.

    python -m inference.backtest --ds 1998-01-05 [--horizons 7,30] [--k 10]
        [--baselines popularity,itemknn,als,sasrec]
    python -m inference.backtest --ds 1998-02-02 --pending   # every date now observable

For a served date D and a horizon H (days), each user with published recommendations
for D (mode serve) is compared with their interactions in [D, D + H): the items they
took that they had not taken before D. The same users are ranked by

* ``llm:<version>``: the published top-k (retrieval, then the LLM's rerank);
* ``retrieval``: the serve candidates in retrieval order, without the LLM;
* the classical baselines trained on the graph as of D, each taking its top-k over every
  item the user has not seen (popularity, ItemKNN, ALS, SASRec),

so the LLM's lift over its own candidate list, and over models that see every item, are
both on record. Metrics (``backtest_metrics``, one row per date, horizon, model, metric):

* over the users with a future interaction: ``hr@k``, ``recall@k`` (hits / future
  items), ``ndcg@k`` (binary relevance) and ``mrr@k``, each with a 95% interval;
* over every published user: ``coverage@k`` (distinct recommended items / items of the
  catalogue as of D), ``novelty@k`` (mean self-information -log2 of an item's share of
  users before D) and ``share_active`` (users with any future interaction / published
  users); ``users`` and ``users_with_future`` are counts.

A horizon is evaluated only when its last day has been ingested (ingest recorded a run
for D + H - 1 or later); otherwise it is reported as not yet observable and nothing is
written. ``--pending`` backtests every published date whose horizon became observable
by the run date and has no rows yet: a daily or weekly cadence catches up by itself.
Reruns replace exactly (D, H). A report with one chart per metric over dates, per
model, goes to ``<lakehouse>/reports/backtest/``.
"""

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa

from inference.metrics import interval, proportion_interval
from r2rec.config import ds_start, parse_ds
from r2rec.contracts import (
    BACKTEST_METRICS,
    GRAPH_EDGES,
    INTERACTIONS,
    ITEMS,
    JOB_METRICS,
    RECOMMENDATIONS,
    SERVE_CANDIDATES,
    retrieval_order,
)
from r2rec.errors import R2RecError
from r2rec.jobs import base_parser, record_metrics, run_main
from r2rec.lakehouse import Lakehouse

JOB = "backtest"
DEFAULT_HORIZONS = (7, 30)
DEFAULT_BASELINES = ("popularity", "itemknn", "als", "sasrec")
RETRIEVAL = "retrieval"
PER_USER = ("hr", "recall", "ndcg", "mrr")


@dataclass(frozen=True)
class Served:
    """One served date: who was published, with what, and what retrieval offered."""

    ds: str
    model: str  # llm:<model version>
    published: dict[str, list[str]]  # user -> top-k items, rank order
    retrieval: dict[str, list[str]]  # user -> candidates in retrieval order
    history: dict[str, list[str]]  # user -> the history the LLM saw (oldest first)


# --- metrics (pure) ----------------------------------------------------------------------
def user_metrics(top: Sequence[str], future: set[str], k: int) -> dict[str, float]:
    """HR, recall, NDCG and MRR at k of one user's list against their future items."""
    top = list(top)[:k]
    ranks = [r for r, item in enumerate(top, start=1) if item in future]
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(k, len(future)) + 1))
    return {
        "hr": 1.0 if ranks else 0.0,
        "recall": len(ranks) / len(future),
        "ndcg": dcg / ideal,
        "mrr": 1.0 / ranks[0] if ranks else 0.0,
    }


def list_metrics(
    lists: dict[str, list[str]],
    future: dict[str, set[str]],
    k: int,
    catalogue: int,
    popularity: dict[str, float],
    floor: float,
) -> dict[str, tuple[float, float | None, float | None, int]]:
    """metric -> (value, ci_low, ci_high, users) for one model's lists of one date."""
    with_future = [u for u in lists if future.get(u)]
    out: dict[str, tuple[float, float | None, float | None, int]] = {}
    per_user = [user_metrics(lists[u], future[u], k) for u in with_future]
    for name in PER_USER:
        values = [m[name] for m in per_user]
        if values:
            # HR is a 0/1 per user: Wilson's interval, not a normal one that runs below 0
            # on the few users a replayed date has.
            low, high = (
                proportion_interval(int(sum(values)), len(values)) if name == "hr"
                else interval(values)
            )  # fmt: skip
            out[f"{name}@{k}"] = (sum(values) / len(values), low, high, len(values))
    shown = [item for u in lists for item in lists[u][:k]]
    if catalogue:
        out[f"coverage@{k}"] = (len(set(shown)) / catalogue, None, None, len(lists))
    if shown:
        info = [-math.log2(popularity.get(item, floor)) for item in shown]
        out[f"novelty@{k}"] = (sum(info) / len(info), None, None, len(lists))
    if lists:
        out["share_active"] = (len(with_future) / len(lists), None, None, len(lists))
    out["users"] = (float(len(lists)), None, None, len(lists))
    out["users_with_future"] = (float(len(with_future)), None, None, len(lists))
    return out


# --- inputs ------------------------------------------------------------------------------
def ingested_through(lakehouse: Lakehouse) -> str | None:
    """The latest date an ingest run recorded (its metrics exist even for an empty day)."""
    if not lakehouse.exists(JOB_METRICS):
        return None
    dates = [p["ds"] for p in lakehouse.partitions(JOB_METRICS) if p["job"].startswith("ingest")]
    return max(dates) if dates else None


def horizon_end(ds: str, horizon: int) -> str:
    """The last day of [D, D + H)."""
    return (ds_start(ds) + timedelta(days=horizon - 1)).date().isoformat()


def catalogue_size(lakehouse: Lakehouse, ds: str) -> int:
    """Items ingested on or before D (ids only: item text is not needed here)."""
    import pyarrow.compute as pc

    if not lakehouse.exists(ITEMS):
        return 0
    ids = lakehouse.read_arrow(ITEMS, partitions=[("ds", "<=", ds)], columns=["item_id"])
    return len(pc.unique(ids["item_id"]))


def published_dates(lakehouse: Lakehouse) -> list[str]:
    if not lakehouse.exists(RECOMMENDATIONS):
        return []
    return sorted(
        {p["ds"] for p in lakehouse.partitions(RECOMMENDATIONS) if p.get("mode") == "serve"}
    )


def load_served(lakehouse: Lakehouse, ds: str) -> Served:
    on = [("ds", "=", ds), ("mode", "=", "serve")]
    if ds not in published_dates(lakehouse):
        raise R2RecError(
            f"backtest {ds}: no recommendations were published for {ds} (mode serve); "
            "run the score DAG for that date first"
        )
    recs = lakehouse.read_arrow(
        RECOMMENDATIONS, partitions=on, columns=["user_id", "rank", "item_id", "model_version"]
    ).to_pylist()
    versions = sorted({r["model_version"] for r in recs})
    if len(versions) != 1:  # publish replaces the date: one model per date
        raise R2RecError(f"backtest {ds}: recommendations of several models {versions}")
    published: dict[str, list[tuple[int, str]]] = {}
    for r in recs:
        published.setdefault(r["user_id"], []).append((r["rank"], r["item_id"]))
    cands = lakehouse.read_arrow(SERVE_CANDIDATES, partitions=[("ds", "=", ds)]).to_pylist()
    by_user = {c["user_id"]: c for c in cands}
    missing = sorted(set(published) - set(by_user))
    if missing:
        raise R2RecError(
            f"backtest {ds}: {len(missing)} published users have no serve_candidates row "
            f"(e.g. {missing[0]}); the candidates of that date were rewritten or removed"
        )
    return Served(
        ds=ds,
        model=f"llm:{versions[0]}",
        published={u: [i for _, i in sorted(v)] for u, v in sorted(published.items())},
        retrieval={
            u: retrieval_order(
                by_user[u]["items"], by_user[u]["sources"], by_user[u]["retrieval_scores"]
            )
            for u in published
        },
        history={u: list(by_user[u]["history"]) for u in published},
    )


def future_items(
    lakehouse: Lakehouse, ds: str, horizon: int, users: set[str], seen: dict[str, set[str]]
) -> dict[str, set[str]]:
    """Each user's items first taken in [D, D + H), whichever run ingested them (late
    events included), minus items taken before D: a rewatch is not a recommendation."""
    import pyarrow.compute as pc

    start, end = ds_start(ds), ds_start(ds) + timedelta(days=horizon)
    dataset = lakehouse.arrow_dataset(INTERACTIONS, partitions=[("ds", ">=", ds)])
    when = (pc.field("ts") >= pa.scalar(start, pa.timestamp("us", "UTC"))) & (
        pc.field("ts") < pa.scalar(end, pa.timestamp("us", "UTC"))
    )
    # The time filter runs on the loaded rows, not as a scan filter: Spark-written files
    # from before their ts statistics (r2rec.spark_writer) carry none, delta-rs prunes
    # such a file under a ts filter, and the replay's backtest saw no future at all (0 of
    # 80 users, where 22 had one). The ds partitions above bound what is loaded.
    rows = dataset.to_table(columns=["user_id", "item_id", "ts"]).filter(when)
    out: dict[str, set[str]] = {}
    for user, item in zip(rows["user_id"].to_pylist(), rows["item_id"].to_pylist(), strict=True):
        if user in users and item not in seen.get(user, ()):
            out.setdefault(user, set()).add(item)
    return out


# --- the job -----------------------------------------------------------------------------
def run(
    spark,
    lakehouse: Lakehouse,
    ds: str,
    *,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    k: int = 10,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    pending: bool = False,
    baseline_options: dict | None = None,
) -> dict:
    from inference.baselines import BASELINES

    ds = parse_ds(ds)
    if not horizons or any(h < 1 for h in horizons):
        raise R2RecError("--horizons must be positive numbers of days, e.g. 7,30")
    if k < 1:
        raise R2RecError("--k must be at least 1")
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise R2RecError(f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    through = ingested_through(lakehouse)
    if pending:
        done = backtested(lakehouse)
        work = [
            (d, h)
            for d in published_dates(lakehouse)
            if d <= ds
            for h in horizons
            if (d, h) not in done
        ]
    else:
        load_served(lakehouse, ds)  # a date never published fails here, clearly
        work = [(ds, h) for h in horizons]
    observable = [(d, h) for d, h in work if through is not None and horizon_end(d, h) <= through]
    waiting = [
        {"ds": d, "horizon_days": h, "observable_after": horizon_end(d, h)}
        for d, h in work
        if (d, h) not in observable
    ]
    for w in waiting:
        print(
            f"backtest {w['ds']} H={w['horizon_days']}: not yet observable (needs ingest "
            f"through {w['observable_after']}; ingested through {through or 'nothing'})",
            file=sys.stderr,
        )
    report: dict = {"ds": ds, "ingested_through": through, "not_yet_observable": waiting}
    evaluated: dict[str, dict] = {}
    by_date: dict[str, list[int]] = {}
    for d, h in observable:
        by_date.setdefault(d, []).append(h)
    for d, hs in sorted(by_date.items()):
        evaluated[d] = backtest_date(spark, lakehouse, d, hs, k, baselines, baseline_options or {})
    report["backtested"] = evaluated
    if evaluated:
        from inference.report import write_backtest_report

        report.update(write_backtest_report(lakehouse))
    record_metrics(
        lakehouse,
        JOB,
        ds,
        {"dates_backtested": len(evaluated), "not_yet_observable": len(waiting)},
    )
    return report


def backtested(lakehouse: Lakehouse) -> set[tuple[str, int]]:
    if not lakehouse.exists(BACKTEST_METRICS):
        return set()
    rows = lakehouse.read_arrow(BACKTEST_METRICS, columns=["ds", "horizon_days"])
    return set(zip(rows["ds"].to_pylist(), rows["horizon_days"].to_pylist(), strict=True))


def backtest_date(
    spark,
    lakehouse: Lakehouse,
    ds: str,
    horizons: Sequence[int],
    k: int,
    baselines: Sequence[str],
    baseline_options: dict,
) -> dict:
    """Every model's lists for the published users of D, scored at each horizon."""
    from inference.baselines import make_baseline
    from r2rec.progress import Progress

    served = load_served(lakehouse, ds)
    users = sorted(served.published)
    edges = lakehouse.read_arrow(
        GRAPH_EDGES, partitions=[("ds", "=", ds)], columns=["user_id", "item_id", "ts"]
    ).to_pandas()
    seen: dict[str, set[str]] = {}
    for user, group in edges.groupby("user_id", sort=False)["item_id"]:
        seen[user] = set(group)
    counts = edges.groupby("item_id")["user_id"].nunique()
    n_users = max(1, edges["user_id"].nunique())
    popularity = {item: n / n_users for item, n in counts.items()}
    floor = 1.0 / (n_users + 1)  # an item nobody took before D: rarer than any seen one
    catalogue = max(catalogue_size(lakehouse, ds), len(counts))

    lists: dict[str, dict[str, list[str]]] = {
        served.model: served.published,
        RETRIEVAL: {u: v[:k] for u, v in served.retrieval.items()},
    }
    seconds: dict[str, float] = {}
    all_items = sorted(set(edges["item_id"]))
    with Progress(f"backtest ds={ds} baselines", len(baselines), "models") as progress:
        for name in baselines:
            start = time.perf_counter()
            model = make_baseline(name, spark, **baseline_options)
            model.fit(edges, items=all_items)
            queries = [(u, served.history[u], seen.get(u, ())) for u in users]
            lists[name] = dict(zip(users, model.full_rank_many(queries, k), strict=True))
            seconds[name] = time.perf_counter() - start
            progress.advance()

    run_id = uuid.uuid4().hex
    summary: dict = {"users": len(users), "model": served.model}
    for h in horizons:
        future = future_items(lakehouse, ds, h, set(users), seen)
        rows = []
        for model_name, model_lists in lists.items():
            detail = json.dumps(
                {"k": k, "fit_seconds": round(seconds.get(model_name, 0.0), 2),
                 "train_edges": len(edges), "catalogue": catalogue},
                sort_keys=True,
            )  # fmt: skip
            for metric, (value, low, high, n) in list_metrics(
                model_lists, future, k, catalogue, popularity, floor
            ).items():
                rows.append(
                    {
                        "ds": ds,
                        "horizon_days": h,
                        "model": model_name,
                        "metric": metric,
                        "value": float(value),
                        "ci_low": low,
                        "ci_high": high,
                        "users": n,
                        "k": k,
                        "run_id": run_id,
                        "detail": detail,
                    }
                )
                if metric == f"hr@{k}":
                    summary[f"H{h}.{model_name}.hr@{k}"] = round(value, 4)
        lakehouse.overwrite(
            BACKTEST_METRICS,
            pa.Table.from_pylist(rows, BACKTEST_METRICS.arrow_schema()),
            predicate=f"ds = '{ds}' AND horizon_days = {int(h)}",
        )
        summary[f"H{h}.users_with_future"] = sum(1 for u in users if future.get(u))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m inference.backtest", __doc__.splitlines()[0])
    p.add_argument("--horizons", default="7,30", help="days after D, comma-separated")
    p.add_argument("--k", type=int, default=10, help="top-k compared (published k at most)")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES),
                   help="classical models trained as of D ('' = none)")  # fmt: skip
    p.add_argument("--pending", action="store_true",
                   help="every published date up to --ds whose horizon is now observable "
                   "and not yet backtested")  # fmt: skip
    args = p.parse_args(argv)

    def body():
        try:
            horizons = tuple(int(h) for h in args.horizons.split(",") if h.strip())
        except ValueError:
            raise R2RecError(f"--horizons must be integers, got {args.horizons!r}") from None
        baselines = tuple(b.strip() for b in args.baselines.split(",") if b.strip())
        from inference.baselines import spark_for

        return run(
            spark_for(baselines),
            Lakehouse(args.lakehouse),
            args.ds,
            horizons=horizons,
            k=args.k,
            baselines=baselines,
            pending=args.pending,
        )

    return run_main(body, job=JOB, argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
