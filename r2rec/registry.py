"""The model registry: which trained versions exist, how they scored, which one serves.

Training registers every finished run in ``model_registry``; the evaluation job writes
its metrics to ``eval_metrics`` under ``llm:<model version>``; :func:`promote` reads
them back, compares the candidate's validation HR@1 with the current champion's, and
records the decision in ``model_promotions`` whether it promotes or not. The decision is
paired: both models ranked the same validation samples (``eval_outcomes``), and the
candidate must win more of them than it loses by more than chance (a one-sided sign
test), not merely show a higher mean.

Every job that takes a model accepts the same references, resolved here and only here
(:func:`resolve`), with one meaning each:

* ``champion``: the version scoring serves by default;
* ``registry:<run id>`` or ``registry:<model version>``: that exact row;
* ``registry:latest-<stage>`` (``latest-<stage>`` alike): the newest run of that stage
  trained on the job's own ``--ds``; never another date's;
* ``base:<reference>``: the untuned base model of the referenced row.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from r2rec.contracts import EVAL_METRICS, EVAL_OUTCOMES, MODEL_PROMOTIONS, MODEL_REGISTRY
from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse

CHAMPION = "champion"
PREFIX = "registry:"
BASE = "base:"
LATEST = "latest-"


def is_reference(spec: str | None) -> bool:
    return bool(spec) and (
        spec == CHAMPION or spec.startswith((PREFIX, BASE)) or spec.startswith(LATEST)
    )


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


def resolve(lake: Lakehouse, ref: str, ds: str | None = None) -> dict[str, Any]:
    """The registry row a reference names (see the module docstring for the grammar).

    ``latest-<stage>`` needs the date it is for: the newest run of another date is a
    different model, and evaluating one while promoting the other once did harm.
    """
    if ref.startswith(BASE):
        raise R2RecError(f"'{ref}' names a base model, not a registry row")
    if ref == CHAMPION:
        row = champion(lake)
        if row is None:
            raise R2RecError("no champion in model_registry yet: train and promote a model")
        return row
    key = ref.removeprefix(PREFIX)
    if key.startswith(LATEST):
        stage = key.removeprefix(LATEST)
        if ds is None:
            raise R2RecError(f"'{ref}' means the newest {stage} run of a date: give --ds")
        row = latest(lake, ds, stage)
        if row is None:
            raise R2RecError(f"no {stage} run registered for ds={ds}")
        return row
    rows = [r for r in _rows(lake) if key in (r["run_id"], r["model_version"])]
    if not rows:
        raise R2RecError(f"'{key}' is neither a run id nor a model version in model_registry")
    # A version names several rows when a later run saved its parent's weights unchanged:
    # the same model, so the newest run's row stands for it (jobs that must name one run
    # pass its run id, as the train DAG does).
    return max(rows, key=lambda r: r["registered_at"])


def lookup(lake: Lakehouse, ref: str, ds: str | None = None) -> dict[str, Any]:
    """A registry row by reference; a bare run id or version is taken as ``registry:``."""
    return resolve(lake, ref if is_reference(ref) else PREFIX + ref, ds)


@dataclass(frozen=True)
class Resolved:
    """What a job needs from a model reference, read from one registry lookup.

    ``registered`` is the version the registry row recorded (None for a path or a base):
    jobs record a registered model under it, not a fresh fingerprint of its files, so eval
    rows, served rows and promotion all name the same version. ``evidence`` is the prompt
    mode the row was trained with, when its manifest says.
    """

    model: str | None
    adapter: str | None
    registered: str | None = None
    evidence: str | None = None


def resolve_model_ref(
    lake: Lakehouse, model: str | None, adapter: str | None, ds: str | None = None
) -> Resolved:
    """A model option (reference or path) and an adapter option, resolved in one read."""
    import json

    if not is_reference(model):
        return Resolved(model, adapter)
    if adapter:
        raise R2RecError("give a registry reference or an adapter, not both")
    if model.startswith(BASE):
        row = lookup(lake, model.removeprefix(BASE), ds)
        # A LoRA row's model_path is its base; a fully fine-tuned row's base is its spec.
        return Resolved(row["model_path"] if row["adapter_path"] else row["base_model"], None)
    row = resolve(lake, model, ds)
    manifest = json.loads(row["manifest"] or "{}")
    evidence = ((manifest.get("config") or {}).get("r2rec") or {}).get("evidence")
    return Resolved(row["model_path"], row["adapter_path"], row["model_version"], evidence)


def latest(lake: Lakehouse, ds: str, stage: str) -> dict[str, Any] | None:
    rows = [r for r in _rows(lake) if r["ds"] == ds and r["stage"] == stage]
    return max(rows, key=lambda r: r["registered_at"]) if rows else None


def register(lake: Lakehouse, *rows: Mapping[str, Any]) -> None:
    """Insert or update runs in one MERGE on run_id (one Delta commit); status defaults
    to registered. A redone run id replaces its row."""
    records = []
    for row in rows:
        record = {c: row.get(c) for c in MODEL_REGISTRY.column_names}
        record["status"] = record["status"] or "registered"
        record["registered_at"] = record["registered_at"] or dt.datetime.now(dt.UTC)
        if isinstance(record["metrics"], Mapping):  # rows read back hold [(key, value), ...]
            record["metrics"] = sorted(record["metrics"].items())
        records.append(record)
    import pyarrow as pa  # typed explicitly: a dict column would be inferred as a struct

    lake.merge(MODEL_REGISTRY, pa.Table.from_pylist(records, MODEL_REGISTRY.arrow_schema()))


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


MIN_SAMPLES = 30  # validation samples below which a decision is noise
ALPHA = 0.05  # one-sided: the chance a candidate no better than the champion is promoted


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(at least ``wins`` of ``wins + losses`` fair coin flips).

    Ties carry no information about which model is better and are left out, as in an
    exact McNemar test (which this is when there is one seed per sample).
    """
    n = wins + losses
    if n == 0:
        return 1.0
    return math.fsum(math.comb(n, k) for k in range(wins, n + 1)) / 2.0**n


