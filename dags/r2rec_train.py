"""r2rec_train: SFT -> evaluate -> promote -> GRPO -> evaluate -> promote.

Triggered when ``r2rec_data`` publishes new SFT examples and RL prompts (the ds rides
on the asset events), or manually with a logical date; ``R2REC_TRAIN_SCHEDULE=@weekly``
(or any cron) schedules it instead. Training and LLM evaluation run in the ``gpu``
pool; a candidate becomes the champion only if its validation HR@1 holds up.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param

from dags.r2rec_common import (
    CONFIG_PATTERN,
    DEFAULT_ARGS,
    SHELL_FILTERS,
    START,
    args_param,
    asset,
    cli_job,
    run_date,
    sh,
    sh_args,
)

SCHEDULE = os.environ.get("R2REC_TRAIN_SCHEDULE") or (asset("sft_examples") & asset("rl_prompts"))

with DAG(
    dag_id="r2rec_train",
    description="Two-stage fine-tuning with evaluation and gated promotion",
    schedule=SCHEDULE,
    start_date=START,
    catchup=False,
    max_active_runs=1,  # one training at a time: they share the GPU pool and the registry
    default_args=DEFAULT_ARGS,
    tags=["r2rec", "train", "gpu"],
    doc_md=__doc__,
    user_defined_filters=SHELL_FILTERS,
    params={
        "eval_samples": Param(64, type="integer", minimum=0, description="LLM eval samples/split"),
        "sft_config": Param("trainer/configs/sft.yaml", type="string", pattern=CONFIG_PATTERN),
        "grpo_config": Param("trainer/configs/grpo.yaml", type="string", pattern=CONFIG_PATTERN),
        "sft_args": args_param("--max_steps 8 --model /models/x"),
        "grpo_args": args_param("--max_steps 2"),
        "min_gain": Param(0.0, type="number"),
    },
) as dag:
    ds = run_date()
    previous = ds
    for stage in ("sft", "grpo"):
        train = cli_job(
            stage, stage, "--config", sh(f"params.{stage}_config"),
            sh_args(f"params.{stage}_args"), gpu=1,
        )  # fmt: skip
        evaluate = cli_job(
            f"evaluate_{stage}", "evaluate", "--models", "llm", "--llm-model",
            f"registry:latest-{stage}", "--max-samples", sh("params.eval_samples"), gpu=1,
        )  # fmt: skip
        promote = cli_job(
            f"promote_{stage}", "promote", "--candidate", f"latest-{stage}",
            "--min-gain", sh("params.min_gain"), outlets=[asset("model_registry")],
        )  # fmt: skip
        previous >> train >> evaluate >> promote
        previous = promote
