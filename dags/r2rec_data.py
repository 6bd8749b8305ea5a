"""r2rec_data: ingest -> graph -> samples and candidates -> chains, evidence -> traces, daily.

Each Spark job runs through ``spark-submit`` on the ``spark_default`` connection
(``local[2]`` unless the connection names a cluster master) and is followed by a task
that fails on any data-quality check the job recorded for the date. The last task
emits the tables' Asset events with the date attached, which triggers ``r2rec_train``.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param, task

from dags.r2rec_common import (
    DEFAULT_ARGS,
    PATH_PATTERN,
    SHELL_FILTERS,
    START,
    TEACHERS,
    asset,
    cli_job,
    dq_check,
    run_date,
    sh,
    spark_job,
)
from spark_jobs.ingest.sources import SOURCES

TABLES = ("interactions", "items", "graph_edges", "samples", "candidates", "chains",
          "candidate_evidence", "reasoning_traces", "sft_examples", "rl_prompts")  # fmt: skip

with DAG(
    dag_id="r2rec_data",
    description="Interactions to chains and reasoning traces for one date",
    # A weekly replay of a historical log runs with R2REC_DATA_SCHEDULE="0 0 * * 1" (and
    # the same for r2rec_score), so `airflow backfill create` makes one run per week.
    schedule=os.environ.get("R2REC_DATA_SCHEDULE") or "@daily",
    start_date=START,
    catchup=False,
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=["r2rec", "data", "spark"],
    doc_md=__doc__,
    user_defined_filters=SHELL_FILTERS,
    params={
        "source": Param("movielens-100k", enum=list(SOURCES), description="ingest --source"),
        "path": Param(
            "",
            type="string",
            pattern=PATH_PATTERN,
            description="ingest --path ('' = the source's default), under $R2REC_INGEST_ROOTS",
        ),
        "teacher": Param("template", enum=list(TEACHERS)),
    },
) as dag:
    ds = run_date()
    # spark-submit gets an argv list (no shell); the job itself confines --path to roots.
    ingest = spark_job(
        "ingest",
        "spark_jobs/ingest/__main__.py",
        "--source",
        "{{ params.source }}",
        "--path",
        "{{ params.path }}",
        outlets=[asset("interactions"), asset("items")],
        # Silver interactions of ds D are the events no earlier ds brought, so ingests
        # run in date order; everything after ingest may overlap across dates.
        depends_on_past=True,
    )
    graph = spark_job("graph", "spark_jobs/graph.py", outlets=[asset("graph_edges")])
    samples = spark_job(
        "samples", "spark_jobs/samples.py", outlets=[asset("samples"), asset("candidates")]
    )
    chains = spark_job("chains", "spark_jobs/chains.py", outlets=[asset("chains")])
    # The chains that reach every candidate of every sample's prompt (prompt v2).
    evidence = spark_job(
        "evidence", "spark_jobs/evidence.py", "--scope", "samples",
        outlets=[asset("candidate_evidence")],
    )  # fmt: skip
    traces = cli_job("traces", "traces", "--teacher", sh("params.teacher"))

    @task(outlets=[asset(t) for t in TABLES])
    def publish_assets(run_ds: str, teacher: str, *, outlet_events=None) -> str:
        # The date rides on the events, so the runs they trigger know which data is new.
        for table in TABLES:
            outlet_events[asset(table)].extra = {"ds": run_ds, "teacher": teacher}
        return run_ds

    ds >> ingest >> graph
    graph >> dq_check("graph")(ds) >> samples
    gate = dq_check("samples")(ds)
    samples >> gate >> [chains, evidence]
    chains >> dq_check("chains")(ds) >> traces
    evidence >> dq_check("evidence.samples")(ds) >> traces
    # The gate reads the metrics of the teacher this run used, and the asset events
    # carry it on to training.
    gate = dq_check("traces.{{ params.teacher }}", task_id="dq_traces")(ds)
    traces >> gate >> publish_assets(ds, "{{ params.teacher }}")
