"""Model registry and promotion: lookups, the champion, and recorded decisions."""

from __future__ import annotations

import datetime as dt

import pytest

from r2rec import registry
from r2rec.contracts import EVAL_METRICS, EVAL_OUTCOMES, MODEL_PROMOTIONS, MODEL_REGISTRY
from r2rec.errors import R2RecError

DS = "2026-11-25"
BASE = "smollm2-135m-instruct@aaaaaaaaaaaa"


def version(name: str) -> str:
    return f"{BASE}+{name}@{name * 3}"


def add(lake, name: str, stage: str = "sft", minute: int = 0, manifest: str = '{"seed": 0}') -> str:
    """Register the run ``<stage>-<DS>-<name>`` with weights ``version(name)``."""
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
            "manifest": manifest,
            "registered_at": dt.datetime(2026, 11, 25, 12, minute, tzinfo=dt.UTC),
        },
    )
    return version(name)


def evaluated(
    lake,
    model_version: str,
    hr1: float,
    samples: int = 100,
    hits: dict[int, set[int]] | None = None,
    run_id: str | None = None,
) -> None:
    """eval_metrics rows (seed-mean HR@1 ``hr1``) and the valid outcomes behind them:
    ``hits`` maps a seed to the sample numbers hit at 1 (default: seed 0 hits the first
    ``hr1 * samples``), as the evaluation job writes both under one run id."""
    run_id = run_id or f"e-{model_version}"
    rows = [
        {
            "ds": DS,
            "model": f"llm:{model_version}",
            "split": split,
            "protocol": "sampled",
            "subset": "all",
            "seed": seed,
            "metric": metric,
            "value": value,
            "ci_low": None,
            "ci_high": None,
            "samples": samples,
            "run_id": run_id,
            "detail": None,
        }
        for split in ("valid", "test")
        for seed in (None, 0)
        for metric, value in (("hr@1", hr1 if seed is None else 0.999), ("ndcg@5", hr1 / 2))
    ]
    predicate = f"ds = '{DS}' AND model = 'llm:{model_version}'"
    hits = hits if hits is not None else {0: set(range(round(hr1 * samples)))}
    outcomes = [
        {
            "ds": DS,
            "model": f"llm:{model_version}",
            "split": "valid",
            "sample_id": f"s{i:03d}",
            "seed": seed,
            "target_rank": 1 if i in hit else 2,
            "answer_valid": True,
            "hit1": 1.0 if i in hit else 0.0,
            "run_id": run_id,
        }
        for seed, hit in hits.items()
        for i in range(samples)
    ]
    lake.overwrite(EVAL_OUTCOMES, outcomes, predicate=predicate)
    lake.overwrite(EVAL_METRICS, rows, predicate=predicate)


def paths(lake, model, adapter, ds=None) -> tuple:
    """(model, adapter) a model option resolves to."""
    ref = registry.resolve_model_ref(lake, model, adapter, ds)
    return ref.model, ref.adapter


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
    assert paths(lakehouse, "registry:sft-2026-11-25-a", None) == (
        "/models/base",
        "/runs/a/adapter",
    )
    assert paths(lakehouse, "/some/dir", "/ad") == ("/some/dir", "/ad")
    # Jobs record a registered model under its row's version, not a fresh hash.
    ref = registry.resolve_model_ref(lakehouse, "registry:sft-2026-11-25-a", None)
    assert (ref.model, ref.adapter, ref.registered) == ("/models/base", "/runs/a/adapter", a)
    assert ref.evidence is None  # its manifest does not say
    assert registry.resolve_model_ref(lakehouse, "/some/dir", "/ad") == registry.Resolved(
        "/some/dir", "/ad"
    )
    base = registry.resolve_model_ref(lakehouse, "base:registry:sft-2026-11-25-a", None)
    assert base == registry.Resolved("/models/base", None)  # a base has no registry version
    with pytest.raises(R2RecError, match="not both"):
        paths(lakehouse, "champion", "/ad")


