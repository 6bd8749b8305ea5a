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


def test_ds_is_the_logical_date_not_the_moment_a_manual_run_was_triggered():
    # `airflow dags trigger --logical-date 1998-01-05...` today: Airflow 3 gives the run
    # a data interval at the trigger time, and the run must still work on 1998-01-05.
    context = {"dag": DAG, "logical_date": datetime(1998, 1, 5, tzinfo=UTC),
               "data_interval_start": datetime(2026, 12, 1, 4, 38, tzinfo=UTC)}  # fmt: skip
    assert common.ds_of(context) == "1998-01-05"


def test_ds_falls_back_to_the_data_interval_start():
    context = {"dag": DAG, "logical_date": None,
               "data_interval_start": datetime(2026, 11, 25, tzinfo=UTC)}  # fmt: skip
    assert common.ds_of(context) == "2026-11-25"


def test_an_asset_triggered_run_takes_the_newest_ds_its_events_carry():
    events = {"r2rec.sft_examples": [event("2026-11-24"), event(None)],
              "r2rec.rl_prompts": [event("2026-11-25")]}  # fmt: skip
    context = {"dag": DAG, "data_interval_start": None, "triggering_asset_events": events}
    assert common.ds_of(context) == "2026-11-25"


@pytest.mark.parametrize("bad", ["2026-11-25; touch PWNED", "2026-13-01", "yesterday"])
def test_an_asset_event_with_a_malformed_ds_fails_the_run(bad):
    # Asset events can be posted through the API with any extra; the ds reaches commands.
    events = {"r2rec.sft_examples": [event("2026-11-24"), event(bad)]}
    context = {"dag": DAG, "data_interval_start": None, "triggering_asset_events": events}
    with pytest.raises(AirflowFailException, match="ds that is not YYYY-MM-DD"):
        common.ds_of(context)


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


@pytest.mark.parametrize(
    "bad",
    ["--ds 2020-01-01", "--ds=2020-01-01", "--max-users 3 --d 2020-01-01", "--lakehouse /x",
     "--lakehouse=/x", "--lake /x", "--lakeh=s3://b", "--la /x", "--l /x"],
)  # fmt: skip
def test_extra_args_refuse_ds_and_lakehouse_in_any_spelling_argparse_accepts(bad):
    with pytest.raises(ValueError, match=r"may not set --ds or --lakehouse \(every task sets"):
        common.extra_args(bad)
    with pytest.raises(ValueError, match="may not set --ds or --lakehouse"):
        common.shard_commands(1, "champion", "2026-11-25", bad)


def test_extra_args_keep_options_paths_and_lists():
    text = "--model /models/x-1.7B --max_steps 8 --seeds 0,1 --lr=5e-5 --data-dir d --model=--ds"
    assert common.extra_args(text) == text.split()
    assert common.extra_args("") == [] and common.extra_args(None) == []


def test_serving_model_is_the_pinned_champion_and_never_a_silent_fallback(lakehouse):
    from airflow.sdk.exceptions import AirflowFailException

    from r2rec import registry

    with pytest.raises(AirflowFailException, match=r"no champion .* model=smollm2-135m-instruct"):
        common.serving_model("champion", lakehouse.root)
    # the base model, asked for explicitly, is served
    assert common.serving_model("smollm2-135m-instruct", lakehouse.root) == "smollm2-135m-instruct"
    assert common.serving_model("registry:sft-x", lakehouse.root) == "registry:sft-x"

    def run(run_id: str, stage: str, status: str) -> dict:
        return {"model_version": "base@1+adapter@2", "run_id": run_id, "ds": "2026-11-25",
                "stage": stage, "base_model": "base", "base_version": "base@1", "model_path": "/m",
                "adapter_path": f"/{run_id}/a", "run_dir": f"/{run_id}", "manifest": "{}",
                "status": status}  # fmt: skip

    registry.register(lakehouse, run("sft-2026-11-25-ab", "sft", "champion"))
    # A later run that saved the same weights unchanged (a GRPO run with no reward spread)
    # shares the version; the pin still names the champion's own row.
    registry.register(lakehouse, run("grpo-2026-11-25-cd", "grpo", "rejected"))
    pinned = common.serving_model("champion", lakehouse.root)
    assert pinned == "registry:sft-2026-11-25-ab"
    assert registry.resolve(lakehouse, pinned)["status"] == "champion"


