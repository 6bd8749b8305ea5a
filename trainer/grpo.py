"""Stage 2: GRPO on the recommendation itself (docs/METHOD.md §7).

``python -m trainer.grpo --config trainer/configs/grpo.yaml --ds D`` continues from the
SFT adapter (by default the newest SFT run registered for D) on the training prompts of
``rl_prompts``, rewarded by accuracy, format and grounding (:mod:`trainer.rewards`).
Generation runs through transformers; ``--use_vllm true`` hands it to vLLM on GPU nodes.
trl logs the reward, each reward function's mean (accuracy among them) and the
completion length every ``logging_steps``.
"""

from __future__ import annotations

import random
import sys
from typing import Any

from r2rec import registry
from r2rec.contracts import RL_PROMPTS
from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse
from r2rec.models import resolve_model
from trainer.common import (
    RunArgs,
    finish,
    input_fingerprint,
    load_model,
    load_tokenizer,
    lora_config,
    own_progress_only,
    progress_callback,
    release_memory_callback,
    stage_main,
    start,
    with_fault_points,
)
from trainer.rewards import REWARD_FUNCS

COLUMNS = ["sample_id", "prompt", "target_label", "candidate_labels", "prompt_facts"]


def load_prompts(
    lake: Lakehouse,
    ds: str,
    max_examples: int,
    seed: int,
    tokenizer,
    max_prompt_tokens: int,
    evidence: str = "chains",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Training-split prompts of ds (never valid/test), seeded subsample, over-long skipped."""
    if not lake.exists(RL_PROMPTS):
        raise R2RecError(f"no rl_prompts table: run `r2rec traces --ds {ds}` first")
    version = lake.version(RL_PROMPTS)
    table = lake.read_arrow(
        RL_PROMPTS,
        version=version,
        partitions=[("ds", "=", ds), ("evidence", "=", evidence)],
        columns=[*COLUMNS, "split"],
    )
    rows = sorted(
        (r for r in table.to_pylist() if r.pop("split") == "train"), key=lambda r: r["sample_id"]
    )
    if not rows:
        raise R2RecError(
            f"no training rl_prompts for ds={ds}, evidence={evidence}: run "
            f"`r2rec traces --ds {ds} --evidence {evidence}` first"
        )
    available = len(rows)
    random.Random(seed).shuffle(rows)
    kept, too_long = [], 0
    for row in rows:
        if max_examples and len(kept) >= max_examples:
            break
        ids = tokenizer.apply_chat_template(
            row["prompt"], tokenize=False, add_generation_prompt=True
        )
        if len(tokenizer.encode(ids, add_special_tokens=False)) > max_prompt_tokens:
            too_long += 1
            continue
        kept.append(row)
    if not kept:
        raise R2RecError(f"every rl_prompt of ds={ds} is over {max_prompt_tokens} tokens")
    inputs = {
        "rl_prompts": {
            "table_version": version,
            "ds": ds,
            "evidence": evidence,
            "split": "train",
            "rows_available": available,
            "rows_used": len(kept),
            "skipped_too_long": too_long,
        }
    }
    return kept, inputs


def starting_adapter(
    lake: Lakehouse, args: RunArgs, base_version: str
) -> tuple[str | None, str | None]:
    """(adapter directory, its model version) GRPO starts from; (None, None) = fresh LoRA."""
    spec = args.init_adapter or "latest-sft"
    if spec == "none":
        return None, None
    if spec == "latest-sft":
        row = registry.latest(lake, args.ds, "sft")
        if row is None:
            raise R2RecError(
                f"no SFT run registered for ds={args.ds}: run `python -m trainer.sft --ds "
                f"{args.ds}` first, or pass --init_adapter none to start from the base model"
            )
    elif registry.is_reference(spec):
        row = registry.lookup(lake, spec)
    else:
        resolved = resolve_model(args.model, spec)
        return resolved.adapter, resolved.version
    if not row["adapter_path"]:
        raise R2RecError(f"{row['run_id']} was fully fine-tuned: pass its model as --model")
    if row["base_version"] != base_version:
        raise R2RecError(
            f"{row['run_id']} adapts {row['base_version']}, not this run's base {base_version}"
        )
    return row["adapter_path"], row["model_version"]


def make_rollout(run_args: RunArgs, train_args, base_path: str, run_dir):
    """trainer.rollout's vLLM sampler where it pays (CPU, LoRA), else None (trl's own)."""
    import os

    import torch

    choice = run_args.rollout
    if choice == "auto":
        lora = run_args.use_lora or run_args.init_adapter not in (None, "none")
        choice = (
            "vllm" if lora and not torch.cuda.is_available() and not train_args.use_vllm else "trl"
        )
    if choice == "trl":
        return None
    if train_args.use_vllm:
        raise R2RecError("--rollout vllm and --use_vllm true exclude each other")
    from trainer.rollout import VLLMRollout

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental
    return VLLMRollout(
        base_path,
        run_dir / "rollout",
        max_tokens=train_args.max_completion_length,
        temperature=train_args.temperature,
        lora_rank=run_args.lora_r,
        seed=train_args.seed,
    )


def train(run_args: RunArgs, train_args) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import set_seed
    from trl import GRPOTrainer

    base = resolve_model(run_args.model)
    adapter, parent_version = starting_adapter(
        Lakehouse(run_args.lakehouse), run_args, base.version
    )
    data = input_fingerprint(
        run_args, RL_PROMPTS, {"ds": run_args.ds, "evidence": run_args.evidence}
    )
    identity = {"parent_version": parent_version, "rl_prompts": data}
    run = start("grpo", run_args, train_args, identity=identity)
    if done := run.completed():
        return {"status": "already complete", "run_dir": str(run.dir), **done}
    tokenizer = load_tokenizer(base.path)
    rows, inputs = load_prompts(
        run.lake,
        run_args.ds,
        run_args.max_examples,
        train_args.seed,
        tokenizer,
        run_args.max_prompt_tokens,
        run_args.evidence,
    )
    set_seed(train_args.seed)
    model = load_model(base.path, train_args)
    peft_config = None
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    elif run_args.use_lora:
        peft_config = lora_config(run_args)
    trainer = with_fault_points(GRPOTrainer, "grpo")(
        model=model,
        reward_funcs=list(REWARD_FUNCS),
        args=train_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[progress_callback(run), release_memory_callback()],
        peft_config=peft_config,
        rollout_func=make_rollout(run_args, train_args, base.path, run.dir),
    )
    own_progress_only(trainer)
    resumed_from = run.last_checkpoint()
    trainer.train(resume_from_checkpoint=resumed_from)
    history = trainer.state.log_history
    manifest = finish(
        run,
        trainer,
        tokenizer,
        base=base,
        inputs=inputs,
        train_args=train_args,
        parent_version=parent_version,
        resumed_from=resumed_from,
    )
    last = [e for e in history if "reward" in e]
    return {
        "status": "trained",
        "run_id": run.run_id,
        "run_dir": str(run.dir),
        "model_version": manifest["model_version"],
        "parent_version": parent_version,
        "global_step": manifest["global_step"],
        "resumed_from": resumed_from,
        "prompts": inputs["rl_prompts"]["rows_used"],
        "last_reward": last[-1]["reward"] if last else None,
        "seconds_per_step": manifest["seconds_per_step"],
    }


def main(argv: list[str] | None = None) -> int:
    return stage_main("grpo", "GRPOConfig", train, argv)


if __name__ == "__main__":
    sys.exit(main())
