"""The model registry: which trained versions exist, how they scored, which one serves.

Training registers every finished run in ``model_registry``; the evaluation job writes
its metrics to ``eval_metrics`` under ``llm:<model version>``; :func:`promote` reads
them back, compares the candidate's validation HR@1 with the current champion's, and
records the decision in ``model_promotions`` whether it promotes or not.

Scoring and evaluation accept a registry reference wherever they take a model:
``champion``, ``registry:<run id>``, ``registry:<model version>`` or
``registry:latest-<stage>`` (the newest run of that stage).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from r2rec.contracts import EVAL_METRICS, MODEL_PROMOTIONS, MODEL_REGISTRY
from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse

CHAMPION = "champion"
PREFIX = "registry:"


def is_reference(spec: str | None) -> bool:
    return bool(spec) and (spec == CHAMPION or spec.startswith(PREFIX))


def _rows(lake: Lakehouse) -> list[dict[str, Any]]:
    if not lake.exists(MODEL_REGISTRY):
        return []
    return lake.read_arrow(MODEL_REGISTRY).to_pylist()


def champion(lake: Lakehouse) -> dict[str, Any] | None:
    rows = [r for r in _rows(lake) if r["status"] == "champion"]
    if len(rows) > 1:  # promote() never leaves two; a hand edit might
        names = ", ".join(r["model_version"] for r in rows)
        raise R2RecError(f"model_registry has {len(rows)} champions ({names}): fix it by hand")
    return rows[0] if rows else None


def lookup(lake: Lakehouse, ref: str) -> dict[str, Any]:
    """A registry row by ``champion``, ``registry:<run id>`` or ``registry:<version>``."""
    if ref == CHAMPION:
        row = champion(lake)
        if row is None:
            raise R2RecError("no champion in model_registry yet: train and promote a model")
        return row
    key = ref.removeprefix(PREFIX)
    if key.startswith("latest-"):  # registry:latest-sft = the newest SFT run of any date
        rows = [r for r in _rows(lake) if r["stage"] == key.removeprefix("latest-")]
        if not rows:
            raise R2RecError(f"no {key.removeprefix('latest-')} run in model_registry")
        return max(rows, key=lambda r: r["registered_at"])
    rows = [r for r in _rows(lake) if key in (r["run_id"], r["model_version"])]
    if not rows:
        raise R2RecError(f"'{key}' is neither a run id nor a model version in model_registry")
    # One run id can be registered twice only if a run was redone with other weights.
    return max(rows, key=lambda r: r["registered_at"])


def resolve_spec(lake: Lakehouse, model: str | None, adapter: str | None):
    """(model, adapter) with a registry reference replaced by its weights' paths."""
    if not is_reference(model):
        return model, adapter
    if adapter:
        raise R2RecError("give a registry reference or an adapter, not both")
    row = lookup(lake, model)
    return row["model_path"], row["adapter_path"]


def latest(lake: Lakehouse, ds: str, stage: str) -> dict[str, Any] | None:
    rows = [r for r in _rows(lake) if r["ds"] == ds and r["stage"] == stage]
    return max(rows, key=lambda r: r["registered_at"]) if rows else None


def register(lake: Lakehouse, row: Mapping[str, Any]) -> None:
    """Insert or update a version (MERGE on model_version); status defaults to registered."""
    record = {c: row.get(c) for c in MODEL_REGISTRY.column_names}
    record["status"] = record["status"] or "registered"
    record["registered_at"] = record["registered_at"] or dt.datetime.now(dt.UTC)
    if isinstance(record["metrics"], Mapping):  # rows read back hold [(key, value), ...]
        record["metrics"] = sorted(record["metrics"].items())
    import pyarrow as pa  # typed explicitly: a dict column would be inferred as a struct

    lake.merge(MODEL_REGISTRY, pa.Table.from_pylist([record], MODEL_REGISTRY.arrow_schema()))


@dataclass(frozen=True)
class EvalSummary:
    valid_hr1: float | None
    samples: int | None
    metrics: dict[str, float]


