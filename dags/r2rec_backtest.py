"""r2rec_backtest: what the nightly job published, against what users did next.

Triggered when ``r2rec_data`` publishes a date's interactions (the ds X rides on the asset
event), or manually with a logical date X. One task, ``r2rec backtest --pending``: every
served date D up to X whose horizon [D, D + H) has been ingested by now and that has no
backtest yet is compared with the users' interactions in that window, beside the
retrieval order and the classical baselines as of D; dates still waiting for their
horizon are logged as not yet observable and picked up by a later run. So a daily
schedule and a weekly replay both catch up by themselves, and a rerun of X changes
nothing that is done (rerun a date D explicitly with ``r2rec backtest --ds D``).
``R2REC_BACKTEST_SCHEDULE`` (a cron) schedules it instead.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param

from dags.r2rec_common import (
    DEFAULT_ARGS,
    SHELL_FILTERS,
    START,
    asset,
    cli_job,
    run_date,
    sh,
)

SCHEDULE = os.environ.get("R2REC_BACKTEST_SCHEDULE") or asset("interactions")

with DAG(
    dag_id="r2rec_backtest",
    description="Published recommendations and baselines against the following days",
    schedule=SCHEDULE,
    start_date=START,
    catchup=False,
    max_active_runs=1,  # --pending runs must not both pick the same dates
    default_args=DEFAULT_ARGS,
    tags=["r2rec", "evaluation"],
    doc_md=__doc__,
    user_defined_filters=SHELL_FILTERS,
    params={
        "horizons": Param(
            "7,30",
            type="string",
            pattern=r"^[1-9][0-9]{0,2}(,[1-9][0-9]{0,2})*(?!\n)$",
            description="days after D, comma-separated",
        ),
        "k": Param(10, type="integer", minimum=1, maximum=100),
        "baselines": Param(
            "popularity,itemknn,als,sasrec",
            type="string",
            pattern=r"^([a-z]+(,[a-z]+)*)?(?!\n)$",
            description="classical models trained as of D ('' = none)",
        ),
    },
) as dag:
    ds = run_date()
    backtest = cli_job(
        "backtest", "backtest", "--pending",
        "--horizons", sh("params.horizons"), "--k", sh("params.k"),
        "--baselines", sh("params.baselines"),
        outlets=[asset("backtest_metrics")],
    )  # fmt: skip
    ds >> backtest
