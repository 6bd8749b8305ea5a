"""The operator's replay of a historical log through Airflow, then the backtest of it.

    python -m bench.airflow_replay [--workdir replay-work] [--start 1997-10-06]
        [--end 1998-04-20] [--train-date 1998-01-05] [--sft-steps 300] [--grpo-steps 4]
        [--active-days 7] [--score-weeks N] [--stages data,train,score,backtest]
        [--record bench/RESULTS.md] [--readme README.md]

README "Replay and backtest", run for real (issue 17): weekly data runs of ML-100k
through ``airflow backfill create --dag-id r2rec_data`` (29 Mondays by default), a
champion trained as of ``--train-date`` by ``r2rec_train``, weekly scoring from that
date by a backfill of ``r2rec_score`` (users active the week before; ``--score-weeks``
bounds it to the first N Mondays, since each scored date costs minutes of vLLM), then
``r2rec_backtest``, and the HR@10 at H = 7 of every model per date from
``backtest_metrics``. With it, the cost of each data job as dates accumulate
(:func:`cost_table`, bench.replay's table from the ``job_runs`` rows the tasks wrote).

Everything lives in ``--workdir``: the lakehouse, the Airflow home and its PostgreSQL
cluster (kept between calls), and a log. It takes hours on two cores, so it resumes: a
rerun starts the cluster and ``airflow standalone`` again, and each stage does only what
is not done yet (Airflow keeps a backfill's runs; a date that succeeded is not run again,
a failed one is retried once by ``--reprocess-behavior failed``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

from bench import record_section

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ("data", "train", "score", "backtest")
DONE = {"success", "failed"}
WEEKLY = "0 0 * * 1"  # Mondays, as README's replay


def mondays(start: str, end: str) -> list[str]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if first.weekday() != 0 or last < first:
        raise SystemExit(f"--start must be a Monday on or before --end ({start} .. {end})")
    out, day = [], first
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=7)
    return out


def airflow_env(home: Path, lakehouse: Path, database: str, port: int) -> dict[str, str]:
    """A project-like Airflow home (also the end-to-end DAG tests'): metadata in
    ``database``, the repo's DAGs, an API server on ``port``, Spark on local[2]."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Only the backfills and triggers below make runs: no scheduled "today" beside them.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # LocalExecutor forks this many ~150 MB workers up front (default 32).
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
        "R2REC_LAKEHOUSE": str(lakehouse),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    env.pop("R2REC_TRAIN_SCHEDULE", None)
    return env


def last_json(text: str):
    """The JSON value on the last line that starts like one (the CLI prints warnings first)."""
    lines = [x for x in text.splitlines() if x.startswith(("[", "{"))]
    if not lines:
        raise ValueError(f"no JSON in: {text[-500:]}")
    return json.loads(lines[-1])


def runs_by_date(runs: list[dict], dates: list[str]) -> dict[str, str]:
    """logical date -> state of the newest run of each asked date (Airflow keeps one run
    per logical date; the newest, should a date ever hold two)."""
    newest: dict[str, dict] = {}

    def when(r: dict) -> tuple[str, str]:
        return (r.get("start_date") or r.get("queued_at") or "", r["run_id"])

    for r in runs:
        day = (r.get("logical_date") or "")[:10]
        if day in dates and (day not in newest or when(r) > when(newest[day])):
            newest[day] = r
    return {d: newest[d]["state"] for d in dates if d in newest}


class Replay:
    def __init__(self, workdir: Path, env: dict[str, str], log):
        self.workdir, self.env, self.log = workdir, env, log

    def say(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
        if check and out.returncode != 0:
            raise SystemExit(f"airflow {' '.join(args)} failed: {out.stderr[-3000:]}")
        return out

    def states(self, dag_id: str, dates: list[str]) -> dict[str, str]:
        try:
            runs = last_json(self.cli("dags", "list-runs", dag_id, "-o", "json").stdout)
        except ValueError:  # no runs yet: the CLI prints a sentence, not []
            runs = []
        return runs_by_date(runs, dates)

    def wait(self, dag_id: str, dates: list[str], poll: float = 30) -> dict[str, str]:
        """Until every date's run has ended; a line each time the counts change."""
        seen = None
        while True:
            states = self.states(dag_id, dates)
            counts = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
            if counts != seen:
                self.say(f"{dag_id}: {len(states)}/{len(dates)} runs {counts}")
                seen = counts
            if len(states) == len(dates) and set(states.values()) <= DONE:
                return states
            time.sleep(poll)

    def backfill(self, dag_id: str, dates: list[str], conf: dict) -> dict[str, str]:
        states = self.states(dag_id, dates)
        if len(states) == len(dates) and set(states.values()) == {"success"}:
            self.say(f"{dag_id}: all {len(dates)} dates already succeeded")
            return states
        self.cli("dags", "unpause", dag_id)
        out = self.cli(
            "backfill", "create", "--dag-id", dag_id, "--from-date", dates[0], "--to-date",
            dates[-1], "--max-active-runs", "1", "--reprocess-behavior", "failed",
            "--dag-run-conf", json.dumps(conf), check=False,
        )  # fmt: skip
        if out.returncode != 0 and "already" not in out.stderr.lower():
            raise SystemExit(f"backfill of {dag_id} failed: {out.stderr[-3000:]}")
        # "already": the backfill of an earlier call still runs; waiting resumes it.
        return self.succeeded(dag_id, self.wait(dag_id, dates))

    @staticmethod
    def succeeded(dag_id: str, states: dict[str, str]) -> dict[str, str]:
        """The states, or a stop naming the failed dates: a later stage must not run on a
        replay with holes (a task killed with an earlier call's scheduler ends failed)."""
        failed = sorted(d for d, s in states.items() if s != "success")
        if failed:
            raise SystemExit(
                f"{dag_id}: {len(failed)} run(s) failed: {', '.join(failed)}; their task logs "
                "are under the Airflow home's logs/. Run this command again to retry them."
            )
        return states

    def trigger(self, dag_id: str, ds: str, conf: dict) -> str:
        states = self.states(dag_id, [ds])
        if states.get(ds) == "success":
            self.say(f"{dag_id} {ds}: already succeeded")
            return "success"
        self.cli("dags", "unpause", dag_id)
        if ds not in states:
            self.cli("dags", "trigger", dag_id, "--logical-date", f"{ds}T00:00:00+00:00",
                     "--conf", json.dumps(conf))  # fmt: skip
        elif states[ds] == "failed":
            # A logical date holds one run (a second trigger is refused): the operator's
            # retry is to clear it, and the scheduler runs all of it again.
            self.say(f"{dag_id} {ds}: failed before; clearing it to run again")
            self.cli("tasks", "clear", dag_id, "--start-date", ds, "--end-date", ds, "--yes")
        return self.succeeded(dag_id, self.wait(dag_id, [ds]))[ds]


@contextlib.contextmanager
def standalone(replay: Replay, port: int) -> Iterator[None]:
    log = open(replay.workdir / "standalone.log", "a")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=replay.env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        url = f"http://localhost:{port}/api/v2/monitor/health"
        deadline = time.time() + 600
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"airflow standalone exited; see {replay.workdir}/standalone.log")
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.load(urllib.request.urlopen(url, timeout=5))["scheduler"]["status"] == (
                    "healthy"
                ):
                    break
            if time.time() > deadline:
                raise SystemExit("airflow standalone did not become healthy in 600 s")
            time.sleep(3)
        replay.say(f"airflow standalone healthy on port {port}")
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        log.close()


def hr_rows(lakehouse: Path, k: int, horizon: int) -> list[dict] | None:
    """backtest_metrics' HR@k rows at H, or None before the first backtest."""
    from r2rec.lakehouse import Lakehouse

    lake = Lakehouse(str(lakehouse))
    if not lake.exists("backtest_metrics"):
        return None
    return [r for r in lake.read_arrow("backtest_metrics").to_pylist()
            if r["horizon_days"] == horizon and r["metric"] == f"hr@{k}"]  # fmt: skip


NO_BACKTEST = "no backtest_metrics yet"


def hr10_table(lakehouse: Path, k: int = 10, horizon: int = 7) -> str:
    """Per date, HR@k at H of every model in backtest_metrics, the best first, and how
    many users that date's nightly scoring published (job_metrics ``score.serve``)."""
    from r2rec.lakehouse import Lakehouse

    rows = hr_rows(lakehouse, k, horizon)
    if rows is None:
        return NO_BACKTEST
    lake = Lakehouse(str(lakehouse))
    scored = {}
    if lake.exists("job_metrics"):
        scored = {r["ds"]: int(r["value"]) for r in lake.read_arrow("job_metrics").to_pylist()
                  if r["job"] == "score.serve" and r["metric"] == "users"}  # fmt: skip
    lines = [f"| ds | users scored | model | HR@{k} at H={horizon} [95% CI] | users with a "
             "future interaction |", "|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["ds"], -r["value"])):
        ci = (f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r.get("ci_low") is not None
              else "")  # fmt: skip
        lines.append(f"| {r['ds']} | {scored.get(r['ds'], '—')} | {r['model']} | "
                     f"{r['value']:.3f}{ci} | {r['users']} |")  # fmt: skip
    return "\n".join(lines)


def verdict(lakehouse: Path, k: int = 10, horizon: int = 7) -> str:
    """Whether the published top-k (``llm:*``) beat popularity and the retrieval order on
    HR@k at H, date by date: by point estimate, and by intervals that do not overlap."""
    rows = hr_rows(lakehouse, k, horizon)
    if rows is None:
        return "No backtest yet."
    by_ds: dict[str, dict[str, dict]] = {}
    for r in rows:
        name = "llm" if r["model"].startswith("llm:") else r["model"]
        by_ds.setdefault(r["ds"], {})[name] = r
    dates = sorted(d for d, m in by_ds.items() if {"llm", "popularity", "retrieval"} <= set(m))
    if not dates:
        return "No date has the published top-k, popularity and the retrieval order together."
    parts = []
    for other, noun in (("popularity", "popularity"), ("retrieval", "the retrieval order")):
        pairs = [(by_ds[d]["llm"], by_ds[d][other]) for d in dates]
        won = sum(a["value"] > b["value"] for a, b in pairs)
        clear = sum(a["ci_low"] is not None and b["ci_high"] is not None
                    and a["ci_low"] > b["ci_high"] for a, b in pairs)  # fmt: skip
        lost = sum(a["value"] < b["value"] for a, b in pairs)
        parts.append(f"{noun} on {won} of {len(dates)} dates (lower on {lost}; its 95% "
                     f"interval wholly above on {clear})")  # fmt: skip
    every = all(
        m["llm"]["value"] > max(m["popularity"]["value"], m["retrieval"]["value"])
        for m in (by_ds[d] for d in dates)
    )
    return (
        f"**The published top-{k} {'beat' if every else 'did not beat'} both popularity and "
        f"the retrieval order on HR@{k} at H = {horizon} on every date.** It was higher than "
        + " and than ".join(parts)
        + "."
    )


# The data DAG's jobs, by their bench.replay names (each records a job_runs row).
DATA_JOBS = ("ingest", "graph", "samples", "chains", "evidence", "traces")


def samples_growth(lakehouse: Path, dates: list[str]) -> str:
    """The samples of the first and last three dates: the unit of work of samples,
    chains, evidence and traces, which grows with the data, unlike the history."""
    from r2rec.lakehouse import Lakehouse

    count = Counter(Lakehouse(str(lakehouse)).read_arrow("samples", columns=["ds"])["ds"]
                    .to_pylist())  # fmt: skip
    first = sum(count[d] for d in dates[:3]) / 3
    last = sum(count[d] for d in dates[-3:]) / 3
    return (f"Samples of a date (the unit of work of samples, chains, evidence, traces): "
            f"{first:,.0f} over the first 3 dates, {last:,.0f} over the last 3 "
            f"({last / max(first, 1):.2f}x).")  # fmt: skip


def cost_table(lakehouse: Path, dates: list[str]) -> str:
    """bench.replay's cost-over-history table for the data DAG's runs of the replayed
    dates (issue 17 item 4), from the job_runs rows the Airflow tasks wrote: a backfill
    with one active run at a time replays dates in order, as the benchmark does."""
    from bench import replay as cost

    jobs = list(DATA_JOBS)
    rows = cost.job_rows(str(lakehouse), dates, jobs)
    done = [d for d in dates if all((j, d) in rows for j in jobs)]
    if len(done) < 4:
        return (f"Cost over history: {len(done)} of {len(dates)} dates have a successful "
                "run of every data job; 4 are needed for a first-3/last-3 table.")  # fmt: skip
    seconds = {key: r["elapsed_s"] for key, r in rows.items()}
    summary = cost.summarise(rows, done, jobs, seconds)
    text = cost.table(summary, cost.data_growth(str(lakehouse), done), done)
    text += "\n\n" + samples_growth(lakehouse, done)
    ran = [rows[(j, d)] for j in jobs for d in done]
    span = max(r["ended_at"] for r in ran) - min(r["started_at"] for r in ran)
    hours = span.total_seconds() / 3600
    text += (f"\n\nFrom the first task's start to the last's end: {hours:.1f} h, "
             f"{hours * 60 / len(done):.1f} min a date (Airflow's scheduling and any retry "
             "included).")  # fmt: skip
    if len(done) < len(dates):
        missing = sorted(set(dates) - set(done))
        text += f"\n\nNot in the table (a data job without a successful run): {', '.join(missing)}"
    return text


def _text(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def readme_text(
    args, dates: list[str], scored: list[str], command: str, table: str, verdict: str
) -> str:
    """README's backtest block: what was replayed and how, :func:`hr10_table` and
    :func:`verdict`."""
    return (
        f"{len(dates)} weekly `r2rec_data` runs ({dates[0]} .. {dates[-1]}, one `airflow "
        f"backfill create`), a champion trained as of {args.train_date} by `r2rec_train` "
        f"({args.sft_steps} SFT steps, {args.grpo_steps} GRPO steps, promotion on "
        f"{args.eval_samples} samples per split), `r2rec_score` on {len(scored)} Mondays "
        f"({scored[0]} .. {scored[-1]}, users active in the {args.active_days} days "
        "before), then `r2rec_backtest`. HR@10 of each published top-10 (`llm:<version>`), "
        "the retrieval order it reranks, and the baselines trained as of the date, over "
        "the users with an interaction in the next 7 days; 95% intervals over users. "
        f"Generated by `{command} --readme README.md` from `backtest_metrics`.\n\n"
        f"{table}\n\n{verdict}\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="replay-work")
    p.add_argument("--start", default="1997-10-06")
    p.add_argument("--end", default="1998-04-20")
    p.add_argument("--train-date", default="1998-01-05")
    p.add_argument("--sft-steps", type=int, default=300)
    p.add_argument("--grpo-steps", type=int, default=4)
    p.add_argument("--active-days", type=int, default=7)
    p.add_argument("--eval-samples", type=int, default=100)
    p.add_argument(
        "--score-weeks",
        type=int,
        help="score only the first N Mondays from --train-date (default: every one to --end)",
    )
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--record", help="append the result to this Markdown file")
    p.add_argument("--readme", help="replace this Markdown file's backtest block with the table")
    args = p.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    weeks = args.score_weeks if args.score_weeks is not None else 1
    if set(stages) - set(STAGES) or min(args.sft_steps, args.active_days, weeks) < 1:
        p.error(f"--stages from {','.join(STAGES)}; --sft-steps, --active-days, --score-weeks >= 1")
    dates = mondays(args.start, args.end)
    if args.train_date not in dates:
        p.error(f"--train-date {args.train_date} is not one of the replayed Mondays")
    scored = [d for d in dates if d >= args.train_date][: args.score_weeks]
    if args.readme:
        from inference.results import markers

        if not all(m in _text(args.readme) for m in markers("backtest")):
            p.error(f"--readme {args.readme} has no {' ... '.join(markers('backtest'))} block")

    from tests.dags.postgres import free_port, postgres_server

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lakehouse, port = workdir / "lakehouse", free_port()
    walls: dict[str, float] = {}
    with open(workdir / "replay.log", "a") as log, \
            postgres_server(keep=workdir / "postgres") as database:  # fmt: skip
        env = airflow_env(workdir / "airflow", lakehouse, database, port)
        env.update(R2REC_DATA_SCHEDULE=WEEKLY, R2REC_SCORE_SCHEDULE=WEEKLY)
        # vLLM's default KV cache (a share of RAM) beside Spark and Airflow ran out of memory.
        env.setdefault("R2REC_VLLM_KV_CACHE_GIB", "1")
        replay = Replay(workdir, env, log)
        replay.cli("db", "migrate")
        replay.cli("pools", "set", "gpu", "1", "GPU slots for training and scoring")
        with standalone(replay, port):
            steps: dict[str, Callable[[], object]] = {
                "data": lambda: replay.backfill("r2rec_data", dates, {}),
                "train": lambda: replay.trigger("r2rec_train", args.train_date, {
                    "sft_args": f"--max_steps {args.sft_steps}",
                    "grpo_args": f"--max_steps {args.grpo_steps}",
                    "eval_samples": args.eval_samples,
                }),
                "score": lambda: replay.backfill("r2rec_score", scored, {
                    "active_days": args.active_days, "shards": 1,
                    "eval_models": "popularity", "eval_samples": args.eval_samples,
                }),
                "backtest": lambda: replay.trigger("r2rec_backtest", dates[-1], {"horizons": "7"}),
            }  # fmt: skip
            for stage in stages:
                t0 = time.monotonic()
                replay.say(f"{stage}: {steps[stage]()}")
                walls[stage] = time.monotonic() - t0
        table, plainly = hr10_table(lakehouse), verdict(lakehouse)
        costs = cost_table(lakehouse, dates)
        replay.say("\n" + costs + "\n\n" + table + "\n" + plainly)
    command = (
        f"python -m bench.airflow_replay --start {args.start} --end {args.end} --train-date "
        f"{args.train_date} --sft-steps {args.sft_steps} --grpo-steps {args.grpo_steps} "
        f"--active-days {args.active_days} --eval-samples {args.eval_samples}"
        + (f" --score-weeks {args.score_weeks}" if args.score_weeks else "")
    )
    if args.readme:
        from inference.results import write_readme

        text = readme_text(args, dates, scored, command, table, plainly)
        write_readme(Path(args.readme), text, block="backtest")
    if args.record:
        record_section(
            args.record,
            "Airflow replay and backtest",
            f"`{command} --stages {','.join(stages)}`: {len(dates)} data runs"
            + (f", {len(scored)} scored dates" if "score" in stages else "")
            + ". Wall time of this call per stage: "
            + ", ".join(f"{s} {w / 60:.0f} min" for s, w in walls.items())
            + " (a resumed call counts only its own part).\n\n"
            + "Cost of the data DAG's jobs as dates accumulate (seconds and peaks from the "
            "`job_runs` rows its tasks wrote):\n\n"
            + costs
            + ("" if table == NO_BACKTEST else "\n\n" + table),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