# --- rendered commands: hostile values arrive as one argument each and run nothing ----

HOSTILE = ["x; touch PWNED #", "$(touch PWNED)", "`touch PWNED`", "x\ntouch PWNED",
           "x' ; touch PWNED ; '", 'x" ; touch PWNED ; "', "{{ 7 * 7 }}"]  # fmt: skip


@pytest.fixture(scope="module")
def dags():
    from dags import r2rec_data, r2rec_score, r2rec_train

    return [r2rec_data.dag, r2rec_train.dag, r2rec_score.dag]


@pytest.fixture
def run_bash(tmp_path):
    """Run a command the way BashOperator does (bash -c), with a stand-in for the r2rec
    binary that prints its arguments; returns them and the files the command left."""
    argv = tmp_path / "bin" / "argv"
    argv.parent.mkdir()
    argv.write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\0\' "$a"; done\n')
    argv.chmod(0o755)
    work = tmp_path / "cwd"
    work.mkdir()

    def run(command: str) -> tuple[list[str], list[str]]:
        import shlex
        import subprocess

        prefix = shlex.quote(common.R2REC) + " "
        assert command.startswith(prefix)
        out = subprocess.run(["bash", "-c", str(argv) + " " + command[len(prefix) :]],
                             cwd=work, capture_output=True, check=True).stdout  # fmt: skip
        return out.decode().split("\0")[:-1], sorted(p.name for p in work.iterdir())

    return run


def render(dag, task_id: str, params: dict, xcom: dict) -> str:
    """A task's bash command as Airflow renders it at run time (the DAG's Jinja env)."""
    task = dag.get_task(task_id)
    context = {"params": params, "ti": SimpleNamespace(xcom_pull=lambda task_ids: xcom[task_ids])}
    return task.render_template(task.bash_command, context, task.get_template_env())


def bash_tasks(dag) -> list[str]:
    return [t.task_id for t in dag.tasks if type(t).__name__ == "BashOperator"]


@pytest.mark.parametrize("value", HOSTILE)
def test_every_bash_command_passes_hostile_values_as_single_arguments(dags, run_bash, value):
    tasks = 0
    for dag in dags:
        params = {k: "--max-users 3" if k.endswith("_args") else value for k in dag.params}
        for task_id in bash_tasks(dag):
            template = dag.get_task(task_id).bash_command
            keys = ("run_date", "model_spec", "sft_version", "grpo_version", "data_teacher")
            xcom = dict.fromkeys(keys, value)
            command = render(dag, task_id, params, xcom)

            args, files = run_bash(command)

            assert files == [], (task_id, files)  # PWNED was never created
            whole = [a for a in args if a in (value, f"base:{value}")]
            assert len(whole) == template.count("| shquote"), (task_id, args)
            assert args[1:5] == ["--ds", value, "--lakehouse", common.LAKEHOUSE]
            tasks += 1
    assert tasks == 10  # traces; sft, grpo, their evaluate/promote, the base's; publish, evaluate


def test_publish_gets_exactly_the_pinned_model_and_the_shards_plan(dags, run_bash):
    score = dags[2]
    value = "x; touch PWNED #"
    params = {**score.params, "shards": 2, "max_invalid_share": 0.5,
              "score_args": "--max-users 3 --chunk-size 2"}  # fmt: skip

    args, files = run_bash(render(score, "publish", params, {"run_date": "2026-11-25",
                                                             "model_spec": value}))  # fmt: skip

    assert files == []
    assert args == [
        "score", "--ds", "2026-11-25", "--lakehouse", common.LAKEHOUSE, "--mode", "serve",
        "--publish-only", "--model", value, "--shards", "2", "--max-invalid-share", "0.5",
        "--max-users", "3", "--chunk-size", "2",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [("--max-users 3; touch PWNED", "options and values only"),
     ("--max-users 3 $(touch PWNED)", "options and values only"),
     ("--lake=/elsewhere", "may not set --ds or --lakehouse")],
)  # fmt: skip
def test_rendering_refuses_hostile_extra_args(dags, args, message):
    # Even if a run's params skipped validation, the command never renders.
    score = dags[2]
    params = {**score.params, "score_args": args}

    with pytest.raises(ValueError, match=message):
        render(score, "publish", params, {"run_date": "2026-11-25", "model_spec": "m"})


