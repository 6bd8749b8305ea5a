"""Stage 1: supervised fine-tuning on interaction-of-thought traces (docs/METHOD.md §6).

``python -m trainer.sft --config trainer/configs/sft.yaml --ds D`` trains on
``sft_examples`` of date D (one teacher's traces that passed the filter): the
inference prompt (history + candidates, no chain) as the prompt, the trace plus answer
as the completion, loss on the completion only, LoRA unless ``--use_lora false``.
Any YAML key can be overridden on the command line (``--max_steps 5``).
"""

from __future__ import annotations

import random
import sys
from typing import Any

from r2rec.contracts import SFT_EXAMPLES
from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse
from trainer.common import (
    RunArgs,
    finish,
    load_model,
    load_tokenizer,
    lora_config,
    progress_callback,
    stage_main,
    start,
)


def load_examples(
    lake: Lakehouse, ds: str, teacher: str, max_examples: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Prompt-completion rows for (ds, teacher), a seeded subsample, and their provenance."""
    if not lake.exists(SFT_EXAMPLES):
        raise R2RecError(f"no sft_examples table: run `r2rec traces --ds {ds}` first")
    version = lake.version(SFT_EXAMPLES)
    table = lake.read_arrow(
        SFT_EXAMPLES,
        version=version,
        partitions=[("ds", "=", ds), ("teacher", "=", teacher)],
        columns=["chain_id", "prompt", "completion"],
    )
    rows = sorted(table.to_pylist(), key=lambda r: r["chain_id"])
    if not rows:
        raise R2RecError(
            f"no sft_examples for ds={ds}, teacher={teacher}: run "
            f"`r2rec traces --ds {ds} --teacher {teacher}` first"
        )
    available = len(rows)
    if 0 < max_examples < available:
        rows = random.Random(seed).sample(rows, max_examples)
    inputs = {
        "sft_examples": {
            "table_version": version,
            "ds": ds,
            "teacher": teacher,
            "rows_available": available,
            "rows_used": len(rows),
        }
    }
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows], inputs


def train(run_args: RunArgs, train_args) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTTrainer

    from inference.models import resolve_model

    run = start("sft", run_args, train_args)
    if done := run.completed():
        return {"status": "already complete", "run_dir": str(run.dir), **done}
    base = resolve_model(run_args.model)
    rows, inputs = load_examples(
        run.lake, run_args.ds, run_args.teacher, run_args.max_examples, train_args.seed
    )
    set_seed(train_args.seed)
    tokenizer = load_tokenizer(base.path)
    trainer = SFTTrainer(
        model=load_model(base.path, train_args),
        args=train_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[progress_callback(run)],
        peft_config=lora_config(run_args) if run_args.use_lora else None,
    )
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
        extra={"train_loss": result.training_loss},
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
    return stage_main("SFTConfig", train, argv)


if __name__ == "__main__":
    sys.exit(main())
