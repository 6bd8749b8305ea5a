"""bench.training: runs the shipped configs on exported rows and records its table."""

from __future__ import annotations

import json

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
         "--sft-steps", "3", "--grpo-steps", "2", "--record", str(record)]
    )  # fmt: skip
    out = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"')
    ]
    assert [(r["stage"], r["steps"]) for r in out] == [("sft", 3), ("grpo", 2)]
    sft, grpo = out
    assert sft["tokens_per_s"] > 0 and sft["s_per_step"] > 0
    assert (grpo["batch"], grpo["generations"]) == (4, 4)  # grpo.yaml: one prompt x 4
    # A random tiny model never writes a parseable answer: format penalty -1 every time.
    assert grpo["mean_reward"] == -1.0
    text = record.read_text()
    assert training.HEADING in text and "| sft | tiny | float32 | 2 x 1 | 2 |" in text
