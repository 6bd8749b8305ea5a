"""The evaluation report of one date: a Markdown table and a bar chart.

Built from the ``eval_metrics`` rows of the date (every model evaluated so far, not only
the current run), means over seeds, written to ``<lakehouse root>/reports/``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

from inference.metrics import FULL_METRICS, REASONING_METRICS, SAMPLED_METRICS

SPLITS = ("valid", "test")
CLASSICAL = (
    "popularity",
    "popularity-asof",
    "itemknn",
    "itemknn-asof",
    "als",
    "sasrec",
    "evidence",
)
CHART_METRICS = ("hr@1", "ndcg@5")
ALL = "all"


def model_order(models: Sequence[str]) -> list[str]:
    """Classical baselines and the evidence ranker first, then the rest (LLMs) by name."""
    known = [m for m in CLASSICAL if m in models]
    return known + sorted(m for m in set(models) if m not in CLASSICAL)


def _table(
    rows: list[dict], protocol: str, subset: str = ALL
) -> dict[str, dict[tuple[str, str], float]]:
    out: dict[str, dict[tuple[str, str], float]] = {}
    for r in rows:
        if r["protocol"] == protocol and r["seed"] is None and r.get("subset", ALL) == subset:
            out.setdefault(r["model"], {})[(r["split"], r["metric"])] = r["value"]
    return out


def _intervals(rows: list[dict], subset: str) -> dict[tuple[str, str, str], tuple]:
    return {
        (r["model"], r["split"], r["metric"]): (r["ci_low"], r["ci_high"])
        for r in rows
        if r["protocol"] == "sampled"
        and r["seed"] is None
        and r.get("subset", ALL) == subset
        and r.get("ci_low") is not None
    }


def _samples(
    rows: list[dict], model: str, protocol: str, split: str, subset: str = ALL
) -> int | None:
    for r in rows:
        key = (r["model"], r["protocol"], r["split"], r["seed"], r.get("subset", ALL))
        if key == (model, protocol, split, None, subset):
            return r["samples"]
    return None


def subsets(rows: list[dict]) -> list[str]:
    """The sample sets of the date: all, and each LLM subsample (largest first)."""
    names = {r.get("subset", ALL) for r in rows if r["protocol"] == "sampled"} - {ALL}
    return [ALL, *sorted(names, key=lambda n: -int(n.split("-")[-1]))]


def _seconds(rows: list[dict], model: str) -> str:
    for r in rows:
        if r["model"] == model and r.get("detail"):
            detail = json.loads(r["detail"])
            secs = [detail.get(k) for k in ("fit_seconds", "rank_seconds", "full_seconds")]
            return f"{sum(s for s in secs if s):.1f}"
    return ""


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def training_section(runs: Sequence[dict]) -> list[str]:
    """Links to each evaluated trained model's run: manifest and loss/reward curves."""
    if not runs:
        return []
    lines = [
        "",
        "Trained models evaluated above (training curves and run manifests):",
        "",
        "| model | stage | run | status | curves | manifest |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        run_dir = Path(r["run_dir"])
        lines.append(
            f"| llm:{r['model_version']} | {r['stage']} | {r['run_id']} | {r['status']} "
            f"| [curves.png]({(run_dir / 'curves.png').as_uri()}) "
            f"| [manifest.json]({(run_dir / 'manifest.json').as_uri()}) |"
        )
    return lines


def same_samples_table(rows: list[dict], subset: str) -> list[str]:
    """Every model on one sample set: test HR@1 with its 95% interval first."""
    table, ci = _table(rows, "sampled", subset), _intervals(rows, subset)
    if not table:
        return []
    reasoning = any(("test", m) in v for v in table.values() for m in REASONING_METRICS)
    head = ["model", "test HR@1 [95% CI]", "valid HR@1 [95% CI]", "test ValidRatio",
            "test NDCG@5", "valid NDCG@5"]  # fmt: skip
    if reasoning:
        head += ["names top", "grounded", "no repeat"]
    head += ["samples (valid/test)"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for model in model_order(list(table)):
        v = table[model]

        def with_ci(split: str, model=model, v=v) -> str:
            low_high = ci.get((model, split, "hr@1"))
            value = _fmt(v.get((split, "hr@1")))
            return f"{value} [{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else value

        cells = [model, with_ci("test"), with_ci("valid"), _fmt(v.get(("test", "valid_ratio"))),
                 _fmt(v.get(("test", "ndcg@5"))), _fmt(v.get(("valid", "ndcg@5")))]  # fmt: skip
        if reasoning:
            cells += [_fmt(v.get(("test", m))) for m in REASONING_METRICS]
        counts = "/".join(str(_samples(rows, model, "sampled", s, subset) or 0) for s in SPLITS)
        lines.append("| " + " | ".join([*cells, counts]) + " |")
    return lines


def markdown(ds: str, rows: list[dict], runs: Sequence[dict] = ()) -> str:
    sampled, full = _table(rows, "sampled"), _table(rows, "full")
    lines = [
        f"# Evaluation, ds = {ds}",
        "",
        "Sampled protocol: the target among its N candidates, mean over candidate seeds; "
        "intervals are 95% over samples (each sample's mean over seeds). HR@1 counts an "
        "invalid answer as a miss (docs/METHOD.md §9). The reasoning columns are shares of "
        "the LLM's completions that name the item ranked first, cite only what the prompt "
        "shows, and repeat no step.",
        "",
    ]
    for subset in subsets(rows)[1:]:
        lines += [f"## Every model on the same samples ({subset})", ""]
        lines += [*same_samples_table(rows, subset), ""]
    lines += ["## Every model on all samples", ""]
    cols = [(split, m) for split in SPLITS for m in SAMPLED_METRICS]
    lines.append(
        "| model | "
        + " | ".join(f"{s} {m}" for s, m in cols)
        + " | samples (valid/test) | seconds |"
    )
    lines.append("|---" * (len(cols) + 3) + "|")
    for model in model_order(list(sampled)):
        counts = "/".join(str(_samples(rows, model, "sampled", s) or 0) for s in SPLITS)
        cells = " | ".join(_fmt(sampled[model].get(c)) for c in cols)
        lines.append(f"| {model} | {cells} | {counts} | {_seconds(rows, model)} |")
    if full:
        cols = [(split, m) for split in SPLITS for m in FULL_METRICS]
        lines += [
            "",
            "Full ranking: the target among all items the user had not interacted with "
            "before it (classical baselines only).",
            "",
            "| model | " + " | ".join(f"{s} {m}" for s, m in cols) + " | users (valid/test) |",
            "|---" * (len(cols) + 2) + "|",
        ]
        for model in model_order(list(full)):
            counts = "/".join(str(_samples(rows, model, "full", s) or 0) for s in SPLITS)
            cells = " | ".join(_fmt(full[model].get(c)) for c in cols)
            lines.append(f"| {model} | {cells} | {counts} |")
    lines += training_section(runs)
    return "\n".join(lines) + "\n"


def chart_png(ds: str, rows: list[dict]) -> bytes:
    """Grouped bars of test HR@1 and NDCG@5 per model (sampled protocol, seed mean)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # The LLMs' sample set when there is one: every bar then stands on the same samples.
    sampled = _table(rows, "sampled", subsets(rows)[-1])
    models = model_order(list(sampled))
    fig = Figure(figsize=(max(4.0, 1.3 * len(models) + 1.5), 3.6), dpi=100)
    FigureCanvasAgg(fig)  # a figure of its own, no pyplot global state
    ax = fig.add_subplot()
    width = 0.8 / len(CHART_METRICS)
    for k, metric in enumerate(CHART_METRICS):
        values = [sampled[m].get(("test", metric), 0.0) for m in models]
        xs = [i + (k - (len(CHART_METRICS) - 1) / 2) * width for i in range(len(models))]
        bars = ax.bar(xs, values, width, label=metric.upper())
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(models)), models, rotation=15, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(f"Test split, sampled protocol, ds = {ds}", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _write(root: str, name: str, data: bytes) -> str:
    if "://" in root and not root.startswith("file://"):
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(f"{root}/reports")
        with fs.open_output_stream(f"{base}/{name}") as out:
            out.write(data)
        return f"{root}/reports/{name}"
    path = Path(root.removeprefix("file://")) / "reports" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def write_report(root: str, ds: str, rows: list[dict], runs: Sequence[dict] = ()) -> dict[str, str]:
    """Write ``eval_<ds>.md`` and ``eval_<ds>.png``; returns their paths."""
    return {
        "report": _write(root, f"eval_{ds}.md", markdown(ds, rows, runs).encode()),
        "chart": _write(root, f"eval_{ds}.png", chart_png(ds, rows)),
    }


# --- backtest ----------------------------------------------------------------------------
BACKTEST_CHARTS = ("hr", "recall", "ndcg", "mrr", "coverage", "novelty", "share_active")


def _backtest_model_order(models: Sequence[str]) -> list[str]:
    """The published LLM first, then retrieval, then the classical baselines."""
    llms = sorted(m for m in models if m.startswith("llm:"))
    rest = [m for m in ("retrieval", *CLASSICAL) if m in models]
    return llms + rest + sorted(set(models) - set(llms) - set(rest))


def _metric_name(metric: str) -> str:
    return metric.split("@", 1)[0]


def backtest_markdown(rows: list[dict]) -> str:
    """Per horizon, a table of dates x models for each per-user metric, with users."""
    lines = ["# Backtest: published recommendations against what users did next", ""]
    lines.append(
        "Per served date D, the users with published recommendations; metrics over the "
        "users with an interaction in [D, D + H) (hr, recall, ndcg, mrr: mean with 95% "
        "interval), or over all of them (coverage, novelty, share_active)."
    )
    for h in sorted({r["horizon_days"] for r in rows}):
        at = [r for r in rows if r["horizon_days"] == h]
        models = _backtest_model_order({r["model"] for r in at})
        dates = sorted({r["ds"] for r in at})
        value = {(r["ds"], r["model"], r["metric"]): r for r in at}
        k = at[0]["k"]
        lines += ["", f"## H = {h} days", ""]
        for metric in (f"hr@{k}", f"ndcg@{k}", f"mrr@{k}", f"recall@{k}", f"coverage@{k}",
                       f"novelty@{k}", "share_active"):  # fmt: skip
            lines += [
                f"### {metric}",
                "",
                "| ds | users (with future) | " + " | ".join(models) + " |",
            ]
            lines.append("|---" * (len(models) + 2) + "|")
            for d in dates:
                users = value.get((d, models[0], "users"))
                future = value.get((d, models[0], "users_with_future"))
                count = (
                    f"{int(users['value'])} ({int(future['value'])})" if users and future else "?"
                )
                cells = []
                for m in models:
                    r = value.get((d, m, metric))
                    if r is None:
                        cells.append("-")
                    elif r["ci_low"] is not None:
                        cells.append(f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
                    else:
                        cells.append(f"{r['value']:.3f}")
                lines.append(f"| {d} | {count} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def backtest_chart_png(rows: list[dict], horizon: int, metric: str) -> bytes:
    """One metric over served dates, a line per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    at = [r for r in rows if r["horizon_days"] == horizon and _metric_name(r["metric"]) == metric]
    dates = sorted({r["ds"] for r in at})
    fig = Figure(figsize=(max(5.0, 0.45 * len(dates) + 3), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for model in _backtest_model_order({r["model"] for r in at}):
        points = sorted((r["ds"], r["value"]) for r in at if r["model"] == model)
        xs = [dates.index(d) for d, _ in points]
        ax.plot(xs, [v for _, v in points], marker="o", markersize=3, label=model[:40])
    ax.set_xticks(range(len(dates)), dates, rotation=45, ha="right", fontsize=7)
    label = next((r["metric"] for r in at), metric)
    ax.set_title(f"{label}, H = {horizon} days", fontsize=10)
    ax.legend(fontsize=7)
    return _png(fig)


def write_backtest_report(lakehouse) -> dict[str, object]:
    """``reports/backtest/backtest.md`` and one PNG per (horizon, metric), from every row
    of ``backtest_metrics`` (all dates so far)."""
    from r2rec.contracts import BACKTEST_METRICS

    rows = lakehouse.read_arrow(BACKTEST_METRICS).to_pylist()
    root = lakehouse.root
    charts = []
    for h in sorted({r["horizon_days"] for r in rows}):
        for metric in BACKTEST_CHARTS:
            if any(_metric_name(r["metric"]) == metric and r["horizon_days"] == h for r in rows):
                name = f"backtest/{metric}_H{h}.png"
                charts.append(_write(root, name, backtest_chart_png(rows, h, metric)))
    report = _write(root, "backtest/backtest.md", backtest_markdown(rows).encode())
    return {"report": report, "charts": charts}
