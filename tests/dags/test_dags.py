"""The four DAGs: they load without import errors, cheaply, and are wired as specified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "R2REC_LAKEHOUSE": str(home / "lakehouse"),
    }
    env.pop("R2REC_TRAIN_SCHEDULE", None)
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "dags" / "inspect_dags.py"), str(ROOT / "dags")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dagbag_loads_the_four_dags_quickly_and_imports_nothing_heavy(bag):
    assert bag["import_errors"] == {}
    assert sorted(bag["dags"]) == ["r2rec_backtest", "r2rec_data", "r2rec_score", "r2rec_train"]
    assert bag["seconds"] < 10  # parse-time budget (a scheduler parses every 30 s)
    assert bag["heavy"] == []


def test_every_dag_has_explicit_scheduling_and_docs(bag):
    for dag in bag["dags"].values():
        # A backfill can replay a historical log (ML-100k starts 1997-09-20): a task never
        # runs for a date before its DAG's start; catchup off keeps the scheduler to new dates.
        assert dag["catchup"] is False and dag["start_date"] < "1997-09-20"
        assert dag["max_active_runs"] >= 1 and dag["doc_md"] and "r2rec" in dag["tags"]
    assert bag["dags"]["r2rec_data"]["schedule"] == "@daily"
    assert bag["dags"]["r2rec_score"]["schedule"] == "@daily"
    assert "sft_examples" in bag["dags"]["r2rec_train"]["schedule"]  # asset-triggered
    assert bag["dags"]["r2rec_train"]["max_active_runs"] == 1
    # Backtests follow the data: each ingested date may make an earlier horizon observable.
    assert "interactions" in bag["dags"]["r2rec_backtest"]["schedule"]
    assert bag["dags"]["r2rec_backtest"]["max_active_runs"] == 1


def test_every_task_retries_with_a_delay_and_a_timeout(bag):
    for dag in bag["dags"].values():
        for task_id, t in dag["tasks"].items():
            if (
                task_id in ("run_date", "data_teacher")
                or task_id.startswith("dq_")
                or (task_id.endswith("_version"))
            ):
                assert t["retries"] == 0  # a missing date or failed check is not transient
                continue
            assert t["retries"] >= 2 and t["retry_delay_s"] > 0, task_id
            assert t["timeout_s"] and t["timeout_s"] <= 4 * 3600, task_id


def test_data_dag_wiring(bag):
    tasks = bag["dags"]["r2rec_data"]["tasks"]
    chain = ["run_date", "ingest", "graph", "dq_graph", "samples", "dq_samples", "chains",
             "dq_chains", "traces", "dq_traces", "publish_assets"]  # fmt: skip
    for up, down in pairwise(chain):
        assert up in tasks[down]["upstream"], (up, down)
    # the prompt's evidence, beside the chains, gated before the traces read it
    for up, down in pairwise(["dq_samples", "evidence", "dq_evidence_samples", "traces"]):
        assert up in tasks[down]["upstream"], (up, down)
    spark = {k for k, t in tasks.items() if t["type"] == "SparkSubmitOperator"}
    assert spark == {"ingest", "graph", "samples", "chains", "evidence"}
    assert all(tasks[k]["conn_id"] == "spark_default" for k in spark)
    for k in spark:  # WARN from the driver's first line, and its garbage collector
        options = tasks[k]["spark_conf"]["spark.driver.extraJavaOptions"]
        assert "-Dr2rec.spark.log.level=WARN" in options and "log4j2.properties" in options, k
        assert "-XX:+UseParallelGC" in options, k
    assert "r2rec.sft_examples" in tasks["publish_assets"]["outlets"]
    assert "r2rec.graph_edges" in tasks["graph"]["outlets"]


def test_train_dag_wiring_and_gpu_pool(bag):
    tasks = bag["dags"]["r2rec_train"]["tasks"]
    chain = ["run_date", "data_teacher", "sft", "sft_version", "evaluate_sft", "promote_sft",
             "grpo", "grpo_version", "evaluate_grpo", "promote_grpo"]  # fmt: skip
    for up, down in pairwise(chain):
        assert up in tasks[down]["upstream"], (up, down)
    # what the SFT must beat (champion or base) is evaluated before its promotion
    assert tasks["evaluate_incumbent"]["upstream"] == ["sft_version"]
    assert sorted(tasks["promote_sft"]["upstream"]) == ["evaluate_incumbent", "evaluate_sft"]
    for k in ("sft", "grpo", "evaluate_sft", "evaluate_grpo", "evaluate_incumbent"):
        assert (tasks[k]["pool"], tasks[k]["pool_slots"]) == ("gpu", 1)
    assert tasks["promote_sft"]["pool"] == "default_pool"


def test_score_dag_maps_shards_then_publishes_then_evaluates(bag):
    tasks = bag["dags"]["r2rec_score"]["tasks"]
    assert tasks["score_shard"]["mapped"] and tasks["score_shard"]["pool"] == "gpu"
    assert {"dq_evidence_serve", "shard_commands"} <= set(tasks["score_shard"]["upstream"])
    assert tasks["evidence"]["upstream"] == ["retrieval"]
    assert tasks["publish"]["upstream"] == ["score_shard"]
    assert tasks["evaluate"]["upstream"] == ["publish"]
    assert tasks["data_ready"]["upstream"] == ["run_date"]
    assert "r2rec.recommendations" in tasks["publish"]["outlets"]


def test_backtest_dag_catches_up_on_every_observable_date(bag):
    tasks = bag["dags"]["r2rec_backtest"]["tasks"]
    assert tasks["backtest"]["upstream"] == ["run_date"]
    assert "--pending" in tasks["backtest"]["command"]
    assert "r2rec.backtest_metrics" in tasks["backtest"]["outlets"]


# Values a trigger conf (or the UI's form) could send to get a shell to run something.
HOSTILE = ["x; touch PWNED #", "x$(touch PWNED)", "x`touch PWNED`", "x\ntouch PWNED", "x\n",
           "x' ; touch PWNED ; '", "x | tee PWNED", "x && touch PWNED", "x > PWNED",
           "--lakehouse=/tmp/other"]  # fmt: skip


def valid(schema: dict, value) -> bool:
    """Airflow's own check of a run's params (Param.resolve)."""
    from jsonschema import FormatChecker, ValidationError, validate

    try:
        validate(value, schema, format_checker=FormatChecker())
    except ValidationError:
        return False
    return True


def test_every_run_param_has_a_type_pattern_or_enum_that_refuses_shell_syntax(bag):
    for dag_id, dag in bag["dags"].items():
        for key, schema in dag["params"].items():
            assert "enum" in schema or "pattern" in schema or schema["type"] in (
                "integer", "number"
            ), (dag_id, key)  # fmt: skip
            assert valid(schema, dag["param_defaults"][key]), (dag_id, key)
            for value in HOSTILE:
                assert not valid(schema, value), (dag_id, key, value)


@pytest.mark.parametrize(
    ("dag_id", "key", "good"),
    [
        ("r2rec_data", "path", ["", "/data/ml-1m", "data/ml-latest-small", "s3://b/raw/x.jsonl"]),
        ("r2rec_data", "source", ["movielens-1m", "csv", "amazon-reviews-2023"]),
        ("r2rec_score", "model", ["champion", "registry:base@1+adapter@2", "/models/x-1.7B"]),
        ("r2rec_train", "sft_config", ["trainer/configs/sft.yaml", "/cfg/my-sft.yml"]),
        ("r2rec_train", "eval_seeds", ["", "0", "0,1,2"]),
    ],
)
def test_string_params_take_their_values(bag, dag_id, key, good):
    schema = bag["dags"][dag_id]["params"][key]
    assert all(valid(schema, value) for value in good)


def test_promotion_params_refuse_what_would_decide_nothing(bag):
    params = bag["dags"]["r2rec_train"]["params"]
    assert [valid(params["alpha"], v) for v in (0.05, 1, 0, -0.1, 1.5, "0.05")] == [
        True, True, False, False, False, False,
    ]  # fmt: skip
    assert not any(valid(params["eval_seeds"], v) for v in ("1,", ",", "a", "0 1", "-1"))


def test_run_params_that_reach_a_shell_only_take_options(bag):
    import re

    for dag_id, keys in {"r2rec_train": ["sft_args", "grpo_args"],
                         "r2rec_score": ["score_args", "eval_args"]}.items():  # fmt: skip
        for key in keys:
            pattern = bag["dags"][dag_id]["params"][key]["pattern"]
            assert re.fullmatch(pattern, "--max_steps 8 --model /m/x-1.7B")
            assert not re.fullmatch(pattern, "--max_steps 8; rm -rf /")
    assert bag["dags"]["r2rec_data"]["params"]["path"]["type"] == "string"


# argparse takes the last --ds and any unambiguous prefix of --lakehouse.
RESERVED = ["--ds 2020-01-01", "--ds=2020-01-01", "--max-users 3 --ds 2020-01-01", "--d 2020",
            "--lakehouse /x", "--lakehouse=/x", "--lake /x", "--lakeh=/x", "--la /x",
            "--l /x"]  # fmt: skip


def test_args_params_refuse_ds_and_lakehouse_in_any_spelling(bag):
    for dag_id, keys in {"r2rec_train": ["sft_args", "grpo_args"],
                         "r2rec_score": ["score_args", "eval_args"]}.items():  # fmt: skip
        for key in keys:
            schema = bag["dags"][dag_id]["params"][key]
            for value in RESERVED:
                assert not valid(schema, value), (dag_id, key, value)
            for value in ["--max-users 3 --chunk-size 2", "--lr=5e-5", "--data-dir d",
                          "--dsx 1", "--model=--ds"]:  # fmt: skip
                assert valid(schema, value), (dag_id, key, value)
