"""Stage 1: supervised fine-tuning on interaction-of-thought traces (docs/METHOD.md §6).

``python -m trainer.sft --config trainer/configs/sft.yaml --ds D`` trains on
``sft_examples`` of date D (one teacher's traces that passed the filter, with the
prompt of ``--evidence``): the inference prompt (history, candidates and their
evidence; never the chain that names the answer alone) as the prompt, the trace plus
answer as the completion, loss on the completion only, LoRA unless ``--use_lora false``.
Any YAML key can be overridden on the command line (``--max_steps 5``).

On CPU the LM head runs only where the loss is (the completion): the 49k-token output
layer is about a fifth of the forward pass, and a prompt is most of every example.
"""

from __future__ import annotations

import random
import sys
from typing import Any

from r2rec.contracts import SFT_EXAMPLES
from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse
from r2rec.models import resolve_model
from trainer import offline
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


def subsample(rows: list[dict[str, Any]], max_examples: int, seed: int) -> list[dict[str, Any]]:
    """A seeded subsample of ``max_examples`` rows (all when 0 or more than there are)."""
    return random.Random(seed).sample(rows, max_examples) if 0 < max_examples < len(rows) else rows


def load_examples(
    lake: Lakehouse,
    ds: str,
    teacher: str,
    max_examples: int,
    seed: int,
    evidence: str = "chains",
    version: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Prompt-completion rows for (ds, teacher, evidence), a seeded subsample, provenance.

    ``version``: the table version to read (default: the latest)."""
    if not lake.exists(SFT_EXAMPLES):
        raise R2RecError(f"no sft_examples table: run `r2rec traces --ds {ds}` first")
    version = lake.version(SFT_EXAMPLES) if version is None else version
    table = lake.read_arrow(
        SFT_EXAMPLES,
        version=version,
        partitions=[("ds", "=", ds), ("teacher", "=", teacher), ("evidence", "=", evidence)],
        columns=["chain_id", "prompt", "completion"],
    )
    rows = sorted(table.to_pylist(), key=lambda r: r["chain_id"])
    if not rows:
        raise R2RecError(
            f"no sft_examples for ds={ds}, teacher={teacher}, evidence={evidence}: run "
            f"`r2rec traces --ds {ds} --teacher {teacher} --evidence {evidence}` first"
        )
    available = len(rows)
    rows = subsample(rows, max_examples, seed)
    inputs = {
        "sft_examples": {
            "table_version": version,
            "ds": ds,
            "teacher": teacher,
            "evidence": evidence,
            "rows_available": available,
            "rows_used": len(rows),
        }
    }
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows], inputs


def completion_loss_trainer(enabled: bool = True):
    """trl's SFTTrainer whose loss, on CPU, projects only the completion through the LM head.

    trl's fused LM head scores only the labelled positions on Triton devices (GPUs) but
    every position elsewhere; on CPU that is the whole prompt, most of each example.
    Here the backbone runs as usual and the head sees the completion tokens alone: the
    same loss and gradients (a test compares them with trl's), less compute.
    """
    import torch
    from trl import SFTTrainer

    class CompletionLossSFTTrainer(with_fault_points(SFTTrainer, "sft")):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not enabled or return_outputs or next(model.parameters()).device.type != "cpu":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if model.training else "eval"
            _, backbone, head = causal_lm_parts(model)
            hidden = backbone(
                input_ids=inputs["input_ids"],
                attention_mask=inputs.get("attention_mask"),
                use_cache=False,
            ).last_hidden_state[:, :-1]
            labels = inputs["labels"][:, 1:]
            mask = labels != -100
            log_probs = head_log_probs(head, hidden[mask])
            target = labels[mask]
            token_log_probs = log_probs.gather(1, target[:, None]).squeeze(1)
            count = mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = -token_log_probs.sum() / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            with torch.no_grad():  # trl's own metrics, from the same logits
                n = max(int(mask.sum()), 1)
                entropy = -(log_probs.exp() * log_probs).sum(-1).sum().item() / n
                accuracy = (log_probs.argmax(-1) == target).sum().item() / n
            self._metrics[mode]["entropy"].append(entropy)
            self._metrics[mode]["mean_token_accuracy"].append(accuracy)
            if mode == "train":
                self._total_train_tokens += int(inputs["attention_mask"].sum())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return CompletionLossSFTTrainer


def train(run_args: RunArgs, train_args) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import set_seed

    # The data is part of the run's identity: after a rerun of the date rewrote the
    # examples, the same command trains a new run instead of reporting the stale one.
    ds, teacher, evidence = run_args.ds, run_args.teacher, run_args.evidence
    if run_args.examples:  # an export, on a node without Delta Lake (trainer.offline)
        if run_args.register:
            raise R2RecError(
                "--examples trains away from the lakehouse: give --register false, and "
                "register the finished run with `python -m trainer.offline import RUN_DIR`"
            )
        rows, inputs = offline.load(
            run_args.examples, ds, teacher, evidence, run_args.max_examples, train_args.seed
        )
        data = inputs["sft_examples"]["rows_sha256"]
    else:
        partition = {"ds": ds, "teacher": teacher, "evidence": evidence}
        data = input_fingerprint(run_args, SFT_EXAMPLES, partition)
    run = start("sft", run_args, train_args, identity={"sft_examples": data})
    if done := run.completed():
        return {"status": "already complete", "run_dir": str(run.dir), **done}
    base = resolve_model(run_args.model)
    if not run_args.examples:
        rows, inputs = load_examples(
            run.lake, ds, teacher, run_args.max_examples, train_args.seed, evidence
        )
    set_seed(train_args.seed)
    deadline = deadline_callback(run_args.max_train_seconds)
    tokenizer = load_tokenizer(base.path)
    trainer = completion_loss_trainer(run_args.completion_logits)(
        model=load_model(base.path, train_args),
        args=train_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[progress_callback(run), release_memory_callback(), deadline],
        peft_config=lora_config(run_args) if run_args.use_lora else None,
    )
    own_progress_only(trainer)
    resumed_from = run.last_checkpoint()
    result = trainer.train(resume_from_checkpoint=resumed_from)
    manifest = finish(
        run,
        trainer,
        tokenizer,
        base=base,
        inputs=inputs,
        train_args=train_args,
        parent_version=None,
        resumed_from=resumed_from,
        extra={"train_loss": result.training_loss, "stopped_at_deadline": deadline.stopped},
    )
    return {
        "status": "trained",
        "run_id": run.run_id,
        "run_dir": str(run.dir),
        "model_version": manifest["model_version"],
        "global_step": manifest["global_step"],
        "resumed_from": resumed_from,
        "train_loss": result.training_loss,
        "examples": inputs["sft_examples"]["rows_used"],
    }


def main(argv: list[str] | None = None) -> int:
    return stage_main("sft", "SFTConfig", train, argv)


if __name__ == "__main__":
    sys.exit(main())