def test_one_read_of_the_registry_gives_paths_version_and_training_prompt(lakehouse, monkeypatch):
    manifest = '{"config": {"r2rec": {"evidence": "none"}}}'
    b = add(lakehouse, "b", manifest=manifest)
    reads = []
    real = lakehouse.read_arrow
    monkeypatch.setattr(lakehouse, "read_arrow", lambda *a, **k: reads.append(a) or real(*a, **k))
    ref = registry.resolve_model_ref(lakehouse, f"registry:{b}", None)
    assert ref == registry.Resolved("/models/base", "/runs/b/adapter", b, "none")
    assert len(reads) == 1


def test_latest_means_the_newest_run_of_that_stage_for_the_date_asked(lakehouse):
    add(lakehouse, "a", minute=1)
    b = add(lakehouse, "b", minute=2)
    add(lakehouse, "c", stage="grpo", minute=3)
    assert registry.latest(lakehouse, DS, "sft")["model_version"] == b
    assert registry.latest(lakehouse, "2026-11-24", "sft") is None
    # One meaning, prefixed or not: the newest run of the stage trained on that date.
    for ref in ("registry:latest-sft", "latest-sft"):
        assert registry.lookup(lakehouse, ref, DS)["model_version"] == b
        with pytest.raises(R2RecError, match="no sft run registered for ds=2026-11-24"):
            registry.lookup(lakehouse, ref, "2026-11-24")
        with pytest.raises(R2RecError, match="give --ds"):
            registry.lookup(lakehouse, ref)
    assert registry.lookup(lakehouse, "latest-grpo", DS)["run_id"] == f"grpo-{DS}-c"
    # base:<ref> is the untuned model a run started from
    assert paths(lakehouse, "base:latest-sft", None, DS) == ("/models/base", None)
    assert paths(lakehouse, f"base:registry:{b}", None) == ("/models/base", None)


def test_promotion_needs_metrics_and_the_base_then_beats_the_champion(lakehouse):
    a, b, c, d = (add(lakehouse, n) for n in "abcd")
    with pytest.raises(R2RecError, match="run `r2rec evaluate"):
        registry.promote(lakehouse, DS, a, baseline_version=BASE)
    evaluated(lakehouse, a, 0.20)
    # Before the first promotion the base model must have been evaluated: a fine-tuned
    # model is never promoted for merely existing.
    with pytest.raises(R2RecError, match=r"evaluate it first .*--llm-model base:registry:sft"):
        registry.promote(lakehouse, DS, a, baseline_version=BASE)
    assert not lakehouse.exists(MODEL_PROMOTIONS)

    evaluated(lakehouse, BASE, 0.05)
    first = registry.promote(lakehouse, DS, a, baseline_version=BASE)
    assert (first["decision"], first["champion_version"]) == ("promoted", BASE)
    assert (first["candidate_valid_hr1"], first["champion_valid_hr1"]) == (0.20, 0.05)
    assert registry.champion(lakehouse)["model_version"] == a

    evaluated(lakehouse, b, 0.19)  # worse than the champion: stays out
    second = registry.promote(lakehouse, DS, b, baseline_version=BASE)
    assert (second["decision"], second["champion_version"]) == ("rejected", a)
    assert "0.1900 vs 0.2000 on the 100 samples" in second["reason"]
    assert "0 won, 1 lost" in second["reason"]

    evaluated(lakehouse, c, 0.20)  # a tie keeps the incumbent
    assert registry.promote(lakehouse, DS, c)["decision"] == "rejected"
    evaluated(lakehouse, d, 0.30)  # wins 10 samples, loses none: p = 2^-10
    assert registry.promote(lakehouse, DS, d)["decision"] == "promoted"
    assert statuses(lakehouse) == {a: "retired", b: "rejected", c: "rejected", d: "champion"}
    assert paths(lakehouse, "champion", None) == ("/models/base", "/runs/d/adapter")

    row = registry.lookup(lakehouse, f"registry:{d}")
    assert row["valid_hr1"] == 0.30 and row["eval_samples"] == 100
    assert dict(row["metrics"])["test/sampled/ndcg@5"] == pytest.approx(0.15)

    log = sorted(lakehouse.read_arrow(MODEL_PROMOTIONS).to_pylist(), key=lambda r: r["decided_at"])
    assert [(r["candidate_version"], r["decision"]) for r in log] == [
        (a, "promoted"),
        (b, "rejected"),
        (c, "rejected"),
        (d, "promoted"),
    ]


