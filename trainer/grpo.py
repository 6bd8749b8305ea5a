"""Stage 2: GRPO on the recommendation itself (docs/METHOD.md §7).

``python -m trainer.grpo --config trainer/configs/grpo.yaml --ds D`` continues from the
SFT adapter (by default the newest SFT run registered for D) on the training prompts of
``rl_prompts``, rewarded by accuracy, format and grounding (:mod:`trainer.rewards`), and
with ``--likelihood_reward W`` by the target's likelihood after the reasoning
(:class:`trainer.rollout.TargetLikelihood`).
On CPU the completions come from trainer.rollout's vLLM engine serving each step's adapter;
``--rollout trl`` generates through transformers, ``--use_vllm true`` through trl's vLLM
on GPU nodes. The policy's forward runs each prompt once per group
(:func:`shared_prompt_trainer`).
trl logs the reward, each reward function's mean (accuracy among them) and the
completion length every ``logging_steps``; :mod:`trainer.signal` counts the groups each
reward function told apart (the run's ``learning_signal``), and warns when no group
differed in accuracy.
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
from r2rec.prompt import RecPrompt
from trainer.common import (
    RunArgs,
    causal_lm_parts,
    deadline_callback,
    finish,
    head_log_probs,
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
from trainer.signal import SpreadLog, no_choice_learned, summary

COLUMNS = ["sample_id", "prompt", "target_label", "candidate_labels", "prompt_facts"]


def order_prompts(
    rows: list[dict[str, Any]], seed: int, min_runner_up: float = 0.0
) -> tuple[list[dict[str, Any]], int]:
    """The training prompts in GRPO's seeded order, and how many ``min_runner_up`` left out.

    GRPO learns only from groups whose completions differ in reward. An SFT policy picks
    the candidate listed first (the strongest evidence) almost always, and where the
    evidence decides, so does the target: on ML-100k's training prompts the strongest
    candidate is the target in 85-91% of prompts whose runner-up scores under 0.4 of it,
    but in 32% (the runner-up in 25%) of those above 0.9 (``bench/RESULTS.md``). Prompts
    where the evidence barely decides are where a choice could be learned. Measured on the
    demo's SFT model it gave no more accuracy spread than random prompts, since the policy
    follows the listed order (``bench/RESULTS.md``, "GRPO on the prompts where the
    evidence barely decides"), so the default keeps every prompt.
    """
    if not 0.0 <= min_runner_up <= 1.0:
        raise R2RecError(f"min_runner_up must be within [0, 1], got {min_runner_up}")
    rows = sorted(rows, key=lambda r: r["sample_id"])
    random.Random(seed).shuffle(rows)
    if min_runner_up <= 0:
        return rows, 0
    kept = [r for r in rows if RecPrompt.from_json(r["prompt_facts"]).runner_up() >= min_runner_up]
    return kept, len(rows) - len(kept)


def load_prompts(
    lake: Lakehouse,
    ds: str,
    max_examples: int,
    seed: int,
    tokenizer,
    max_prompt_tokens: int,
    evidence: str = "chains",
    min_runner_up: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Training-split prompts of ds (never valid/test), seeded subsample, over-long skipped,
    those whose evidence decides left out when ``min_runner_up`` > 0 (:func:`order_prompts`)."""
    if not lake.exists(RL_PROMPTS):
        raise R2RecError(f"no rl_prompts table: run `r2rec traces --ds {ds}` first")
    version = lake.version(RL_PROMPTS)
    table = lake.read_arrow(
        RL_PROMPTS,
        version=version,
        partitions=[("ds", "=", ds), ("evidence", "=", evidence)],
        columns=[*COLUMNS, "split"],
    )
    rows = [r for r in table.to_pylist() if r.pop("split") == "train"]
    if not rows:
        raise R2RecError(
            f"no training rl_prompts for ds={ds}, evidence={evidence}: run "
            f"`r2rec traces --ds {ds} --evidence {evidence}` first"
        )
    available = len(rows)
    rows, decided = order_prompts(rows, seed, min_runner_up)
    if not rows:
        raise R2RecError(
            f"no training rl_prompt of ds={ds} has a runner-up at {min_runner_up} of the "
            "strongest candidate's evidence score: lower --min_runner_up"
        )
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
            "min_runner_up": min_runner_up,
            "skipped_evidence_decides": decided,
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


def prompt_groups(prompt_ids, prompt_mask) -> list[list[int]]:
    """Rows that share one prompt (its unpadded tokens), in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, (ids, mask) in enumerate(zip(prompt_ids, prompt_mask, strict=True)):
        groups.setdefault(tuple(ids[mask.bool()].tolist()), []).append(row)
    return list(groups.values())


def shared_prompt_trainer(enabled: bool = True):
    """trl's GRPOTrainer whose policy forward runs each group's prompt once.

    A GRPO batch is ``num_generations`` completions of the same prompt, and the prompt
    (with its evidence, ~500 tokens) is several times longer than a completion (~120).
    trl runs every row in full, so the prompt is computed once per completion, and on
    CPU its fused LM head also projects every prompt position (it scores only labelled
    positions on Triton devices). Here the prompt runs once with its key/value cache
    kept in the autograd graph, the cache is repeated for the group's completions, and
    only completion positions go through the LM head: the same log-probabilities and
    gradients (a test compares them with trl's), for about a third of the tokens.
    Falls back to trl's own path where this does not apply (multimodal inputs, MoE aux
    loss, gradient checkpointing, which turns the cache off, or a head that scales or
    soft-caps its logits).
    """
    import torch
    from trl import GRPOTrainer

    class SharedPromptGRPOTrainer(with_fault_points(GRPOTrainer, "grpo")):
        def _get_per_token_logps_and_entropies(
            self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
            compute_entropy=False, compute_aux_loss=False, **extra,
        ):  # fmt: skip
            causal_lm, backbone, head = causal_lm_parts(model)
            if (
                not enabled
                or compute_aux_loss
                or any(v is not None for v in extra.values())
                or getattr(causal_lm, "is_gradient_checkpointing", False)
                or not _plain_lm_head(causal_lm.config)
            ):
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size,
                    compute_entropy, compute_aux_loss, **extra,
                )  # fmt: skip
            width = logits_to_keep
            prompts, prompt_mask = input_ids[:, :-width], attention_mask[:, :-width]
            completions, completion_mask = input_ids[:, -width:], attention_mask[:, -width:]
            logps = torch.zeros(completions.shape, dtype=torch.float32, device=input_ids.device)
            entropies = torch.zeros_like(logps) if compute_entropy else None
            parts = []
            for rows in prompt_groups(prompts, prompt_mask):
                index = torch.tensor(rows, device=input_ids.device)
                prompt = prompts[rows[0]][prompt_mask[rows[0]].bool()][None]
                with self.accelerator.autocast():
                    first = backbone(input_ids=prompt, use_cache=True)
                    cache = first.past_key_values
                    cache.batch_repeat_interleave(len(rows))
                    ones = prompt_mask.new_ones((len(rows), prompt.size(1)))
                    rest = backbone(
                        input_ids=completions[index],
                        attention_mask=torch.cat([ones, completion_mask[index]], dim=1),
                        past_key_values=cache,
                        use_cache=True,
                    )
                # Position t predicts completion token t: the prompt's last state, then the
                # completion's own states but the last.
                hidden = torch.cat(
                    [first.last_hidden_state[:, -1:].expand(len(rows), -1, -1),
                     rest.last_hidden_state[:, :-1]], dim=1,
                )  # fmt: skip
                scored = completion_mask[index].bool()
                with self.accelerator.autocast():
                    log_probs = head_log_probs(
                        head, hidden[scored], self.temperature, self.args.cast_lm_head_to_fp32
                    )
                token = log_probs.gather(1, completions[index][scored][:, None]).squeeze(1)
                entropy = -(log_probs.exp() * log_probs).sum(-1) if compute_entropy else None
                parts.append((index, scored, token, entropy))

            # Scattered back by row, out of place, so the graph reaches every part; zero
            # where a completion is padding, as trl's.
            def rows_of(values, scored):
                return values.new_zeros(scored.shape).masked_scatter(scored, values)

            for index, scored, token, entropy in parts:
                logps = logps.index_put((index,), rows_of(token, scored))
                if entropy is not None:
                    entropies = entropies.index_put((index,), rows_of(entropy, scored))
            return logps, entropies, None

    return SharedPromptGRPOTrainer


def _plain_lm_head(config) -> bool:
    """The LM head is a plain projection: no logit scaling or soft-capping to reproduce."""
    text = config.get_text_config()
    scaled = ("final_logit_softcapping", "logit_scale", "output_multiplier",
              "lm_head_multiplier", "logits_scaling")  # fmt: skip
    return all(getattr(text, key, None) in (None, 1.0) for key in scaled)


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


def reward_funcs(run_args: RunArgs, rollout) -> list:
    """METHOD §7's rewards, and the target likelihood where asked (it needs the rollout's
    engine: trl's own generation has none to ask)."""
    if run_args.likelihood_reward < 0:
        raise R2RecError(f"--likelihood_reward must be >= 0, not {run_args.likelihood_reward}")
    if not run_args.likelihood_reward:
        return list(REWARD_FUNCS)
    if rollout is None:
        raise R2RecError(
            "--likelihood_reward needs the vllm rollout (--rollout vllm, with LoRA, on CPU)"
        )
    from trainer.rollout import TargetLikelihood

    return [*REWARD_FUNCS, TargetLikelihood(rollout, run_args.likelihood_reward)]


def train(run_args: RunArgs, train_args) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import set_seed

    if run_args.examples:
        raise R2RecError("--examples is SFT's: GRPO reads rl_prompts from the lakehouse")
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
    # Before the model loads: a bad reward option fails in seconds, not minutes.
    rollout = make_rollout(run_args, train_args, base.path, run.dir)
    spread = SpreadLog(run.dir, train_args.num_generations)
    rewards = [spread.wrap(f) for f in reward_funcs(run_args, rollout)]
    tokenizer = load_tokenizer(base.path)
    rows, inputs = load_prompts(
        run.lake,
        run_args.ds,
        run_args.max_examples,
        train_args.seed,
        tokenizer,
        run_args.max_prompt_tokens,
        run_args.evidence,
        run_args.min_runner_up,
    )
    set_seed(train_args.seed)
    model = load_model(base.path, train_args)
    peft_config = None
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    elif run_args.use_lora:
        peft_config = lora_config(run_args)
    deadline = deadline_callback(run_args.max_train_seconds)
    trainer = shared_prompt_trainer(run_args.shared_prompt)(
        model=model,
        reward_funcs=rewards,
        args=train_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[progress_callback(run), release_memory_callback(), deadline],
        peft_config=peft_config,
        rollout_func=rollout,
    )
    own_progress_only(trainer)
    spread.step = lambda: trainer.state.global_step
    resumed_from = run.last_checkpoint()
    try:
        trainer.train(resume_from_checkpoint=resumed_from)
    finally:
        if rollout is not None:
            rollout.close()
    history = trainer.state.log_history
    signal = summary(run.dir)
    if warning := no_choice_learned(signal):
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    manifest = finish(
        run,
        trainer,
        tokenizer,
        base=base,
        inputs=inputs,
        train_args=train_args,
        parent_version=parent_version,
        resumed_from=resumed_from,
        extra={"learning_signal": signal, "stopped_at_deadline": deadline.stopped},
    )
    last = [e for e in history if "reward" in e]
    return {
        "status": "trained",
        "run_id": run.run_id,
        "run_dir": str(run.dir),
        "model_version": manifest["model_version"],
        "parent_version": parent_version,
        "unchanged": manifest["unchanged"],
        "global_step": manifest["global_step"],
        "resumed_from": resumed_from,
        "prompts": inputs["rl_prompts"]["rows_used"],
        "last_reward": last[-1]["reward"] if last else None,
        "learning_signal": signal,
        "seconds_per_step": manifest["seconds_per_step"],
    }


def main(argv: list[str] | None = None) -> int:
    return stage_main("grpo", "GRPOConfig", train, argv)


if __name__ == "__main__":
    sys.exit(main())