@dataclass(frozen=True)
class Paired:
    """Two models on the validation samples both ranked (HR@1 averaged over seeds)."""

    samples: int  # shared samples
    rankings: int  # shared (sample, seed) rankings
    mine: float  # the candidate's HR@1 on them
    theirs: float
    wins: int  # samples where the candidate's HR@1 is higher
    losses: int
    p_value: float

    @property
    def gain(self) -> float:
        return self.mine - self.theirs


def _outcomes(
    lake: Lakehouse, ds: str, model_version: str, how: str
) -> dict[tuple[str, int], float]:
    """The valid split's HR@1 per (sample, seed) of ``llm:<version>``, refused when they
    are not from the run that wrote its eval_metrics (a crash between the two writes)."""
    model = f"llm:{model_version}"
    runs = {
        r["run_id"]
        for r in lake.read_arrow(EVAL_METRICS, partitions=[("ds", "=", ds)]).to_pylist()
        if r["model"] == model
    }
    rows = []
    if lake.exists(EVAL_OUTCOMES):
        rows = [
            r
            for r in lake.read_arrow(EVAL_OUTCOMES, partitions=[("ds", "=", ds)]).to_pylist()
            if r["model"] == model and r["split"] == "valid"
        ]
    if not rows:
        raise R2RecError(f"{model} has no per-sample outcomes on {ds} to pair: {how}")
    if {r["run_id"] for r in rows} != runs:
        raise R2RecError(f"{model}'s outcomes and metrics on {ds} are from different runs: {how}")
    return {(r["sample_id"], r["seed"]): r["hit1"] for r in rows}


def paired(lake: Lakehouse, ds: str, candidate: str, against: str) -> Paired:
    """The candidate against ``against`` on the validation rankings both made on ds.

    A sample's score is its HR@1 averaged over the seeds both ranked, so a sample counts
    once however many candidate seeds it has (they are not independent draws).
    """
    evaluate = f"r2rec evaluate --ds {ds} --models llm"
    how = (
        f"evaluate it again on the same samples (the candidate: `{evaluate} --llm-model "
        f"registry:{candidate}`; the champion or base it meets: `{evaluate} --incumbent-of "
        f"registry:{candidate}`; the same --max-samples for both)"
    )
    a, b = _outcomes(lake, ds, candidate, how), _outcomes(lake, ds, against, how)
    shared = sorted(a.keys() & b.keys())
    per_sample: dict[str, list[float]] = defaultdict(list)
    for key in shared:
        per_sample[key[0]].append(a[key] - b[key])
    diffs = [math.fsum(d) / len(d) for d in per_sample.values()]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)

    def mean(hits: dict[tuple[str, int], float]) -> float:
        return math.fsum(hits[k] for k in shared) / len(shared) if shared else 0.0

    return Paired(
        samples=len(per_sample),
        rankings=len(shared),
        mine=mean(a),
        theirs=mean(b),
        wins=wins,
        losses=losses,
        p_value=sign_test(wins, losses),
    )


