"""The logic the DAGs' own tasks run: the run's date, data-quality gates, shard commands."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow.sdk.exceptions import AirflowFailException

from dags import r2rec_common as common
from r2rec.contracts import JOB_METRICS

DAG = SimpleNamespace(dag_id="r2rec_data")


def event(ds):
    return SimpleNamespace(extra={"ds": ds} if ds else {})


def test_ds_is_the_data_interval_start():
    context = {"dag": DAG, "data_interval_start": datetime(2026, 11, 25, tzinfo=UTC)}
    assert common.ds_of(context) == "2026-11-25"


def test_an_asset_triggered_run_takes_the_newest_ds_its_events_carry():
    events = {"r2rec.sft_examples": [event("2026-11-24"), event(None)],
              "r2rec.rl_prompts": [event("2026-11-25")]}  # fmt: skip
    context = {"dag": DAG, "data_interval_start": None, "triggering_asset_events": events}
    assert common.ds_of(context) == "2026-11-25"


def test_a_run_without_a_date_fails_and_says_how_to_give_one():
    with pytest.raises(AirflowFailException, match=r"needs a logical date.*--logical-date"):
        common.ds_of({"dag": DAG, "data_interval_start": None})


def test_quality_gate_passes_clean_metrics_and_stops_failing_ones(lakehouse):
    rows = [
        {"ds": "2026-11-25", "job": "graph", "metric": "dq.edges_unique", "value": 0.0,
         "detail": None},
        {"ds": "2026-11-25", "job": "graph", "metric": "users", "value": 943.0, "detail": None},
        {"ds": "2026-11-25", "job": "chains", "metric": "dq.chain_in_time", "value": 3.0,
         "detail": "u1:5/1"},
    ]  # fmt: skip
    lakehouse.append(JOB_METRICS, rows)
    got = common.check_quality("graph", "2026-11-25", lakehouse.root)
    assert got == {"dq.edges_unique": 0.0, "users": 943.0}
    with pytest.raises(AirflowFailException, match=r"chains failed .*dq.chain_in_time': 3.0"):
        common.check_quality("chains", "2026-11-25", lakehouse.root)
    with pytest.raises(AirflowFailException, match="samples recorded no metrics for ds=2026-11-25"):
        common.check_quality("samples", "2026-11-25", lakehouse.root)


def test_shard_commands_score_each_shard_of_the_date_once():
    cmds = common.shard_commands("3", "champion", "2026-11-25", " --max-users 12 ")
    assert len(cmds) == 3
    for k, cmd in enumerate(cmds):
        assert cmd.split()[1:] == [
            "score", "--ds", "2026-11-25", "--lakehouse", common.LAKEHOUSE, "--mode", "serve",
            "--model", "champion", "--shards", "3", "--max-users", "12", "--shard", str(k),
        ]  # fmt: skip
    with pytest.raises(ValueError, match="at least 1"):
        common.shard_commands(0, "champion", "2026-11-25")


@pytest.mark.parametrize("bad", ["--x 1; rm -rf /", "$(id)", "--a `b`", "--a|b", "--a\nb", "a>b"])
def test_extra_args_refuse_shell_syntax(bad):
    with pytest.raises(ValueError, match="options and values only"):
        common.extra_args(bad)
    with pytest.raises(ValueError):
        common.shard_commands(1, "champion", "2026-11-25", bad)


def test_extra_args_keep_options_paths_and_lists():
    text = "--model /models/x-1.7B --max_steps 8 --seeds 0,1 --lr=5e-5"
    assert common.extra_args(text) == text.split()
    assert common.extra_args("") == [] and common.extra_args(None) == []


def test_serving_model_is_the_base_until_a_promotion_then_the_pinned_champion(lakehouse):
    from r2rec import registry

    assert common.serving_model("champion", lakehouse.root) == "smollm2-135m-instruct"
    assert common.serving_model("registry:sft-x", lakehouse.root) == "registry:sft-x"
    registry.register(
        lakehouse,
        {"model_version": "base@1+adapter@2", "run_id": "sft-2026-11-25-ab", "ds": "2026-11-25",
         "stage": "sft", "base_model": "base", "base_version": "base@1", "model_path": "/m",
         "adapter_path": "/a", "run_dir": "/r", "manifest": "{}", "status": "champion"},
    )  # fmt: skip
    assert common.serving_model("champion", lakehouse.root) == "registry:base@1+adapter@2"