def test_the_new_champion_and_the_retired_one_change_in_one_commit(lakehouse):
    a, b = add(lakehouse, "a"), add(lakehouse, "b")
    evaluated(lakehouse, BASE, 0.0)
    evaluated(lakehouse, a, 0.20)
    evaluated(lakehouse, b, 0.30)
    registry.promote(lakehouse, DS, a, baseline_version=BASE)
    before = lakehouse.version(MODEL_REGISTRY)
    registry.promote(lakehouse, DS, b)
    assert lakehouse.version(MODEL_REGISTRY) == before + 1  # one MERGE: never no champion
    assert statuses(lakehouse) == {a: "retired", b: "champion"}
    # Every version of the table in between had exactly one champion.
    for v in range(lakehouse.version(MODEL_REGISTRY) + 1):
        rows = lakehouse.read_arrow(MODEL_REGISTRY, version=v).to_pylist()
        assert sum(r["status"] == "champion" for r in rows) <= 1


def test_a_run_that_changed_no_weight_keeps_its_own_row_and_is_never_promoted(lakehouse):
    """A GRPO run with no reward spread saves its SFT parent's weights: the same version
    under another run id. Keyed on the version, its row once replaced the SFT's."""
    sft, grpo = f"sft-{DS}-a", f"grpo-{DS}-a"
    a = add(lakehouse, "a", minute=1)
    assert add(lakehouse, "a", stage="grpo", minute=2) == a
    add(lakehouse, "a", stage="grpo", minute=3)  # the run redone: its row, replaced

    def by_run() -> dict[str, tuple[str, str]]:
        rows = lakehouse.read_arrow(MODEL_REGISTRY).to_pylist()
        return {r["run_id"]: (r["stage"], r["status"]) for r in rows}

    assert by_run() == {sft: ("sft", "registered"), grpo: ("grpo", "registered")}
    assert registry.lookup(lakehouse, sft)["stage"] == "sft"
    assert registry.latest(lakehouse, DS, "sft")["run_id"] == sft
    assert registry.lookup(lakehouse, a)["run_id"] == grpo  # a version: its newest run

    evaluated(lakehouse, BASE, 0.05)
    evaluated(lakehouse, a, 0.20)
    assert registry.promote(lakehouse, DS, sft, baseline_version=BASE)["decision"] == "promoted"
    # Promoting the copy would retire the champion for the very same model.
    for ref in (grpo, a):
        again = registry.promote(lakehouse, DS, ref)
        assert again["decision"] == "rejected"
        assert f"the same weights as the champion (run {sft})" in again["reason"]
    assert by_run() == {sft: ("sft", "champion"), grpo: ("grpo", "rejected")}
    assert registry.champion(lakehouse)["run_id"] == sft
    assert registry.promote(lakehouse, DS, sft)["reason"] == "already the champion"
    assert by_run()[sft] == ("sft", "champion")


def test_min_gain_and_min_samples(lakehouse):
    a, b, c = add(lakehouse, "a"), add(lakehouse, "b"), add(lakehouse, "c")
    evaluated(lakehouse, BASE, 0.0)
    evaluated(lakehouse, a, 0.20)
    evaluated(lakehouse, b, 0.22)
    evaluated(lakehouse, c, 0.90, samples=8)
    registry.promote(lakehouse, DS, a, baseline_version=BASE)
    # alpha 1: the gain alone decides, so min_gain is what rejects it
    decision = registry.promote(lakehouse, DS, b, min_gain=0.05, alpha=1.0)
    assert decision["decision"] == "rejected"
    assert "promotion needs gain > 0.05 and p <= 1.0" in decision["reason"]
    few = registry.promote(lakehouse, DS, c)
    assert few["decision"] == "rejected" and "8 validation samples, fewer than 30" in few["reason"]
    assert registry.champion(lakehouse)["model_version"] == a
    with pytest.raises(R2RecError, match=r"alpha must be in \(0, 1\]"):
        registry.promote(lakehouse, DS, b, alpha=0.0)


