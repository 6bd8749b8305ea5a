"""Model registry and promotion: lookups, the champion, and recorded decisions."""

from __future__ import annotations

import datetime as dt

import pytest

from r2rec import registry
from r2rec.contracts import EVAL_METRICS, MODEL_PROMOTIONS, MODEL_REGISTRY
from r2rec.errors import R2RecError

DS = "2026-11-25"
BASE = "smollm2-135m-instruct@aaaaaaaaaaaa"


def version(name: str) -> str:
    return f"{BASE}+{name}@{name * 3}"


def add(lake, name: str, stage: str = "sft", minute: int = 0) -> str:
    registry.register(
        lake,
        {
            "model_version": version(name),
            "run_id": f"{stage}-{DS}-{name}",
            "ds": DS,
            "stage": stage,
            "base_model": "smollm2-135m-instruct",
            "base_version": BASE,
            "model_path": "/models/base",
            "adapter_path": f"/runs/{name}/adapter",
            "parent_version": None,
            "run_dir": f"/runs/{name}",
            "manifest": '{"seed": 0}',
            "registered_at": dt.datetime(2026, 11, 25, 12, minute, tzinfo=dt.UTC),
        },
    )
    return version(name)


def evaluated(lake, model_version: str, hr1: float, samples: int = 100) -> None:
    rows = [
        {
            "ds": DS,
            "model": f"llm:{model_version}",
            "split": split,
            "protocol": "sampled",
            "seed": seed,
            "metric": metric,
            "value": value,
            "samples": samples,
            "run_id": "e",
            "detail": None,
        }
        for split in ("valid", "test")
        for seed in (None, 0)
        for metric, value in (("hr@1", hr1 if seed is None else 0.999), ("ndcg@5", hr1 / 2))
    ]
    lake.overwrite(EVAL_METRICS, rows, predicate=f"ds = '{DS}' AND model = 'llm:{model_version}'")


def statuses(lake) -> dict[str, str]:
    return {r["model_version"]: r["status"] for r in lake.read_arrow(MODEL_REGISTRY).to_pylist()}


def test_lookup_by_run_id_version_and_champion(lakehouse):
    a = add(lakehouse, "a")
    assert registry.lookup(lakehouse, "registry:sft-2026-11-25-a")["model_version"] == a
    assert registry.lookup(lakehouse, f"registry:{a}")["run_id"] == "sft-2026-11-25-a"
    with pytest.raises(R2RecError, match="no champion"):
        registry.lookup(lakehouse, "champion")
    with pytest.raises(R2RecError, match="neither a run id nor a model version"):
        registry.lookup(lakehouse, "registry:nope")
    assert registry.resolve_spec(lakehouse, "registry:sft-2026-11-25-a", None) == (
        "/models/base",
        "/runs/a/adapter",
    )
    assert registry.resolve_spec(lakehouse, "/some/dir", "/ad") == ("/some/dir", "/ad")
    with pytest.raises(R2RecError, match="not both"):
        registry.resolve_spec(lakehouse, "champion", "/ad")


def test_latest_is_the_newest_run_of_that_stage_and_date(lakehouse):
    add(lakehouse, "a", minute=1)
    b = add(lakehouse, "b", minute=2)
    add(lakehouse, "c", stage="grpo", minute=3)
    assert registry.latest(lakehouse, DS, "sft")["model_version"] == b
    assert registry.latest(lakehouse, "2026-11-24", "sft") is None
    assert registry.lookup(lakehouse, "registry:latest-sft")["model_version"] == b
    assert registry.lookup(lakehouse, "registry:latest-grpo")["run_id"] == f"grpo-{DS}-c"


def test_promotion_needs_metrics_then_compares_with_base_then_champion(lakehouse):
    a, b, c = add(lakehouse, "a"), add(lakehouse, "b"), add(lakehouse, "c")
    with pytest.raises(R2RecError, match="run `r2rec evaluate"):
        registry.promote(lakehouse, DS, a, baseline_version=BASE)

    evaluated(lakehouse, BASE, 0.05)
    evaluated(lakehouse, a, 0.20)
    first = registry.promote(lakehouse, DS, a, baseline_version=BASE)
    assert (first["decision"], first["champion_version"]) == ("promoted", BASE)
    assert (first["candidate_valid_hr1"], first["champion_valid_hr1"]) == (0.20, 0.05)
    assert registry.champion(lakehouse)["model_version"] == a

    evaluated(lakehouse, b, 0.19)  # worse than the champion: stays out
    second = registry.promote(lakehouse, DS, b, baseline_version=BASE)
    assert (second["decision"], second["champion_version"]) == ("rejected", a)
    assert "0.1900 < 0.2000" in second["reason"]

    evaluated(lakehouse, c, 0.20)  # a tie is enough with min_gain 0
    assert registry.promote(lakehouse, DS, c)["decision"] == "promoted"
    assert statuses(lakehouse) == {a: "retired", b: "rejected", c: "champion"}
    assert registry.resolve_spec(lakehouse, "champion", None) == ("/models/base", "/runs/c/adapter")

    row = registry.lookup(lakehouse, f"registry:{c}")
    assert row["valid_hr1"] == 0.20 and row["eval_samples"] == 100
    assert dict(row["metrics"])["test/sampled/ndcg@5"] == pytest.approx(0.10)

    log = sorted(lakehouse.read_arrow(MODEL_PROMOTIONS).to_pylist(), key=lambda r: r["decided_at"])
    assert [(r["candidate_version"], r["decision"]) for r in log] == [
        (a, "promoted"),
        (b, "rejected"),
        (c, "promoted"),
    ]


def test_min_gain_is_required_over_the_champion(lakehouse):
    a, b = add(lakehouse, "a"), add(lakehouse, "b")
    evaluated(lakehouse, a, 0.20)
    evaluated(lakehouse, b, 0.22)
    registry.promote(lakehouse, DS, a)
    decision = registry.promote(lakehouse, DS, b, min_gain=0.05)
    assert decision["decision"] == "rejected"
    assert registry.champion(lakehouse)["model_version"] == a


def test_first_promotion_without_any_baseline_says_so(lakehouse):
    a = add(lakehouse, "a")
    evaluated(lakehouse, a, 0.0)
    out = registry.promote(lakehouse, DS, a, baseline_version=BASE)
    assert out["decision"] == "promoted"
    assert "has no validation HR@1" in out["reason"]
