"""The README results table is generated from eval_metrics and the registry: its rows,
names, numbers and the block it replaces."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from inference import results
from r2rec import registry
from r2rec.contracts import EVAL_METRICS, EVAL_OUTCOMES
from r2rec.errors import R2RecError

DS = "2026-11-25"
BASE = "smollm2-135m-instruct@aaaaaaaaaaaa"
SFT = f"{BASE}+adapter@111111111111"
GRPO = f"{BASE}+adapter@222222222222"
GRPO2 = f"{BASE}+adapter@333333333333"


def register(lake, version: str, stage: str, manifest: dict, minute: int) -> None:
    registry.register(
        lake,
        {
            "model_version": version, "run_id": f"{stage}-{DS}-{minute}", "ds": DS,
            "stage": stage, "base_model": "smollm2-135m-instruct", "base_version": BASE,
            "model_path": "/m", "adapter_path": f"/runs/{minute}/adapter",
            "parent_version": None, "run_dir": f"/runs/{minute}",
            "manifest": json.dumps({"stage": stage, **manifest}),
            "registered_at": dt.datetime(2026, 11, 25, 12, minute, tzinfo=dt.UTC),
        },
    )  # fmt: skip


def metric_rows(model: str, hr1: float, subset: str = "hash-300") -> list[dict]:
    rows = []
    for split in ("valid", "test"):
        for seed in (None, 0, 1, 2):
            for metric, value in (("hr@1", hr1), ("valid_ratio", 1.0), ("ndcg@5", hr1 + 0.1)):
                ci = (hr1 - 0.05, hr1 + 0.05) if metric == "hr@1" and seed is None else (None, None)
                rows.append({
                    "ds": DS, "model": model, "split": split, "protocol": "sampled",
                    "subset": subset, "seed": seed, "metric": metric,
                    "value": value if seed is None else 0.999, "ci_low": ci[0],
                    "ci_high": ci[1], "samples": 300, "run_id": "e", "detail": None,
                })  # fmt: skip
    return rows


@pytest.fixture
def lake(lakehouse):
    register(
        lakehouse, SFT, "sft", minute=1, manifest={
            "global_step": 1000,
            "config": {"r2rec": {"evidence": "chains"},
                       "trl": {"per_device_train_batch_size": 2,
                               "gradient_accumulation_steps": 1}},
            "inputs": {"sft_examples": {"rows_used": 6597}},
        },
    )  # fmt: skip
    register(
        lakehouse, GRPO, "grpo", minute=2, manifest={
            "global_step": 30,
            "config": {"r2rec": {"evidence": "chains"},
                       "trl": {"per_device_train_batch_size": 4,
                               "gradient_accumulation_steps": 1, "num_generations": 4,
                               "temperature": 1.0}},
        },
    )  # fmt: skip
    register(
        lakehouse, GRPO2, "grpo", minute=3, manifest={
            "global_step": 100,
            "config": {"r2rec": {"evidence": "chains"},
                       "trl": {"per_device_train_batch_size": 8,
                               "gradient_accumulation_steps": 1, "num_generations": 8,
                               "temperature": 1.5}},
        },
    )  # fmt: skip
    rows = [
        *metric_rows("popularity", 0.25),
        *metric_rows("sasrec", 0.5),
        *metric_rows("evidence", 0.3),
        *metric_rows(f"llm:{GRPO}", 0.31),
        *metric_rows(f"llm:{GRPO2}", 0.32),
        *metric_rows(f"llm:{SFT}", 0.303),
        *metric_rows(f"llm:{BASE}", 0.0),
        *metric_rows("llm:unregistered@1", 0.1),
        *metric_rows("popularity", 0.9, subset="all"),  # another subset: not in the table
    ]
    lakehouse.overwrite(EVAL_METRICS, rows, predicate=f"ds = '{DS}'")
    return lakehouse


def test_the_table_orders_names_and_fills_rows_from_eval_metrics(lake):
    text = results.table(lake, DS, "hash-300")
    note, _, head, _, *body = text.splitlines()
    assert "samples `hash-300` per split, mean over 3 candidate seeds (0, 1, 2)" in note
    assert head.startswith("| model | test HR@1 [95% CI] |")
    names = [line.split(" | ")[0].removeprefix("| ") for line in body]
    # Classical rows first, then the untuned base, then trained runs in registration order.
    assert names == [
        "SASRec",
        "popularity",
        "evidence ranker (no LLM)",
        "untuned smollm2-135m-instruct",
        "SFT with evidence (1000 steps x 2 = 2000 of 6597 examples)",
        # Two GRPO runs of one SFT model: their rows say how each sampled.
        "SFT + GRPO with evidence (30 steps x 1 = 30 prompts, 4 completions at temperature 1)",
        "SFT + GRPO with evidence (100 steps x 1 = 100 prompts, 8 completions at temperature 1.5)",
        "llm:unregistered@1",
    ]
    cells = {name: line.split(" | ") for name, line in zip(names, body, strict=True)}
    # The seed mean, not a seed's value (0.999), with its interval; the hash-300 subset,
    # not the "all" rows (popularity 0.9 there).
    assert cells["popularity"][1:6] == ["0.250 [0.200, 0.300]", "0.250 [0.200, 0.300]",
                                        "—", "1.000", "0.350"]  # fmt: skip
    assert cells["SASRec"][-1] == "300 |"
    assert cells["SASRec"][6] == "—"  # no reasoning metrics for a classical model


def test_runs_that_saved_the_same_weights_share_one_row_naming_both(lake):
    # A GRPO run that changed no weight registers its SFT parent's version.
    register(lake, SFT, "grpo", minute=4, manifest={"global_step": 5, "config": {}})
    assert results.llm_names(lake)[f"llm:{SFT}"] == (
        "SFT with evidence (1000 steps x 2 = 2000 of 6597 examples) = SFT + GRPO with "
        "evidence (5 steps)"
    )
    body = results.table(lake, DS, "hash-300").splitlines()[4:]
    assert sum(line.startswith("| SFT with evidence (1000 steps") for line in body) == 1


def outcome(model: str, split: str, sample: str, seed: int, hit: float, run: str = "e") -> dict:
    return {"ds": DS, "model": model, "split": split, "sample_id": sample, "seed": seed,
            "target_rank": 1 if hit else 2, "answer_valid": True, "hit1": hit,
            "run_id": run}  # fmt: skip


def test_each_row_is_paired_with_the_evidence_ranker_on_the_same_test_rankings(lake):
    hits = {  # (evidence, SFT) per sample, seeds 0 and 1
        "s0": ((1, 1), (1, 1)), "s1": ((0, 0), (1, 1)),
        "s2": ((1, 0), (0, 0)), "s3": ((0, 0), (1, 0)),
    }  # fmt: skip
    rows = [
        outcome(model, "test", sid, seed, float(pair[k][seed]))
        for sid, pair in hits.items()
        for k, model in enumerate(("evidence", f"llm:{SFT}"))
        for seed in (0, 1)
    ]
    rows += [
        outcome(f"llm:{SFT}", "valid", "s1", 0, 0.0),  # another split
        outcome(f"llm:{SFT}", "test", "s4", 0, 1.0),  # a sample the ranker did not rank
        outcome("llm:unregistered@1", "test", "s0", 0, 1.0, run="old"),  # not the row's run
    ]
    lake.overwrite(EVAL_OUTCOMES, rows, predicate=f"ds = '{DS}'")
    # per-sample differences 0, 1, -0.5, 0.5: mean 0.25, sd sqrt(1.25 / 3) over 4 samples
    half = 1.959963984540054 * math.sqrt(1.25 / 3 / 4)
    got = results.paired_to_reference(lake, DS, "hash-300", results._rows(lake, DS, "hash-300"))
    assert set(got) == {f"llm:{SFT}"}
    assert got[f"llm:{SFT}"] == pytest.approx((0.25, 0.25 - half, 0.25 + half, 4))
    line = next(x for x in results.table(lake, DS, "hash-300").splitlines() if "1000 steps" in x)
    assert line.split(" | ")[3] == f"+0.250 [{0.25 - half:+.3f}, {0.25 + half:+.3f}]"
    # a hash subset keeps only its own samples: with hash-2, two of the four
    two = results.paired_to_reference(lake, DS, "hash-2", results._rows(lake, DS, "hash-300"))
    assert two[f"llm:{SFT}"][3] == 2


def test_readme_block_is_replaced_and_nothing_else(lake, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nbefore\n{results.BEGIN}\nold table\n{results.END}\nafter\n")
    results.write_readme(readme, results.table(lake, DS, "hash-300"))
    doc = readme.read_text()
    assert doc.startswith("# Title\nbefore\n" + results.BEGIN + "\nds 2026-11-25")
    assert doc.endswith(results.END + "\nafter\n") and "old table" not in doc
    plain = tmp_path / "plain.md"
    plain.write_text("no block here\n")
    with pytest.raises(R2RecError, match="no <!-- results:begin -->"):
        results.write_readme(plain, "x")
    assert plain.read_text() == "no block here\n"
    with pytest.raises(R2RecError, match="no sampled metrics for ds=2026-11-25, subset=hash-9"):
        results.table(lake, DS, "hash-9")


def test_main_writes_the_named_block_only_and_refuses_odd_names(lake, tmp_path, capsys):
    readme = tmp_path / "README.md"
    short_begin, short_end = results.markers("results-short")
    text = f"{results.BEGIN}\nkeep\n{results.END}\n{short_begin}\nold\n{short_end}\n"
    readme.write_text(text)
    common = ["--ds", DS, "--lakehouse", lake.root, "--subset", "hash-300", "--readme"]
    assert results.main([*common, str(readme), "--block", "results-short"]) == 0
    doc = readme.read_text()
    assert "\nkeep\n" in doc and "\nold\n" not in doc and "| SASRec |" in doc
    for bad in ("../x", "Results", "a b", "x\n"):
        assert results.main([*common, str(readme), "--block", bad]) == 1
        assert "--block must be" in capsys.readouterr().err
    assert readme.read_text() == doc


def test_a_grpo_row_names_the_target_likelihood_reward_it_was_trained_with():
    def manifest(weight):
        r2rec = {"evidence": "chains"} if weight is None else {"likelihood_reward": weight}
        return {
            "stage": "grpo",
            "global_step": 30,
            "config": {
                "r2rec": r2rec,
                "trl": {"per_device_train_batch_size": 4, "num_generations": 4,
                        "temperature": 1.0},
            },
        }  # fmt: skip

    plain = "30 steps x 1 = 30 prompts, 4 completions at temperature 1"
    # runs from before the option, and runs with it off, keep their names
    assert results._budget(manifest(None)) == plain
    assert results._budget(manifest(0.0)) == plain
    assert results._budget(manifest(0.5)) == plain + ", target-likelihood reward x 0.5"


def test_a_run_of_whole_epochs_on_a_gpu_says_so():
    def manifest(trl, hardware):
        return {"stage": "sft", "global_step": 305, "hardware": hardware,
                "inputs": {"sft_examples": {"rows_used": 9750}},
                "config": {"trl": {"per_device_train_batch_size": 32, **trl}}}  # fmt: skip

    gpu = {"cpu_count": 16, "gpus": ["NVIDIA H200"]}
    assert results._budget(manifest({"max_steps": -1, "num_train_epochs": 1.0}, gpu)) == (
        "1 epoch of 9750 examples, 305 steps x 32, on NVIDIA H200"
    )
    assert results._budget(manifest({"max_steps": -1, "num_train_epochs": 3.0}, {})) == (
        "3 epochs of 9750 examples, 305 steps x 32"
    )
    # max_steps bounds a run whatever num_train_epochs says (trl's default is 3)
    assert results._budget(manifest({"max_steps": 305, "num_train_epochs": 3.0}, gpu)) == (
        "305 steps x 32 = 9760 of 9750 examples, on NVIDIA H200"
    )


def test_a_run_stopped_at_its_time_limit_says_so():
    def manifest(stopped, limit):
        return {"stage": "sft", "global_step": 140, "stopped_at_deadline": stopped,
                "hardware": {"gpus": ["NVIDIA H200"]},
                "inputs": {"sft_examples": {"rows_used": 9750}},
                "config": {"r2rec": {"max_train_seconds": limit},
                           "trl": {"per_device_train_batch_size": 2,
                                   "max_steps": 1000}}}  # fmt: skip

    plain = "140 steps x 2 = 280 of 9750 examples"
    assert results._budget(manifest(False, 0.0)) == plain + ", on NVIDIA H200"
    # manifests from before the flag existed say nothing either
    assert results._budget({**manifest(False, 0.0), "stopped_at_deadline": None}) == (
        plain + ", on NVIDIA H200"
    )
    assert results._budget(manifest(True, 3600.0)) == (
        plain + ", stopped at its 3600 s limit, on NVIDIA H200"
    )
    assert (
        results._budget(manifest(True, None))
        == plain + ", stopped at its time limit, on NVIDIA H200"
    )
