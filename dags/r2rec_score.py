"""r2rec_score: nightly recommendations with their reasoning, then evaluation.

Waits for the date's training data, retrieves serve candidates and finds the chains that
reach each of them (Spark, the prompt's evidence), scores every
active user with the champion model (or the base model before any promotion) as
dynamically mapped shard tasks in the ``gpu`` pool, publishes partition (ds, serve) of
``recommendations`` in one commit, and records evaluation metrics for the date.
A shard task that fails and retries skips the chunks it already committed.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task

from dags.r2rec_common import (
    DEFAULT_ARGS,
    LAKEHOUSE,
    SHELL_FILTERS,
    START,
    WORD_PATTERN,
    args_param,
    asset,
    bash_kwargs,
    cli_job,
    dq_check,
    run_date,
    serving_model,
    sh,
    sh_args,
    shard_commands,
    spark_job,
)

with DAG(
    dag_id="r2rec_score",
    description="Batch LLM scoring into recommendations, partitioned by date",
    schedule=os.environ.get("R2REC_SCORE_SCHEDULE") or "@daily",
    start_date=START,
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["r2rec", "inference", "gpu"],
    doc_md=__doc__,
    user_defined_filters=SHELL_FILTERS,
    params={
        "shards": Param(4, type="integer", minimum=1),
        "model": Param(
            "champion",
            type="string",
            pattern=WORD_PATTERN,
            description="champion | registry:… | dir",
        ),
        "max_invalid_share": Param(1.0, type="number", minimum=0, maximum=1),
        "eval_samples": Param(64, type="integer", minimum=0),
        "eval_models": Param(
            "popularity,itemknn,als,sasrec,popularity-asof,itemknn-asof,evidence,llm",
            type="string",
            pattern=r"^[a-z]+(-asof)?(,[a-z]+(-asof)?)*(?!\n)$",
        ),
        "active_days": Param(
            0,
            type="integer",
            minimum=0,
            description="score users active in the last N days before D (0 = every user)",
        ),
        "score_args": args_param("--max-users 100 --chunk-size 64"),
        "eval_args": args_param("--sasrec-epochs 10"),
    },
) as dag:
    ds = run_date()

    @task.sensor(poke_interval=300, timeout=int(timedelta(hours=12).total_seconds()),
                 mode="reschedule")  # fmt: skip
    def data_ready(run_ds: str) -> bool:
        from r2rec.contracts import SAMPLES
        from r2rec.lakehouse import Lakehouse

        lake = Lakehouse(LAKEHOUSE)
        return lake.exists(SAMPLES) and {"ds": run_ds} in lake.partitions(SAMPLES)

    @task
    def model_spec(requested: str) -> str:
        return serving_model(requested)

    @task(task_id="shard_commands")
    def commands(n: str, model: str, run_ds: str, args: str) -> list[str]:
        return shard_commands(n, model, run_ds, args)

    model = model_spec("{{ params.model }}")
    retrieval = spark_job(
        "retrieval", "spark_jobs/retrieval.py", "--active-days", "{{ params.active_days }}",
        outlets=[asset("serve_candidates")],
    )  # fmt: skip
    evidence = spark_job(
        "evidence", "spark_jobs/evidence.py", "--scope", "serve",
        outlets=[asset("candidate_evidence")],
    )  # fmt: skip
    score_shards = BashOperator.partial(task_id="score_shard", **bash_kwargs(gpu=1)).expand(
        bash_command=commands("{{ params.shards }}", model, ds, "{{ params.score_args }}")
    )
    pinned = sh("ti.xcom_pull(task_ids='model_spec')")
    publish = cli_job(
        "publish", "score", "--mode", "serve", "--publish-only",
        "--model", pinned, "--shards", sh("params.shards"),
        "--max-invalid-share", sh("params.max_invalid_share"),
        sh_args("params.score_args"),  # the shards' plan (--max-users, --chunk-size) to publish
        outlets=[asset("recommendations")],
    )  # fmt: skip
    evaluate = cli_job(
        "evaluate", "evaluate", "--models", sh("params.eval_models"), "--llm-model", pinned,
        "--max-samples", sh("params.eval_samples"), sh_args("params.eval_args"),
        gpu=1, outlets=[asset("eval_metrics")],
    )  # fmt: skip

    ds >> data_ready(ds) >> [retrieval, model]
    retrieval >> evidence >> dq_check("evidence.serve")(ds) >> score_shards
    score_shards >> publish >> evaluate
