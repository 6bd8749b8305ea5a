"""r2rec_score: nightly recommendations with their reasoning, then evaluation.

Waits for the date's training data, retrieves serve candidates (Spark), scores every
active user with the champion model (or the base model before any promotion) as
dynamically mapped shard tasks in the ``gpu`` pool, publishes partition (ds, serve) of
``recommendations`` in one commit, and records evaluation metrics for the date.
A shard task that fails and retries skips the chunks it already committed.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task

from dags.r2rec_common import (
    DEFAULT_ARGS,
    LAKEHOUSE,
    START,
    asset,
    bash_kwargs,
    cli_job,
    run_date,
    serving_model,
    shard_commands,
    spark_job,
)

with DAG(
    dag_id="r2rec_score",
    description="Batch LLM scoring into recommendations, partitioned by date",
    schedule="@daily",
    start_date=START,
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["r2rec", "inference", "gpu"],
    doc_md=__doc__,
    params={
        "shards": Param(4, type="integer", minimum=1),
        "model": Param("champion", type="string", description="champion | registry:… | dir"),
        "max_invalid_share": Param(1.0, type="number", minimum=0, maximum=1),
        "eval_samples": Param(64, type="integer", minimum=0),
    },
) as dag:
    ds = run_date()

    @task.sensor(poke_interval=300, timeout=int(timedelta(hours=12).total_seconds()),
                 mode="reschedule")  # fmt: skip
    def data_ready(ds: str) -> bool:
        from r2rec.contracts import SAMPLES
        from r2rec.lakehouse import Lakehouse

        lake = Lakehouse(LAKEHOUSE)
        return lake.exists(SAMPLES) and {"ds": ds} in lake.partitions(SAMPLES)

    @task
    def model_spec(requested: str) -> str:
        return serving_model(requested)

    @task(task_id="shard_commands")
    def commands(n: str, model: str, ds: str) -> list[str]:
        return shard_commands(n, model, ds)

    model = model_spec("{{ params.model }}")
    retrieval = spark_job(
        "retrieval", "spark_jobs/retrieval.py", outlets=[asset("serve_candidates")]
    )
    score_shards = BashOperator.partial(task_id="score_shard", **bash_kwargs(gpu=1)).expand(
        bash_command=commands("{{ params.shards }}", model, ds)
    )
    publish = cli_job(
        "publish", "score", "--mode", "serve", "--publish-only",
        "--model", "{{ ti.xcom_pull(task_ids='model_spec') }}", "--shards", "{{ params.shards }}",
        "--max-invalid-share", "{{ params.max_invalid_share }}",
        outlets=[asset("recommendations")],
    )  # fmt: skip
    evaluate = cli_job(
        "evaluate", "evaluate", "--models", "popularity,itemknn,als,sasrec,llm",
        "--llm-model", "{{ ti.xcom_pull(task_ids='model_spec') }}",
        "--max-samples", "{{ params.eval_samples }}", gpu=1, outlets=[asset("eval_metrics")],
    )  # fmt: skip

    ds >> data_ready(ds) >> [retrieval, model]
    retrieval >> score_shards
    score_shards >> publish >> evaluate
