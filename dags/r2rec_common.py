"""What the R2Rec DAGs share: dates, resources, and thin wrappers of the job entrypoints.

Not a DAG file (listed in ``.airflowignore``). Parse time stays cheap: nothing here
imports Spark, torch or vLLM or touches the lakehouse; every task runs an existing
entrypoint (``spark-submit spark_jobs/<job>.py`` or ``r2rec <job>``) with the run's
date and the configured lakehouse.

Dates: a task's ds is the run's logical date (a scheduled or backfill run's is its data
interval start), computed once by the ``run_date`` task and read by every other task
from XCom. Nothing calls ``now()``: a manual run
without a logical date fails in ``run_date`` with a message saying how to give one,
and an asset-triggered run takes the ds the data DAG attached to its asset events.

Run params reach shell commands, so each is checked twice. When a run is created, its
Param schema (a pattern or an enum) refuses anything but plain values. When a command
is rendered, every value lands quoted: bash commands are built with :func:`cli_command`,
which ``shlex``-quotes literal words and takes templated ones only through :func:`sh` /
:func:`sh_args`, whose Jinja filters quote the *rendered* value. (Quoting the template
text instead would be undone by a value holding a quote.) Spark jobs get their
arguments as an argv list, never through a shell.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset, task

from r2rec.config import parse_ds
from r2rec.errors import R2RecError

ROOT = Path(__file__).resolve().parents[1]
LAKEHOUSE = os.environ.get("R2REC_LAKEHOUSE", str(ROOT / "lakehouse"))
BIN = Path(sys.executable).parent  # the environment Airflow runs in holds r2rec and Spark
R2REC = str(BIN / "r2rec")
PYTHON = sys.executable
# Early enough for any historical log a backfill replays (a task never runs for a date
# before its DAG's start); catchup is off, so the scheduler itself only runs new dates.
START = datetime(1990, 1, 1)
GPU_POOL = os.environ.get("R2REC_GPU_POOL", "gpu")
SPARK_CONN = os.environ.get("R2REC_SPARK_CONN", "spark_default")
DS_EXPR = "ti.xcom_pull(task_ids='run_date')"
DS = "{{ " + DS_EXPR + " }}"

# Param patterns. They end in (?!\n)$ because jsonschema (Airflow's validator) searches
# with Python's re, whose $ also matches before a final newline.
# A path, URI or model name: one word that cannot be read as an option.
WORD_PATTERN = r"^(?!-)[A-Za-z0-9_.@+:/=-]+(?!\n)$"
PATH_PATTERN = r"^(?:(?!-)[A-Za-z0-9_.@+:/=-]+)?(?!\n)$"  # or '' for the default
CONFIG_PATTERN = r"^(?!-)[A-Za-z0-9_.@+/-]+\.ya?ml(?!\n)$"
# Every task sets --ds and --lakehouse itself; argparse takes the last value given and
# any unambiguous prefix (--lake), so *_args may name neither, in any spelling.
RESERVED_OPTIONS = ("--ds", "--lakehouse")
# Longest first, and in a fixed order: the pattern is part of the serialized DAG.
_PREFIXES = {o[:k] for o in RESERVED_OPTIONS for k in range(3, len(o) + 1)}
_RESERVED = "|".join(sorted(_PREFIXES, key=lambda p: (-len(p), p)))
# Extra command-line options (params *_args): options and values only, no shell syntax,
# and no word that is --ds, --lakehouse or a prefix of either (alone or before "=").
_ARGS_CHARS = r"[A-Za-z0-9_.,=/:@+ -]"
ARGS_PATTERN = rf"^(?!(?:.*\s)?(?:{_RESERVED})(?:[=\s]|$)){_ARGS_CHARS}*(?!\n)$"
DEFAULT_ARGS = {
    "owner": "r2rec",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}
# A task's XCom is its last output line: the job's JSON report (a training task's model
# version). vLLM leaves a shared-memory segment to multiprocessing's resource tracker,
# which cleans it up after the job exited and warns about it then, on the same output:
# the GRPO task's "report" became that warning. The segment is still cleaned up.
QUIET_AT_EXIT = "ignore:resource_tracker:UserWarning"
JOB_ENV = {
    "R2REC_LAKEHOUSE": LAKEHOUSE,
    "PYSPARK_PYTHON": PYTHON,
    "PYSPARK_DRIVER_PYTHON": PYTHON,
    "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    "PYTHONWARNINGS": ",".join(filter(None, (os.environ.get("PYTHONWARNINGS"), QUIET_AT_EXIT))),
}


def asset(table: str) -> Asset:
    """The Airflow Asset of one lakehouse table."""
    return Asset(name=f"r2rec.{table}", uri=f"file://{LAKEHOUSE}/{table}")


def ds_of(context) -> str:
    """The run's ds: its logical date, or the ds its triggering asset events carry."""
    from airflow.sdk.exceptions import AirflowFailException

    # Not the data interval: Airflow 3 infers a manual run's interval from its run_after
    # (the moment of `airflow dags trigger --logical-date X`), so a run triggered for a
    # past date would otherwise work on today. Scheduled and backfill runs have both equal.
    # An asset-triggered run has neither.
    for key in ("logical_date", "data_interval_start"):
        if (when := context.get(key)) is not None:
            return when.strftime("%Y-%m-%d")
    events = context.get("triggering_asset_events") or {}
    dates = [e.extra.get("ds") for evs in events.values() for e in evs if e.extra.get("ds")]
    # Asset events can be posted through the API with any extra; the ds reaches commands.
    malformed = sorted(str(d) for d in dates if not _is_ds(d))
    if malformed:
        raise AirflowFailException(f"asset events carry a ds that is not YYYY-MM-DD: {malformed}")
    if dates:
        return max(dates)
    raise AirflowFailException(
        f"{context['dag'].dag_id} needs a logical date: it never guesses 'today'. Trigger it "
        "with one, e.g. `airflow dags trigger --logical-date 2026-11-25T00:00:00+00:00 "
        f"{context['dag'].dag_id}`, or backfill a range with `airflow backfill create`."
    )


