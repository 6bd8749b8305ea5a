"""bench.training: runs the shipped configs on exported rows and records its table."""

from __future__ import annotations

import json

import pytest

from tests.trainer.test_training import DS, train_lake  # noqa: F401  (fixture)


def test_export_then_measure_and_record(train_lake, tiny_model_dir, tmp_path, capsys):  # noqa: F811
    from bench import training

    rows = tmp_path / "rows.json"
    assert training.export(train_lake.root, DS, 8, str(rows)) == {
        "sft": 8,
        "rl": 8,
        "path": str(rows),
    }
    data = json.loads(rows.read_text())
    assert {r["target_label"] for r in data["rl"]} <= {f"C{k}" for k in range(1, 7)}
    assert all(r["completion"][0]["role"] == "assistant" for r in data["sft"])

    record = tmp_path / "RESULTS.md"
    training.main(
        ["--examples", str(rows), "--model", tiny_model_dir, "--model-name", "tiny",
         "--sft-steps", "3", "--grpo-steps", "2", "--rollout", "trl", "--grpo-forward",
         "shared,trl", "--record", str(record)]
    )  # fmt: skip
    out = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"')
    ]
    assert [(r["stage"], r["steps"]) for r in out] == [("sft", 3), ("grpo", 2), ("grpo", 2)]
    sft, grpo, grpo_trl = out
    assert sft["tokens_per_s"] > 0 and sft["s_per_step"] > 0
    assert sft["examples_per_h"] == pytest.approx(3600 * 2 / sft["s_per_step"])
    assert grpo["examples_per_h"] == pytest.approx(3600 * 1 / grpo["s_per_step"])  # 4 / 4 gens
    assert (sft["generator"], grpo["generator"], grpo_trl["generator"]) == (
        None, "transformers, prompt once per group", "transformers, trl forward per row"
    )  # fmt: skip
    assert (grpo["batch"], grpo["generations"]) == (4, 4)  # grpo.yaml: one prompt x 4
    # A random tiny model never writes a parseable answer: format penalty -1 every time.
    assert grpo["mean_reward"] == -1.0
    # trl's own generation runs inside its step: no rollout time of its own to report
    assert sft["rollout_s"] is None and grpo["rollout_s"] is None
    text = record.read_text()
    assert training.HEADING in text and "| sft | tiny | float32 | 2 x 1 | 2 |" in text
    assert "| grpo (transformers, prompt once per group) | tiny | float32 | 4 x 4 | 1 |" in text
    assert "| grpo (transformers, trl forward per row) | tiny | float32 | 4 x 4 | 1 |" in text


def test_grpo_completions_come_from_where_the_trainer_would_take_them(tmp_path):
    """--rollout auto on a CPU with LoRA is trainer.rollout's vLLM engine, as in trainer.grpo."""
    from types import SimpleNamespace

    from bench.training import _generator
    from trainer.common import RunArgs
    from trainer.grpo import make_rollout

    args = SimpleNamespace(use_vllm=False, max_completion_length=8, temperature=1.0, seed=0)
    sampler = make_rollout(RunArgs(rollout="auto"), args, "unused", tmp_path)  # engine is lazy
    assert _generator("grpo", args, sampler, True) == "vllm rollout, prompt once per group"
    trl = make_rollout(RunArgs(rollout="trl"), args, "x", tmp_path)
    assert _generator("grpo", args, trl, False) == "transformers, trl forward per row"
    assert _generator("grpo", SimpleNamespace(use_vllm=True), None, True) == (
        "trl vllm, prompt once per group"
    )
    assert _generator("sft", args, None, True) is None


def test_the_timed_rollout_returns_what_the_rollout_returns_and_times_each_call():
    from bench.training import TimedRollout

    calls = []
    timed = TimedRollout(lambda prompts, trainer: calls.append(prompts) or {"n": len(prompts)})
    assert timed(["a", "b"], None) == {"n": 2} and timed(["c"], None) == {"n": 1}
    assert calls == [["a", "b"], ["c"]] and len(timed.seconds) == 2
    assert all(0 <= t < 5 for t in timed.seconds)