def test_the_sign_test_is_exact():
    assert registry.sign_test(0, 0) == 1.0  # only ties: no evidence either way
    assert registry.sign_test(5, 0) == pytest.approx(1 / 32)
    assert registry.sign_test(3, 3) == pytest.approx(42 / 64)  # P(X >= 3), X ~ B(6, 1/2)
    assert registry.sign_test(0, 4) == 1.0
    assert registry.sign_test(25, 20) == pytest.approx(0.2757, abs=1e-4)


def test_a_higher_mean_from_coin_flips_is_not_promoted(lakehouse):
    a, b, c = add(lakehouse, "a"), add(lakehouse, "b"), add(lakehouse, "c")
    evaluated(lakehouse, BASE, 0.0)
    evaluated(lakehouse, a, 0.40)  # hits samples 0-39
    registry.promote(lakehouse, DS, a, baseline_version=BASE)
    # c hits 0-44: five more samples and none fewer, p = 1/32
    evaluated(lakehouse, c, 0.45)
    won = registry.promote(lakehouse, DS, c)
    assert won["decision"] == "promoted" and "5 won, 0 lost" in won["reason"], won["reason"]
    # b's mean is higher still (0.50), but it hits 20-69: 25 samples won from c and 20
    # lost, what a coin does (p = 0.28)
    evaluated(lakehouse, b, 0.50, hits={0: set(range(20, 70))})
    flip = registry.promote(lakehouse, DS, b)
    assert flip["decision"] == "rejected", flip["reason"]
    assert "0.5000 vs 0.4500 on the 100 samples" in flip["reason"]
    assert "25 won, 20 lost, one-sided sign test p = 0.276" in flip["reason"]
    assert registry.champion(lakehouse)["model_version"] == c
    # alpha 1 is the old rule, the higher mean alone
    assert registry.promote(lakehouse, DS, b, alpha=1.0)["decision"] == "promoted"


def test_a_sample_counts_once_however_many_seeds_ranked_it(lakehouse):
    a, b = add(lakehouse, "a"), add(lakehouse, "b")
    evaluated(lakehouse, BASE, 0.0)
    evaluated(lakehouse, a, 0.10, hits={seed: set(range(10)) for seed in (0, 1, 2)})
    registry.promote(lakehouse, DS, a, baseline_version=BASE)
    # b also hits samples 10-15, but on one seed of three: six samples won, not eighteen
    hits = {0: set(range(16)), 1: set(range(10)), 2: set(range(10))}
    evaluated(lakehouse, b, 0.12, hits=hits)
    decision = registry.promote(lakehouse, DS, b)
    assert "on the 100 samples (300 rankings) both ranked: 6 won, 0 lost" in decision["reason"]
    assert "p = 0.0156" in decision["reason"] and decision["decision"] == "promoted"


def test_promotion_refuses_what_it_cannot_pair(lakehouse):
    a, b = add(lakehouse, "a"), add(lakehouse, "b")
    # a champion of an earlier date, not evaluated on this one
    registry.register(lakehouse, {**registry.lookup(lakehouse, a), "status": "champion"})
    evaluated(lakehouse, b, 0.30)
    with pytest.raises(R2RecError, match=r"the champion .* has no validation HR@1 on 2026-11-25"):
        registry.promote(lakehouse, DS, b)
    # outcomes from another evaluation run than the metrics (a crash between the writes)
    evaluated(lakehouse, a, 0.10)
    rows = lakehouse.read_arrow(EVAL_METRICS).to_pylist()
    mine = [r | {"run_id": "later"} for r in rows if r["model"] == f"llm:{a}"]
    lakehouse.overwrite(EVAL_METRICS, mine, predicate=f"ds = '{DS}' AND model = 'llm:{a}'")
    with pytest.raises(R2RecError, match=r"outcomes and metrics on 2026-11-25 are from different"):
        registry.promote(lakehouse, DS, b)
    # metrics with no outcomes at all (evaluated before outcomes were written)
    lakehouse.overwrite(
        EVAL_OUTCOMES,
        [],
        predicate=f"ds = '{DS}' AND model = 'llm:{a}'",
    )
    with pytest.raises(R2RecError, match=r"no per-sample outcomes on 2026-11-25 to pair"):
        registry.promote(lakehouse, DS, b)
    assert not lakehouse.exists(MODEL_PROMOTIONS)  # nothing decided on what was refused
