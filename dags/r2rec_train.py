"""r2rec_train: SFT -> evaluate (+ the incumbent) -> promote -> GRPO -> evaluate -> promote.

Triggered when ``r2rec_data`` publishes new SFT examples and RL prompts (the ds rides
on the asset events), or manually with a logical date; ``R2REC_TRAIN_SCHEDULE=@weekly``
(or any cron) schedules it instead. Training and LLM evaluation run in the ``gpu``
pool; a candidate becomes the champion only if it beats the champion on the same
validation samples (more won than lost, by a one-sided sign test at ``alpha``), or,
before the first promotion, the untuned base model. Either incumbent is evaluated here
on this date's samples first. Evaluation, promotion and GRPO's starting adapter all use
the exact run the training task reported (its registry row), never a "latest" that a
rerun could change in between.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param, task

from dags.r2rec_common import (
    CONFIG_PATTERN,
    DEFAULT_ARGS,
    SHELL_FILTERS,
    START,
    TEACHERS,
    args_param,
    asset,
    cli_job,
    run_date,
    sh,
    sh_args,
)

SCHEDULE = os.environ.get("R2REC_TRAIN_SCHEDULE") or (asset("sft_examples") & asset("rl_prompts"))


@task(retries=0)
def data_teacher(default: str, **context) -> str:
    """The teacher of the traces this run trains on (asset events, else the param)."""
    from dags.r2rec_common import teacher_of

    return teacher_of(context, default)


@task(retries=0)
def trained_version(report: str) -> str:
    """``registry:<run id>`` from a training task's JSON report (its last line)."""
    from dags.r2rec_common import trained_reference

    return trained_reference(report)


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
        "teacher": Param(
            "template", enum=list(TEACHERS), description="traces to train on (manual runs)"
        ),
        "sft_args": args_param("--max_steps 8 --model /models/x"),
        "grpo_args": args_param("--max_steps 2"),
        "min_gain": Param(0.0, type="number", description="valid HR@1 a candidate must gain"),
        "min_samples": Param(
            30, type="integer", minimum=0, description="fewer validation samples decide nothing"
        ),
        "alpha": Param(
            0.05,
            type="number",
            exclusiveMinimum=0,
            maximum=1,
            description="largest sign-test p-value that promotes (1: the gain alone decides)",
        ),
        "eval_seeds": Param(
            "",
            type="string",
            pattern=r"^([0-9]{1,4}(,[0-9]{1,4}){0,15})?$",
            description="candidate seeds the evaluations use, e.g. 0 (default: all)",
        ),
    },
) as dag:
    ds = run_date()
    teacher = data_teacher("{{ params.teacher }}")
    ds >> teacher
    previous = teacher
    for stage in ("sft", "grpo"):
        # SFT trains on the data run's teacher; GRPO starts from the SFT version this run
        # trained. Both after any user override.
        fixed = {
            "sft": ("--teacher", sh("ti.xcom_pull(task_ids='data_teacher')")),
            "grpo": ("--init_adapter", sh("ti.xcom_pull(task_ids='sft_version')")),
        }[stage]
        train = cli_job(
            stage, stage, "--config", sh(f"params.{stage}_config"),
            sh_args(f"params.{stage}_args"), *fixed, gpu=1,
        )  # fmt: skip
        version = trained_version.override(task_id=f"{stage}_version")(
            f"{{{{ ti.xcom_pull(task_ids='{stage}') }}}}"
        )
        exact = sh(f"ti.xcom_pull(task_ids='{stage}_version')")
        evaluate = cli_job(
            f"evaluate_{stage}", "evaluate", "--models", "llm", "--llm-model", exact,
            "--max-samples", sh("params.eval_samples"), "--seeds", sh("params.eval_seeds"), gpu=1,
        )  # fmt: skip
        promote = cli_job(
            f"promote_{stage}", "promote", "--candidate", exact, "--min-gain",
            sh("params.min_gain"), "--min-samples", sh("params.min_samples"), "--alpha",
            sh("params.alpha"), outlets=[asset("model_registry")],
        )  # fmt: skip
        previous >> train >> version >> evaluate >> promote
        if stage == "sft":
            # What the SFT must beat, on the same samples: the champion, or before the
            # first promotion the untuned base. GRPO then meets whichever won.
            incumbent = cli_job(
                "evaluate_incumbent", "evaluate", "--models", "llm", "--incumbent-of", exact,
                "--max-samples", sh("params.eval_samples"), "--seeds", sh("params.eval_seeds"),
                gpu=1,
            )  # fmt: skip
            version >> incumbent >> promote
        previous = promote