@pytest.mark.parametrize("value", HOSTILE[:-1])
def test_shard_commands_quote_the_model_and_the_date(run_bash, value):
    (command,) = common.shard_commands(1, value, value, "--max-users 3")

    args, files = run_bash(command)

    assert files == []
    assert args == [
        "score", "--ds", value, "--lakehouse", common.LAKEHOUSE, "--mode", "serve",
        "--model", value, "--shards", "1", "--max-users", "3", "--shard", "0",
    ]  # fmt: skip


def test_a_template_in_a_runtime_value_is_refused_not_rendered():
    with pytest.raises(ValueError, match="is a template"):
        common.shard_commands(1, "{{ 7 * 7 }}", "2026-11-25")


def test_a_raw_template_cannot_enter_a_command_unquoted():
    with pytest.raises(ValueError, match=r"is a template: pass it as sh\(expr\)"):
        common.cli_command("traces", "--teacher", "{{ params.teacher }}")


def test_the_trained_run_comes_from_the_training_reports_last_line():
    from airflow.sdk.exceptions import AirflowFailException

    report = (
        'progress\n{"model_version": "m@1+adapter@2", "run_id": "grpo-2026-11-25-ab12",'
        ' "status": "already complete"}'
    )
    # The run, not the version: a GRPO run that changed nothing shares its SFT's version.
    assert common.trained_reference(report) == "registry:grpo-2026-11-25-ab12"
    for bad in ("", "no json", '{"status": "trained"}', '{"model_version": "m@1"}',
                '{"model_version": "m; rm -rf /", "run_id": "sft-1"}',
                '{"model_version": "m@1", "run_id": "$(touch PWNED)"}'):  # fmt: skip
        with pytest.raises(AirflowFailException):
            common.trained_reference(bad)


def test_the_teacher_travels_from_the_asset_events_or_the_param():
    from airflow.sdk.exceptions import AirflowFailException

    def event(**extra):
        return SimpleNamespace(extra=extra)

    assert common.teacher_of({}, "template") == "template"  # a manual run: its param
    events = {"a": [event(ds="2026-11-25", teacher="vllm")], "b": [event(teacher="vllm")]}
    assert common.teacher_of({"triggering_asset_events": events}, "template") == "vllm"
    mixed = {"a": [event(teacher="vllm")], "b": [event(teacher="openai")]}
    with pytest.raises(AirflowFailException, match="several teachers"):
        common.teacher_of({"triggering_asset_events": mixed}, "template")
    with pytest.raises(AirflowFailException, match="unknown teacher"):
        common.teacher_of({"triggering_asset_events": {"a": [event(teacher="x; rm")]}}, "t")


LEAKS_A_SEGMENT = """
import json
from multiprocessing import shared_memory
segment = shared_memory.SharedMemory(create=True, size=64)
print(json.dumps({"v": 1}))
"""


def test_a_jobs_report_stays_its_last_line_when_a_shared_memory_segment_leaks():
    import subprocess
    import sys

    # As vLLM's engine does: a segment left to the resource tracker, which warns at exit,
    # on the output Airflow reads the task's XCom (last line) from.
    def last_line(env: dict) -> str:
        out = subprocess.run(
            [sys.executable, "-c", LEAKS_A_SEGMENT], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env, timeout=60, check=True,
        ).stdout  # fmt: skip
        return out.strip().splitlines()[-1]

    bare = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    assert last_line(bare) != '{"v": 1}'  # the warning came last
    assert last_line({**bare, "PYTHONWARNINGS": common.JOB_ENV["PYTHONWARNINGS"]}) == '{"v": 1}'
