"""SFT and GRPO end to end on a tiny model: kill-and-resume, manifest, registry.

Real trl trainers in subprocesses, SIGKILLed after their first checkpoint and started
again with the same command, on a lakehouse of hand-made ``sft_examples`` and
``rl_prompts`` (the tables the traces job writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from r2rec import faults
from r2rec.contracts import MODEL_REGISTRY, RL_PROMPTS, SFT_EXAMPLES
from r2rec.prompt import PROMPT_VERSION, RecPrompt, render_completion, render_messages

ROOT = Path(__file__).resolve().parents[2]
DS = "2026-11-25"
TITLES = [f"Movie {k}" for k in range(40)]


def prompt_for(n: int) -> tuple[RecPrompt, str]:
    history = TITLES[n : n + 5]
    candidates = [(f"C{j + 1}", TITLES[(n + 7 + j) % 40]) for j in range(6)]
    return RecPrompt(history, candidates), f"C{n % 6 + 1}"


@pytest.fixture(scope="module")
def train_lake(tmp_path_factory):
    return make_train_lake(tmp_path_factory.mktemp("train") / "lakehouse")


def make_train_lake(root: Path):
    """A lakehouse of 16 hand-made ``sft_examples`` and ``rl_prompts`` rows."""
    from r2rec.lakehouse import Lakehouse

    lake = Lakehouse(str(root))
    sft, rl = [], []
    for n in range(16):
        prompt, answer = prompt_for(n)
        thoughts = [f'The user watched "{prompt.history[-1]}".', f"[{answer}] fits best."]
        sft.append(
            {
                "ds": DS,
                "teacher": "template",
                "evidence": "chains",
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
                "evidence": "chains",
                "sample_id": f"u{n}:1",
                "split": "train" if n < 12 else "valid",
                "prompt_version": PROMPT_VERSION,
                "prompt": render_messages(prompt),
                "target_label": answer,
                "candidate_labels": prompt.labels(),
                "candidate_item_ids": [f"i{j}" for j in range(6)],
                "prompt_facts": prompt.to_json(),
                "flags": [],
            }
        )
    part = {"ds": DS, "evidence": "chains"}
    lake.overwrite(SFT_EXAMPLES, sft, partition={**part, "teacher": "template"})
    lake.overwrite(RL_PROMPTS, rl, partition=part)
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


def killed_at(cmd: list[str], point: str, timeout: float = 300) -> None:
    """Run ``cmd`` with a SIGKILL injected at ``point`` (r2rec.faults) and check it died there."""
    out = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, faults.ENV: point}, start_new_session=True,
    )  # fmt: skip
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    assert f"killing the process group at {point.replace(':', ' #')}" in out.stderr


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
    # Each line says how much memory its process held (a torch trainer: well over 50 MiB).
    assert all(e["rss_mb"] > 50 for e in log), [e["rss_mb"] for e in log]
    # ... and when: the clock moves forward line by line, across the restart too.
    times = [e["time"] for e in log]
    assert times == sorted(times) and times[-1] - times[0] > 0.1, times
    before = [e["step"] for e in log if e["pid"] == pids[0] and "loss" in e]
    after = [e["step"] for e in log if e["pid"] == pids[1] and "loss" in e]
    assert before[0] == 1 and max(before) >= resumed
    # The second process started from the checkpoint, not from step 0.
    assert after == list(range(resumed + 1, total + 1))


def test_run_id_hashes_config_and_identity():
    from trl import SFTConfig

    from trainer.common import RunArgs, config_dict, run_id

    args, trl_args = RunArgs(ds=DS), SFTConfig(output_dir="unused", report_to="none", bf16=False)
    plain = run_id("grpo", args, trl_args)
    assert plain == run_id("grpo", args, trl_args) and plain.startswith(f"grpo-{DS}-")
    assert run_id("grpo", args, trl_args, {}) == plain  # no identity: SFT ids unchanged
    a = run_id("grpo", args, trl_args, {"parent_version": "m@1+adapter@a"})
    b = run_id("grpo", args, trl_args, {"parent_version": "m@1+adapter@b"})
    assert len({plain, a, b}) == 3
    # New data (a rerun of the date rewrote the examples) is a new run ...
    assert run_id("sft", args, trl_args, {"sft_examples": "f1"}) != run_id(
        "sft", args, trl_args, {"sft_examples": "f2"}
    )
    # ... but where the lakehouse lives is not what is trained.
    moved = RunArgs(ds=DS, lakehouse="/elsewhere", runs_dir="/runs")
    assert run_id("sft", moved, trl_args) == run_id("sft", args, trl_args)
    # An option added later is a new run where set, and at its default leaves the ids of
    # runs trained before it existed unchanged (they trained what the default trains).
    liked = RunArgs(ds=DS, likelihood_reward=0.5)
    assert run_id("grpo", liked, trl_args) != plain
    assert run_id("sft", RunArgs(ds=DS, max_train_seconds=60.0), trl_args) != (
        run_id("sft", args, trl_args)
    )
    # An export is identified by its rows' digest (the identity), not by its path.
    exported = RunArgs(ds=DS, examples="/node/sft.json.gz", register=False)
    assert run_id("sft", exported, trl_args) == run_id("sft", args, trl_args)
    config = config_dict(args, trl_args)
    later = {"likelihood_reward", "max_train_seconds", "examples"}
    config["r2rec"] = {
        k: v for k, v in config["r2rec"].items()
        if k not in {"lakehouse", "runs_dir", "register", *later}
    }  # fmt: skip
    before = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    assert plain == f"grpo-{DS}-{before.hexdigest()[:8]}"


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
    # trl restarts its num_tokens counter in the resumed process: steps 5-8 count from 0.
    restarted = [{"step": k, "num_tokens": 100.0 * (k if k <= 4 else k - 4)} for k in range(1, 9)]
    out = throughput(restarted, 40.0, 8, resumed)
    assert (out["num_tokens"], out["tokens_per_s"]) == (800.0, 10.0)


def test_sft_then_grpo_resume_after_sigkill_and_register(train_lake, tiny_model_dir):
    from r2rec import registry

    lake = train_lake
    sft = command("sft", lake, tiny_model_dir, "--max_steps", "12", "--max_examples", "0")
    # Killed while writing its second checkpoint (step 4): weights on disk, no trainer
    # state yet. The retry must resume from the complete checkpoint-2, not fail on 4.
    killed_at(sft, "sft.checkpoint_partial:2")
    partial = run_dir_of(lake, "sft") / "checkpoints" / "checkpoint-4"
    assert partial.is_dir() and not (partial / "trainer_state.json").exists()
    sft_report = finish(sft)
    sft_dir = run_dir_of(lake, "sft")
    assert_resumed(sft_report, sft_dir, 12)
    assert sft_report["resumed_from"].endswith("checkpoint-2")

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

    # Started again once more, the finished run is not trained twice, and the report
    # says how far it got: all 12 steps, not cut short by a time limit.
    again = finish(sft)
    assert again["status"] == "already complete"
    assert again["global_step"] == 12 and again["stopped_at_deadline"] is False
    assert again["model_version"] == sft_report["model_version"]

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
        "--rollout",
        "trl",
    )
    killed_at(grpo, "grpo.checkpoint_saved:1")
    grpo_report = finish(grpo)
    grpo_dir = run_dir_of(lake, "grpo")
    assert_resumed(grpo_report, grpo_dir, 6)
    assert grpo_report["parent_version"] == sft_report["model_version"]
    assert grpo_report["prompts"] == 12  # the train split only, never valid/test
    rewards = [e for e in progress(grpo_dir) if "reward" in e]
    assert {"rewards/accuracy_reward/mean", "rewards/format_reward/mean"} <= set(rewards[0])
    assert "completions/mean_length" in rewards[0]
    # The learning signal counts each step's one group once across the kill and the
    # resume, and agrees with trl's own logged spread of each reward function.
    learned = grpo_report["learning_signal"]
    logged = {
        e["step"]: e
        for e in json.loads((grpo_dir / "log_history.json").read_text())
        if "rewards/accuracy_reward/std" in e
    }
    assert learned["groups"] == 6 and sorted(logged) == [1, 2, 3, 4, 5, 6]
    for name in ("accuracy_reward", "format_reward", "grounding_reward"):
        told_apart = sum(e[f"rewards/{name}/std"] > 1e-6 for e in logged.values())
        assert learned["groups_with_spread"][name] == told_apart, (name, learned)
    assert json.loads((grpo_dir / "manifest.json").read_text())["learning_signal"] == learned

    # Six tiny groups may tell no completion apart: GRPO then saves the SFT weights
    # unchanged, says so, and both runs keep their registry rows (keyed by run id).
    rows = {r["stage"]: r for r in lake.read_arrow(MODEL_REGISTRY).to_pylist()}
    assert rows["sft"]["model_version"] == sft_report["model_version"]
    same = rows["grpo"]["model_version"] == rows["sft"]["model_version"]
    assert json.loads(rows["grpo"]["manifest"])["unchanged"] is same
    assert rows["grpo"]["parent_version"] == sft_report["model_version"]
    assert rows["grpo"]["adapter_path"] == str(grpo_dir / "adapter")
    assert {r["status"] for r in rows.values()} == {"registered"}
    ref = registry.resolve_model_ref(lake, f"registry:{rows['grpo']['run_id']}", None)
    assert (ref.model, ref.adapter) == (
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

    # A run that changes no weight (learning rate 0) saves its parent's weights, so it has
    # the parent's version: it says so, and both runs keep their rows (a registry keyed by
    # version once let such a GRPO row replace its SFT's).
    still = finish([*grpo, "--max_steps", "1", "--learning_rate", "0"])
    assert still["status"] == "trained" and still["unchanged"] is True
    assert still["model_version"] == still["parent_version"] == sft2["model_version"]
    runs = {r["run_id"]: r for r in lake.read_arrow(MODEL_REGISTRY).to_pylist()}
    assert runs[still["run_id"]]["stage"] == "grpo"
    assert runs[sft2["run_id"]]["model_version"] == sft2["model_version"]
    assert len(runs) == 5  # sft, grpo, sft2, grpo2 and this one


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


def test_the_completion_only_lm_head_gives_the_full_heads_loss_and_gradients(
    tiny_model_dir, tmp_path
):
    """Projecting only the completion through the LM head (CPU) is the same loss and the
    same gradients as transformers' own loss over every position's logits, at less cost.
    (trl's chunked head, what runs otherwise, agrees with both to ~0.1%.)"""
    import torch
    from datasets import Dataset
    from trl import SFTConfig

    from trainer.common import RunArgs, load_model, load_tokenizer, lora_config
    from trainer.sft import completion_loss_trainer

    rows = []
    for n in range(4):
        prompt, answer = prompt_for(n)
        completion = render_completion([f'The user chose "{prompt.history[-1]}".'], answer)
        messages = [{"role": "assistant", "content": completion}]
        rows.append({"prompt": render_messages(prompt), "completion": messages})
    args = SFTConfig(
        output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=4, use_cpu=True,
        completion_only_loss=True, gradient_checkpointing=False,
    )  # fmt: skip
    tokenizer = load_tokenizer(tiny_model_dir)

    def loss_and_grads(how: str):
        torch.manual_seed(0)
        trainer = completion_loss_trainer(how != "trl")(
            model=load_model(tiny_model_dir, args),
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora_config(RunArgs(ds=DS, lora_dropout=0.0)),
        )
        batch = next(iter(trainer.get_train_dataloader()))
        model = trainer.model
        if how == "full":  # every position's logits, transformers' own causal-LM loss
            loss = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                labels=batch["labels"],
            ).loss  # fmt: skip
        else:
            loss = trainer.compute_loss(model, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.item(), grads, trainer._metrics["train"]

    ours, our_grads, our_metrics = loss_and_grads("ours")
    full, full_grads, _ = loss_and_grads("full")
    trl, trl_grads, trl_metrics = loss_and_grads("trl")
    assert ours == pytest.approx(full, rel=1e-5) == pytest.approx(trl, rel=1e-5) and ours > 0
    assert our_grads.keys() == full_grads.keys() and len(our_grads) > 10
    for name, grad in our_grads.items():
        assert torch.allclose(grad, full_grads[name], rtol=1e-5, atol=1e-8), name
        assert (grad - trl_grads[name]).norm() <= 1e-2 * trl_grads[name].norm() + 1e-9, name
    for key in ("mean_token_accuracy", "entropy", "num_tokens"):
        assert our_metrics[key] == pytest.approx(trl_metrics[key], rel=1e-4), key


def test_grpo_shared_prompt_forward_gives_trls_log_probs_entropies_and_gradients(
    tiny_model_dir, tmp_path
):
    """GRPO's policy forward with each prompt run once for its completions (the cache kept
    in the graph) gives trl's per-token log-probabilities, entropies and gradients: two
    prompts of different lengths in one batch (one left-padded), completions of different
    lengths (right-padded), at a sampling temperature the log-probabilities must use."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig

    from trainer.common import RunArgs, load_model, load_tokenizer, lora_config
    from trainer.grpo import prompt_groups, shared_prompt_trainer

    args = GRPOConfig(
        output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=4,
        num_generations=2, use_cpu=True, temperature=0.7, gradient_checkpointing=False,
        bf16=False,  # float32 on every CPU: a comparison to 1e-4, not to bfloat16 rounding
    )  # fmt: skip
    tokenizer = load_tokenizer(tiny_model_dir)
    pad = tokenizer.pad_token_id

    def trainer_for(enabled: bool):
        torch.manual_seed(0)  # the same LoRA initialisation for both
        trainer = shared_prompt_trainer(enabled)(
            model=load_model(tiny_model_dir, args),
            reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
            args=args,
            train_dataset=Dataset.from_list([{"prompt": "x"}] * 4),
            processing_class=tokenizer,
            peft_config=lora_config(RunArgs(ds=DS, lora_dropout=0.0)),
        )
        with torch.no_grad():  # LoRA B starts at zero; make the adapter matter
            for name, p in trainer.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
        return trainer

    long_prompt = tokenizer("Step 1: the user watched Fargo (1996) twice.")["input_ids"]
    short_prompt = long_prompt[:5]
    width = len(long_prompt)
    prompts = [long_prompt, long_prompt, short_prompt, short_prompt]
    completions = [[11, 12, 13, 14, 15], [21, 22], [31, 32, 33], [41, 42, 43, 44, 45]]
    prompt_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    completion_ids = torch.tensor([c + [pad] * (5 - len(c)) for c in completions])
    completion_mask = torch.tensor([[1] * len(c) + [0] * (5 - len(c)) for c in completions])
    assert prompt_groups(prompt_ids, prompt_mask) == [[0, 1], [2, 3]]

    def forward(trainer, rows, unpadded: bool):
        # trl's own path gets each group unpadded: transformers 5 numbers positions from
        # the cache, not the mask, so a left-padded row would be a different sequence.
        index = torch.tensor(rows)
        p_ids, p_mask = prompt_ids[index], prompt_mask[index]
        if unpadded:
            keep = p_mask[0].bool()
            p_ids, p_mask = p_ids[:, keep], p_mask[:, keep]
        return trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([p_ids, completion_ids[index]], dim=1),
            torch.cat([p_mask, completion_mask[index]], dim=1),
            5,
            compute_entropy=True,
        )

    def loss_of(logps, entropies, rows):
        mask = completion_mask[torch.tensor(rows)]
        weights = torch.arange(1.0, 6.0)  # an uneven weighting, so every position counts
        return (((logps + 0.1 * entropies) * weights) * mask).sum()

    def grads_of(trainer):
        params = trainer.model.named_parameters()
        return {n: p.grad.clone() for n, p in params if p.grad is not None}

    ours = trainer_for(True)
    logps, entropies, _ = forward(ours, [0, 1, 2, 3], unpadded=False)
    loss_of(logps, entropies, [0, 1, 2, 3]).backward()
    our_grads = grads_of(ours)

    def full_logits(trainer, rows):
        """Every position's logits from transformers' own forward, then plain autograd."""
        lp, ent, _ = forward(trainer, rows, unpadded=True)  # trl's values, for comparison
        index = torch.tensor(rows)
        keep = prompt_mask[index][0].bool()
        ids = torch.cat([prompt_ids[index][:, keep], completion_ids[index]], dim=1)
        mask = torch.cat([prompt_mask[index][:, keep], completion_mask[index]], dim=1)
        logits = trainer.model(input_ids=ids, attention_mask=mask).logits[:, -6:-1]
        log_probs = torch.log_softmax(logits.float() / 0.7, dim=-1)
        token = log_probs.gather(2, completion_ids[index][..., None]).squeeze(2)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return token, entropy, lp, ent

    trl = trainer_for(False)
    ref_logps, ref_entropies, ref_loss, trl_logps, trl_entropies = [], [], 0, [], []
    for rows in ([0, 1], [2, 3]):
        token, entropy, lp, ent = full_logits(trl, rows)
        ref_logps.append(token)
        ref_entropies.append(entropy)
        trl_logps.append(lp)
        trl_entropies.append(ent)
        ref_loss = ref_loss + loss_of(token, entropy, rows)
    ref_loss.backward()
    ref_grads = grads_of(trl)

    mask = completion_mask.bool()
    for reference in (torch.cat(ref_logps), torch.cat(trl_logps)):
        assert torch.allclose(logps[mask], reference[mask], atol=1e-4)
    for reference in (torch.cat(ref_entropies), torch.cat(trl_entropies)):
        assert torch.allclose(entropies[mask], reference[mask], atol=1e-4)
    assert (logps[~mask] == 0).all() and (entropies[~mask] == 0).all()
    assert our_grads.keys() == ref_grads.keys() and len(our_grads) > 10
    for name, grad in our_grads.items():
        assert grad.abs().sum() > 0, name
        assert (grad - ref_grads[name]).norm() <= 1e-4 * ref_grads[name].norm() + 1e-7, name


def test_grpo_samples_from_a_vllm_engine_serving_each_steps_adapter(train_lake, tiny_model_dir):
    """The CPU rollout: completions come from vLLM with the current LoRA adapter."""
    lake = train_lake
    report = finish(
        command(
            "grpo",
            lake,
            tiny_model_dir,
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "2",
            "--num_generations",
            "2",
            "--max_completion_length",
            "8",
            "--init_adapter",
            "none",
            "--rollout",
            "vllm",
            "--likelihood_reward",
            "0.5",
            "--runs_dir",
            str(Path(lake.root) / "rollout-runs"),
            "--register",
            "false",
        )
    )
    assert report["status"] == "trained" and report["global_step"] == 2
    run_dir = Path(report["run_dir"])
    steps = [e for e in progress(run_dir) if "reward" in e]
    assert [e["step"] for e in steps] == [1, 2]
    assert all(0 < e["completions/mean_length"] <= 8 for e in steps)
    # The target likelihood, asked of the same engine and adapter: the log share among the
    # candidates' labels, times 0.5. An untrained model spreads its mass over them, so
    # none is 0 (no label's tokens scored) and none is the whole weight.
    likelihood = [e["rewards/target_likelihood_reward/mean"] for e in steps]
    assert all(0 < x < 0.5 for x in likelihood), likelihood
    # The adapter of the last step sampled from is on disk; earlier ones were removed.
    assert [p.name for p in (run_dir / "rollout").iterdir()] == ["step-1"]
    assert (run_dir / "rollout" / "step-1" / "adapter_config.json").is_file()