def _is_ds(value) -> bool:
    try:
        return isinstance(value, str) and parse_ds(value) == value
    except R2RecError:
        return False


@task(task_id="run_date", retries=0)
def run_date(**context) -> str:
    return ds_of(context)


def serving_model(requested: str, lakehouse: str = LAKEHOUSE) -> str:
    """The model a scoring run uses, pinned once for all its shards and the publish.

    'champion' becomes ``registry:<its run id>`` so a promotion during the run cannot
    split it across two models. The run id, not the version: a later GRPO run that
    changed no weight shares the champion's version, and ``registry:<version>`` names the
    newest row of a version, so the run's rows would name that run, not the champion's
    (``trained_reference`` below). With no champion the run fails: recommendations
    from the untuned base model are never published by accident, only when the run's
    ``model`` param names it.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from r2rec import registry
    from r2rec.assets import DEFAULT_MODEL
    from r2rec.lakehouse import Lakehouse

    if requested != registry.CHAMPION:
        return requested
    champion = registry.champion(Lakehouse(lakehouse))
    if champion is None:
        raise AirflowFailException(
            "no champion in model_registry: train and promote a model (r2rec_train), or "
            f"trigger with the param model={DEFAULT_MODEL} to serve the untuned base"
        )
    return registry.PREFIX + champion["run_id"]


def trained_reference(report: str | None) -> str:
    """``registry:<run id>`` from the JSON line a training job prints last (the
    BashOperator's XCom), whether it trained or found the run already complete.

    The run, not its version: a GRPO run that changed no weight shares its SFT parent's
    version, and ``registry:<version>`` then names the newer of the two rows.
    """
    import json

    from airflow.sdk.exceptions import AirflowFailException

    try:
        line = json.loads((report or "").strip().splitlines()[-1])
        version, run = line["model_version"], line["run_id"]
    except (IndexError, KeyError, TypeError, ValueError):
        raise AirflowFailException(
            f"the training task reported no model version and run id: {report!r}"
        ) from None
    for what, value in (("version", version), ("run id", run)):
        if not re.fullmatch(r"[A-Za-z0-9_.@+:/=-]+", str(value)):
            raise AirflowFailException(f"the training task reported a malformed {what} {value!r}")
    return f"registry:{run}"


def args_param(example: str):
    """A run param of extra command-line options, e.g. ``--max_steps 8``."""
    from airflow.sdk import Param

    return Param(
        "", type="string", pattern=ARGS_PATTERN,
        description=f"options and values only, not --ds/--lakehouse; e.g. {example}",
    )  # fmt: skip


def extra_args(text: str | None) -> list[str]:
    """A run's ``*_args`` param as words; refuses shell syntax, --ds and --lakehouse."""
    text = (text or "").strip()
    if not re.fullmatch(f"{_ARGS_CHARS}*", text):
        raise ValueError(f"extra arguments may hold options and values only, got {text!r}")
    words = text.split()
    for word in words:
        name = word.split("=", 1)[0]
        if len(name) > 2 and any(o.startswith(name) for o in RESERVED_OPTIONS):
            raise ValueError(
                f"extra arguments may not set {' or '.join(RESERVED_OPTIONS)} (every task sets "
                f"the run's own), got {word!r}"
            )
    return words


class Shell(str):
    """A piece of a bash command that is already safe as it stands (see :func:`sh`)."""


def sh(expr: str) -> Shell:
    """The Jinja expression ``expr`` (e.g. ``"params.model"``) as one shell-quoted word."""
    return Shell("{{ (" + expr + ") | shquote }}")


def sh_args(expr: str) -> Shell:
    """The Jinja expression ``expr`` (a ``*_args`` param) as checked, quoted words."""
    return Shell("{{ (" + expr + ") | shargs }}")


def _shquote(value) -> str:
    return shlex.quote(str(value))


def _shargs(text) -> str:
    return shlex.join(extra_args(text))


# Each DAG passes these as user_defined_filters, so sh() and sh_args() render.
SHELL_FILTERS = {"shquote": _shquote, "shargs": _shargs}


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
        # Likewise its JVM options: the collector, and WARN logging from the first line.
        conf={"spark.driver.extraJavaOptions": spark_driver_java_options()},
        env_vars=JOB_ENV,
        outlets=list(outlets),
        **kwargs,
    )


