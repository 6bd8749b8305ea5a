"""What the R2Rec DAGs share: dates, resources, and thin wrappers of the job entrypoints.

Not a DAG file (listed in ``.airflowignore``). Parse time stays cheap: nothing here
imports Spark, torch or vLLM or touches the lakehouse; every task runs an existing
entrypoint (``spark-submit spark_jobs/<job>.py`` or ``r2rec <job>``) with the run's
date and the configured lakehouse.

Dates: a task's ds is the run's data interval start, computed once by the ``run_date``
task and read by every other task from XCom. Nothing calls ``now()``: a manual run
without a logical date fails in ``run_date`` with a message saying how to give one,
and an asset-triggered run takes the ds the data DAG attached to its asset events.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset, task

ROOT = Path(__file__).resolve().parents[1]
LAKEHOUSE = os.environ.get("R2REC_LAKEHOUSE", str(ROOT / "lakehouse"))
BIN = Path(sys.executable).parent  # the environment Airflow runs in holds r2rec and Spark
R2REC = str(BIN / "r2rec")
PYTHON = sys.executable
START = datetime(2026, 11, 1)
GPU_POOL = os.environ.get("R2REC_GPU_POOL", "gpu")
SPARK_CONN = os.environ.get("R2REC_SPARK_CONN", "spark_default")
DS = "{{ ti.xcom_pull(task_ids='run_date') }}"
# Extra command-line options a run may pass (params *_args) land in bash commands:
# options and values only, no shell syntax.
ARGS_PATTERN = r"^[A-Za-z0-9_.,=/:@+ -]*$"
DEFAULT_ARGS = {
    "owner": "r2rec",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}
JOB_ENV = {
    "R2REC_LAKEHOUSE": LAKEHOUSE,
    "PYSPARK_PYTHON": PYTHON,
    "PYSPARK_DRIVER_PYTHON": PYTHON,
    "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
}


def asset(table: str) -> Asset:
    """The Airflow Asset of one lakehouse table."""
    return Asset(name=f"r2rec.{table}", uri=f"file://{LAKEHOUSE}/{table}")


def ds_of(context) -> str:
    """The run's ds: its data interval start, or the ds its triggering asset events carry."""
    from airflow.sdk.exceptions import AirflowFailException

    start = context.get("data_interval_start")
    if start is not None:
        return start.strftime("%Y-%m-%d")
    events = context.get("triggering_asset_events") or {}
    dates = sorted({e.extra.get("ds") for evs in events.values() for e in evs if e.extra.get("ds")})
    if dates:
        return dates[-1]
    raise AirflowFailException(
        f"{context['dag'].dag_id} needs a logical date: it never guesses 'today'. Trigger it "
        "with one, e.g. `airflow dags trigger --logical-date 2026-11-25T00:00:00+00:00 "
        f"{context['dag'].dag_id}`, or backfill a range with `airflow backfill create`."
    )


@task(task_id="run_date", retries=0)
def run_date(**context) -> str:
    return ds_of(context)


def serving_model(requested: str, lakehouse: str = LAKEHOUSE) -> str:
    """The model a scoring run uses, pinned once for all its shards and the publish.

    'champion' becomes ``registry:<its model version>`` so a promotion during the run
    cannot split it across two models; before the first promotion it is the base model.
    """
    from r2rec import registry
    from r2rec.assets import DEFAULT_MODEL
    from r2rec.lakehouse import Lakehouse

    if requested != registry.CHAMPION:
        return requested
    champion = registry.champion(Lakehouse(lakehouse))
    return DEFAULT_MODEL if champion is None else registry.PREFIX + champion["model_version"]


def args_param(example: str):
    """A run param of extra command-line options, e.g. ``--max_steps 8``."""
    from airflow.sdk import Param

    return Param("", type="string", pattern=ARGS_PATTERN, description=f"e.g. {example}")


def extra_args(text: str | None) -> list[str]:
    """A run's ``*_args`` param as options; refuses anything a shell would interpret."""
    import re

    text = (text or "").strip()
    if not re.fullmatch(ARGS_PATTERN, text):
        raise ValueError(f"extra arguments may hold options and values only, got {text!r}")
    return text.split()


def shard_commands(n: int | str, model: str, ds: str, args: str = "") -> list[str]:
    """One ``r2rec score --shard k`` command per shard (the mapped tasks' commands)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"shards must be at least 1, got {n}")
    common = ["--mode", "serve", "--model", model, "--shards", str(n), *extra_args(args)]
    return [cli_command("score", *common, "--shard", str(k), ds=ds) for k in range(n)]


def spark_job(task_id: str, application: str, *args: str, outlets=(), **kwargs):
    """``spark-submit`` of a job file on the ``spark_default`` connection."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    return SparkSubmitOperator(
        task_id=task_id,
        application=str(ROOT / application),
        application_args=["--ds", DS, "--lakehouse", LAKEHOUSE, *args],
        conn_id=SPARK_CONN,
        name=f"r2rec-{task_id}",
        # spark-submit starts the driver JVM, so its memory is set here, not in the job.
        driver_memory=os.environ.get("R2REC_SPARK_DRIVER_MEMORY", "2g"),
        env_vars=JOB_ENV,
        outlets=list(outlets),
        **kwargs,
    )


def cli_command(job: str, *args: str, ds: str = DS) -> str:
    return " ".join([R2REC, job, "--ds", ds, "--lakehouse", LAKEHOUSE, *args])


def bash_kwargs(gpu: int = 0) -> dict:
    """Run from the repository root (configs are relative paths) with the jobs' env;
    ``gpu`` > 0 puts the task in the GPU pool with that many slots."""
    kwargs = {"env": JOB_ENV, "append_env": True, "cwd": str(ROOT)}
    if gpu:
        kwargs.update(pool=GPU_POOL, pool_slots=gpu)
    return kwargs


def cli_job(task_id: str, job: str, *args: str, outlets=(), gpu: int = 0, **kwargs):
    """``r2rec <job> --ds D --lakehouse L ...`` as a task."""
    from airflow.providers.standard.operators.bash import BashOperator

    return BashOperator(
        task_id=task_id,
        bash_command=cli_command(job, *args),
        outlets=list(outlets),
        **bash_kwargs(gpu),
        **kwargs,
    )


def dq_check(job: str):
    """A task that fails when ``job`` recorded a failing data-quality check for ds."""

    @task(task_id=f"dq_{job.replace('.', '_')}", retries=0)
    def check(run_ds: str) -> dict:  # 'ds' is a reserved context key
        return check_quality(job, run_ds)

    return check


def check_quality(job: str, ds: str, lakehouse: str = LAKEHOUSE) -> dict:
    """The job's metrics for ds; fails when it recorded none or a failing ``dq.*`` check."""
    from airflow.sdk.exceptions import AirflowFailException

    from r2rec.contracts import JOB_METRICS
    from r2rec.lakehouse import Lakehouse

    lake = Lakehouse(lakehouse)
    rows = []
    if lake.exists(JOB_METRICS):
        rows = lake.read_arrow(
            JOB_METRICS, partitions=[("ds", "=", ds), ("job", "=", job)]
        ).to_pylist()
    if not rows:
        raise AirflowFailException(f"{job} recorded no metrics for ds={ds}")
    failing = {
        r["metric"]: r["value"] for r in rows if r["metric"].startswith("dq.") and r["value"]
    }
    if failing:
        raise AirflowFailException(f"{job} failed data-quality checks for ds={ds}: {failing}")
    return {r["metric"]: r["value"] for r in rows}