def eval_summary(lake: Lakehouse, ds: str, model_version: str) -> EvalSummary:
    """The evaluation job's seed-averaged metrics of ``llm:<model_version>`` on ds."""
    if not lake.exists(EVAL_METRICS):
        return EvalSummary(None, None, {})
    rows = [
        r
        for r in lake.read_arrow(EVAL_METRICS, partitions=[("ds", "=", ds)]).to_pylist()
        if r["model"] == f"llm:{model_version}" and r["seed"] is None
    ]
    metrics = {f"{r['split']}/{r['protocol']}/{r['metric']}": r["value"] for r in rows}
    hr1 = [
        r for r in rows if (r["split"], r["protocol"], r["metric"]) == ("valid", "sampled", "hr@1")
    ]
    if not hr1:
        return EvalSummary(None, None, metrics)
    return EvalSummary(hr1[0]["value"], hr1[0]["samples"], metrics)


def promote(
    lake: Lakehouse,
    ds: str,
    candidate: str,
    *,
    min_gain: float = 0.0,
    baseline_version: str | None = None,
) -> dict[str, Any]:
    """Make ``candidate`` the champion if its valid HR@1 >= the champion's + ``min_gain``.

    With no champion yet the candidate is compared with ``baseline_version`` (the
    untuned base model) when that was evaluated, else promoted on its own. The
    candidate's metrics are copied into its registry row either way, and the decision
    is appended to ``model_promotions``.
    """
    row = lookup(lake, candidate if is_reference(candidate) else PREFIX + candidate)
    mine = eval_summary(lake, ds, row["model_version"])
    if mine.valid_hr1 is None:
        raise R2RecError(
            f"no validation HR@1 for llm:{row['model_version']} on {ds} in eval_metrics: "
            f"run `r2rec evaluate --ds {ds} --models llm "
            f"--llm-model registry:{row['run_id']}` first"
        )
    current = champion(lake)
    against_version = current["model_version"] if current else baseline_version
    theirs = eval_summary(lake, ds, against_version) if against_version else None
    if current is not None and current["model_version"] == row["model_version"]:
        decision, reason = "promoted", "already the champion"
    elif theirs is None or theirs.valid_hr1 is None:
        decision = "promoted"
        reason = (
            f"no champion, and {against_version} has no validation HR@1 on {ds}"
            if against_version
            else "no champion yet"
        )
    elif mine.valid_hr1 >= theirs.valid_hr1 + min_gain:
        decision = "promoted"
        reason = f"valid HR@1 {mine.valid_hr1:.4f} >= {theirs.valid_hr1:.4f} + {min_gain}"
    else:
        decision = "rejected"
        reason = f"valid HR@1 {mine.valid_hr1:.4f} < {theirs.valid_hr1:.4f} + {min_gain}"
    if theirs is not None and theirs.samples not in (None, mine.samples):
        reason += f" (warning: {mine.samples} vs {theirs.samples} validation samples)"
    now = dt.datetime.now(dt.UTC)
    record = {
        "ds": ds,
        "candidate_version": row["model_version"],
        "champion_version": against_version,
        "candidate_valid_hr1": mine.valid_hr1,
        "champion_valid_hr1": theirs.valid_hr1 if theirs else None,
        "candidate_samples": mine.samples,
        "champion_samples": theirs.samples if theirs else None,
        "min_gain": float(min_gain),
        "decision": decision,
        "reason": reason,
        "decided_at": now,
    }
    # The decision is logged first: a crash before the registry update leaves a logged
    # decision and the old champion, and a rerun decides again.
    lake.append(MODEL_PROMOTIONS, [record])
    updated = {
        **row,
        "valid_hr1": mine.valid_hr1,
        "metrics": mine.metrics,
        "eval_samples": mine.samples,
    }
    if decision == "promoted":
        updated["status"] = "champion"
        if current is not None and current["model_version"] != row["model_version"]:
            register(lake, {**current, "status": "retired"})
    elif row["status"] != "champion":
        updated["status"] = "rejected"
    register(lake, updated)
    return record