def spark_driver_java_options() -> str:
    from r2rec.config import SparkConfig
    from r2rec.spark import log_java_options

    return f"{SparkConfig().driver_java_options} {log_java_options()}".strip()


def cli_command(job: str, *args: str, ds: str | None = None) -> str:
    """``r2rec <job> --ds D --lakehouse L ...`` as a bash command (ds: the run's, by default).

    Plain words are quoted here; templated words must come from :func:`sh` or
    :func:`sh_args`, which quote the value they render to.
    """
    words = [R2REC, job, "--ds", sh(DS_EXPR) if ds is None else ds, "--lakehouse", LAKEHOUSE]
    return " ".join(w if isinstance(w, Shell) else _quoted(w) for w in [*words, *args])


def _quoted(word: str) -> str:
    if any(mark in word for mark in ("{{", "{%", "{#")):
        raise ValueError(
            f"{word!r} is a template: pass it as sh(expr) or sh_args(expr) so its value is quoted"
        )
    return shlex.quote(word)


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


def dq_check(job: str, task_id: str | None = None):
    """A task that fails when ``job`` recorded a failing data-quality check for ds.

    ``job`` may be a template (``traces.{{ params.teacher }}``): it is rendered per run.
    """

    @task(task_id=task_id or f"dq_{job.replace('.', '_')}", retries=0)
    def check(run_ds: str, job_name: str) -> dict:  # 'ds' is a reserved context key
        return check_quality(job_name, run_ds)

    return lambda run_ds: check(run_ds, job)


TEACHERS = ("template", "vllm", "openai")


def teacher_of(context, default: str) -> str:
    """The teacher whose traces a run trains on: the one the data DAG's asset events name
    (an asset-triggered run), else the run's own param."""
    from airflow.sdk.exceptions import AirflowFailException

    events = context.get("triggering_asset_events") or {}
    named = {e.extra.get("teacher") for evs in events.values() for e in evs} - {None}
    if len(named) > 1:
        raise AirflowFailException(f"asset events name several teachers: {sorted(named)}")
    teacher = named.pop() if named else default
    if teacher not in TEACHERS:
        raise AirflowFailException(f"unknown teacher {teacher!r} (known: {', '.join(TEACHERS)})")
    return teacher


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