def promote(
    lake: Lakehouse,
    ds: str,
    candidate: str,
    *,
    min_gain: float = 0.0,
    baseline_version: str | None = None,
    min_samples: int = MIN_SAMPLES,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Make ``candidate`` the champion if it beats the champion on the same validation
    samples: HR@1 higher by more than ``min_gain``, and more samples won than lost with a
    one-sided sign-test p-value <= ``alpha``.

    Before the first promotion the candidate must beat ``baseline_version``, the untuned
    base model, which must have been evaluated on ds: a fine-tuned model is never
    promoted for merely existing. The champion too must have been evaluated on ds (the
    train DAG does so before its first promotion). Ties keep the incumbent, and a
    decision on fewer than ``min_samples`` shared validation samples is refused as
    noise. The candidate's metrics are copied into its registry row either way, and
    every decision is appended to ``model_promotions``, the test in its reason.
    """
    if not 0.0 < alpha <= 1.0:
        raise R2RecError(f"alpha must be in (0, 1], got {alpha}")
    row = lookup(lake, candidate, ds)
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
    if current is None and (theirs is None or theirs.valid_hr1 is None):
        base = f"base:registry:{row['run_id']}"
        raise R2RecError(
            f"no champion yet, and the base model {against_version} has no validation HR@1 "
            f"on {ds}: evaluate it first (`r2rec evaluate --ds {ds} --models llm "
            f"--llm-model {base}`), so the first champion has to beat it"
        )
    same = current is not None and current["model_version"] == row["model_version"]
    if not same and theirs.valid_hr1 is None:
        raise R2RecError(
            f"the champion {against_version} has no validation HR@1 on {ds}: evaluate it on "
            f"the same samples first (`r2rec evaluate --ds {ds} --models llm --incumbent-of "
            f"registry:{row['run_id']} --max-samples <as the candidate's>`)"
        )
    if same and current["run_id"] == row["run_id"]:
        decision, reason = "promoted", "already the champion"
    elif same:
        # Another run that saved the champion's weights unchanged: promoting it would
        # retire the champion for the very same model.
        decision = "rejected"
        reason = (
            f"the same weights as the champion (run {current['run_id']}): "
            "the run changed nothing, nothing to promote"
        )
    elif (mine.samples or 0) < min_samples:
        decision = "rejected"
        reason = f"{mine.samples} validation samples, fewer than {min_samples}: too few to decide"
    else:
        test = paired(lake, ds, row["model_version"], against_version)
        reason = (
            f"valid HR@1 {test.mine:.4f} vs {test.theirs:.4f} on the {test.samples} samples "
            f"({test.rankings} rankings) both ranked: {test.wins} won, {test.losses} lost, "
            f"one-sided sign test p = {test.p_value:.3g}"
        )
        if test.samples < min_samples:
            decision = "rejected"
            reason += f"; fewer than {min_samples} shared samples: too few to decide"
        elif test.gain > min_gain and test.p_value <= alpha:
            decision = "promoted"
            reason += f" <= {alpha} and gain {test.gain:+.4f} > {min_gain}"
        else:
            decision = "rejected"
            reason += f"; promotion needs gain > {min_gain} and p <= {alpha}"
    if theirs.samples not in (None, mine.samples):
        reason += f" (warning: {mine.samples} vs {theirs.samples} validation samples)"
    now = dt.datetime.now(dt.UTC)
    record = {
        "ds": ds,
        "candidate_version": row["model_version"],
        "champion_version": against_version,
        "candidate_valid_hr1": mine.valid_hr1,
        "champion_valid_hr1": theirs.valid_hr1,
        "candidate_samples": mine.samples,
        "champion_samples": theirs.samples,
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
    changes = [updated]
    if decision == "promoted":
        updated["status"] = "champion"
        if current is not None and current["run_id"] != row["run_id"]:
            changes.append({**current, "status": "retired"})
    elif row["status"] != "champion":
        updated["status"] = "rejected"
    # One MERGE: the new champion and the retired one change in the same commit, so a
    # crash can never leave the registry without a champion (or with two).
    register(lake, *changes)
    return record
