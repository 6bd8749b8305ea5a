"""SFT and GRPO end to end on a tiny model: kill-and-resume, manifest, registry.

Real trl trainers in subprocesses, SIGKILLed after their first checkpoint and started
again with the same command, on a lakehouse of hand-made ``sft_examples`` and
``rl_prompts`` (the tables the traces job writes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r2rec.contracts import MODEL_REGISTRY, RL_PROMPTS, SFT_EXAMPLES
from r2rec.prompt import PROMPT_VERSION, RecPrompt, render_completion, render_messages

ROOT = Path(__file__).resolve().parents[2]
DS = "2026-11-25"
TITLES = [f"Movie {k} (199{k % 10}). Genres: Drama" for k in range(40)]


def prompt_for(n: int) -> tuple[RecPrompt, str]:
    history = TITLES[n : n + 5]
    candidates = [(f"C{j + 1}", TITLES[(n + 7 + j) % 40]) for j in range(6)]
    return RecPrompt(history, candidates), f"C{n % 6 + 1}"


@pytest.fixture(scope="module")
def train_lake(tmp_path_factory):
    from r2rec.lakehouse import Lakehouse

    lake = Lakehouse(str(tmp_path_factory.mktemp("train") / "lakehouse"))
    sft, rl = [], []
    for n in range(16):
        prompt, answer = prompt_for(n)
        thoughts = [f'The user watched "{prompt.history[-1]}".', f"[{answer}] fits best."]
        sft.append(
            {
                "ds": DS,
                "teacher": "template",
                "sample_id": f"u{n}:1",
                "chain_id": f"u{n}:1/1",
                "prompt_version": PROMPT_VERSION,
                "prompt": render_messages(prompt),
                "completion": [
                    {"role": "assistant", "content": render_completion(thoughts, answer)}
                ],
            }
        )
        rl.append(
            {
                "ds": DS,
                "sample_id": f"u{n}:1",
                "split": "train" if n < 12 else "valid",
                "prompt_version": PROMPT_VERSION,
                "prompt": render_messages(prompt),
                "target_label": answer,
                "candidate_labels": prompt.labels(),
                "candidate_item_ids": [f"i{j}" for j in range(6)],
                "grounding_items": sorted({*prompt.history, *(t for _, t in prompt.candidates)}),
            }
        )
    lake.overwrite(SFT_EXAMPLES, sft, partition={"ds": DS, "teacher": "template"})
    lake.overwrite(RL_PROMPTS, rl, partition={"ds": DS})
    return lake


def command(stage: str, lake, model: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        f"trainer.{stage}",
        "--config",
        str(ROOT / "trainer" / "configs" / f"{stage}.yaml"),
        "--ds",
        DS,
        "--lakehouse",
        lake.root,
        "--model",
        model,
        "--save_steps",
        "2",
        "--logging_steps",
        "1",
        *extra,
    ]


def run_dir_of(lake, stage: str) -> Path:
    (found,) = (Path(lake.root) / "runs" / stage).iterdir()
    return found


def kill_after_first_checkpoint(cmd: list[str], lake, stage: str, timeout: float = 300) -> None:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ckpts = list((Path(lake.root) / "runs" / stage).glob("*/checkpoints/checkpoint-*"))
            if any((c / "trainer_state.json").is_file() for c in ckpts):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            if proc.poll() is not None:
                pytest.fail(
                    f"{stage} ended before its first checkpoint: {proc.stderr.read()[-3000:]}"
                )
            time.sleep(0.02)
        pytest.fail(f"{stage} wrote no checkpoint in {timeout} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def finish(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def progress(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]


def assert_resumed(report: dict, run_dir: Path, total: int) -> None:
    assert report["status"] == "trained" and report["global_step"] == total
    resumed = int(report["resumed_from"].rsplit("-", 1)[1])
    assert 2 <= resumed < total
    log = progress(run_dir)
    pids = list(dict.fromkeys(e["pid"] for e in log))
    assert len(pids) == 2, "one process before the kill, one after"
    before = [e["step"] for e in log if e["pid"] == pids[0] and "loss" in e]
    after = [e["step"] for e in log if e["pid"] == pids[1] and "loss" in e]
    assert before[0] == 1 and max(before) >= resumed
    # The second process started from the checkpoint, not from step 0.
    assert after == list(range(resumed + 1, total + 1))


def test_run_id_hashes_config_and_identity():
    from trl import SFTConfig

    from trainer.common import RunArgs, run_id

    args, trl_args = RunArgs(ds=DS), SFTConfig(output_dir="unused", report_to="none", bf16=False)
    plain = run_id("grpo", args, trl_args)
    assert plain == run_id("grpo", args, trl_args) and plain.startswith(f"grpo-{DS}-")
    assert run_id("grpo", args, trl_args, {}) == plain  # no identity: SFT ids unchanged
    a = run_id("grpo", args, trl_args, {"parent_version": "m@1+adapter@a"})
    b = run_id("grpo", args, trl_args, {"parent_version": "m@1+adapter@b"})
    assert len({plain, a, b}) == 3


def test_throughput_of_a_resumed_run_counts_only_its_own_steps():
    from trainer.common import checkpoint_step, throughput

    # Steps 1-4 by a killed process, 5-8 after resuming from checkpoint-4; trl's
    # train_runtime (40 s) covers only the second process.
    history = [{"step": k, "num_tokens": 100.0 * k} for k in range(1, 9)]
    history.append({"step": 8, "train_runtime": 40.0})
    resumed = checkpoint_step("/runs/grpo/x/checkpoints/checkpoint-4")
    assert resumed == 4 and checkpoint_step(None) == 0
    out = throughput(history, 40.0, 8, resumed)
    assert out == {
        "num_tokens": 800.0,
        "steps_this_process": 4,
        "seconds_per_step": 10.0,
        "tokens_per_s": 10.0,
    }
    fresh = throughput(history, 80.0, 8, 0)
    assert fresh["seconds_per_step"] == 10.0 and fresh["tokens_per_s"] == 10.0


def test_sft_then_grpo_resume_after_sigkill_and_register(train_lake, tiny_model_dir):
    from r2rec import registry

    lake = train_lake
    sft = command("sft", lake, tiny_model_dir, "--max_steps", "12", "--max_examples", "0")
    kill_after_first_checkpoint(sft, lake, "sft")
    sft_report = finish(sft)
    sft_dir = run_dir_of(lake, "sft")
    assert_resumed(sft_report, sft_dir, 12)

    manifest = json.loads((sft_dir / "manifest.json").read_text())
    assert manifest["inputs"]["sft_examples"]["rows_used"] == 16
    assert manifest["inputs"]["sft_examples"]["table_version"] == lake.version(SFT_EXAMPLES)
    assert manifest["base_model"]["version"].startswith(Path(tiny_model_dir).name + "@")
    assert manifest["seed"] == 0 and manifest["config"]["trl"]["completion_only_loss"] is True
    assert manifest["git"]["commit"] and manifest["libraries"]["trl"]
    # Throughput counts only the steps the resumed process trained.
    assert manifest["steps_this_process"] == 12 - int(sft_report["resumed_from"].rsplit("-", 1)[1])
    assert (sft_dir / "curves.png").stat().st_size > 1000
    assert (sft_dir / "adapter" / "adapter_config.json").is_file()

    # Started again once more, the finished run is not trained twice.
    assert finish(sft)["status"] == "already complete"

    grpo = command(
        "grpo",
        lake,
        tiny_model_dir,
        "--max_steps",
        "6",
        "--per_device_train_batch_size",
        "2",
        "--num_generations",
        "2",
        "--max_completion_length",
        "12",
    )
    kill_after_first_checkpoint(grpo, lake, "grpo")
    grpo_report = finish(grpo)
    grpo_dir = run_dir_of(lake, "grpo")
    assert_resumed(grpo_report, grpo_dir, 6)
    assert grpo_report["parent_version"] == sft_report["model_version"]
    assert grpo_report["prompts"] == 12  # the train split only, never valid/test
    rewards = [e for e in progress(grpo_dir) if "reward" in e]
    assert {"rewards/accuracy_reward/mean", "rewards/format_reward/mean"} <= set(rewards[0])
    assert "completions/mean_length" in rewards[0]

    rows = {r["stage"]: r for r in lake.read_arrow(MODEL_REGISTRY).to_pylist()}
    assert rows["sft"]["model_version"] == sft_report["model_version"]
    assert rows["grpo"]["parent_version"] == sft_report["model_version"]
    assert rows["grpo"]["adapter_path"] == str(grpo_dir / "adapter")
    assert {r["status"] for r in rows.values()} == {"registered"}
    assert registry.resolve_spec(lake, f"registry:{rows['grpo']['run_id']}", None) == (
        tiny_model_dir,
        str(grpo_dir / "adapter"),
    )

    # A newer SFT run changes what GRPO's `latest-sft` means: the same GRPO command is
    # then a new run from the new adapter, not the old run reported "already complete".
    sft2 = finish(command("sft", lake, tiny_model_dir, "--max_steps", "2", "--max_examples", "0"))
    assert sft2["status"] == "trained" and sft2["model_version"] != sft_report["model_version"]
    grpo2 = finish(grpo)
    assert grpo2["status"] == "trained" and grpo2["parent_version"] == sft2["model_version"]
    assert grpo2["run_id"] != grpo_report["run_id"] and grpo2["global_step"] == 6


def test_pad_token_differs_from_eos(tiny_model_dir):
    from trainer.common import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id


def test_missing_inputs_fail_with_a_clear_message(tmp_path, tiny_model_dir):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.sft",
            "--config",
            str(ROOT / "trainer" / "configs" / "sft.yaml"),
            "--ds",
            DS,
            "--lakehouse",
            str(tmp_path / "empty"),
            "--model",
            tiny_model_dir,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "no sft_examples table: run `r2rec traces --ds 2026-11-25` first" in out.stderr


def test_grpo_without_a_registered_sft_says_what_to_run(train_lake, tmp_path, tiny_model_dir):
    from r2rec.errors import R2RecError
    from r2rec.lakehouse import Lakehouse
    from trainer.common import RunArgs
    from trainer.grpo import starting_adapter

    empty = Lakehouse(str(tmp_path / "lake"))
    with pytest.raises(R2RecError, match="no SFT run registered for ds=2026-11-25"):
        starting_adapter(empty, RunArgs(ds=DS, model=tiny_model_dir), "x@y")
    assert starting_adapter(empty, RunArgs(ds=DS, init_adapter="none"), "x@y") == (None, None)
