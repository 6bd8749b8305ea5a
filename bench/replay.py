"""Benchmark: does a job's cost grow with the history before its date?

    python -m bench.replay [--dates 20] [--start 1997-10-06] [--every-days 7]
        [--jobs ingest,graph,samples,chains,evidence,retrieval,evidence_serve,traces]
        [--between-jobs ingest,graph] [--score-users N] [--control]
        [--lakehouse DIR [--reuse-history | --history-only]] [--record bench/RESULTS.md]

Replays ML-100k (1997-09-20 .. 1998-04-22) date by date, as a backfill does: for each
date the data jobs run in order, each in its own process as Airflow runs them. Each
run's wall time and peak memory come from its ``job_runs`` row (Python process and
Spark driver JVM separately), so the benchmark measures what production records.

The claim under test (issues 16 and 17): per-date time and peak memory stay flat as
earlier dates accumulate, i.e. a job reads what its date needs, not every partition
before it. The table gives, per job, the mean of the first and of the last three dates
and their ratio, and the least-squares slope over all dates; the data itself grows
(each date sees more events), so a ratio near the data's growth is expected and one
near the number of dates would be the defect.

``--between-jobs`` runs only those jobs on the dates between the first and the last (the
others run on those two only, and get a first-against-last table): history accumulates
in the tables those jobs write (``ingest``'s items and interactions, ``graph``'s edges)
at a fraction of the cost, e.g. issue 16's 60 daily dates.

``--control`` answers issue 16's question without the data's growth in the way: it runs
every job on the last date again in a fresh lakehouse that ingested only that date (the
same events, brought by one run), so the same work on the same partitions is measured
with every replayed date beside it and with none. ``--reuse-history`` (with
``--lakehouse``) skips the dates between the ends whose jobs already succeeded there,
so a long history is built once (it may be built beside other work: those runs are not
what is measured) and the ends and the control are timed later on an idle machine.
``--history-only`` (with ``--lakehouse``) builds that history and stops: the first and
middle dates' ``--between-jobs`` in date order, in this one process and one Spark session,
so 58 dates of ingest and graph do not each pay a Python and JVM start (about half of
their 80 s in processes of their own). Runs that already succeeded there are skipped, so
an interrupted build resumes. Its runs are never timed: a later ``--reuse-history`` call
reruns the first date and runs the last one, each job in its own process.

``--score-users N`` then runs nightly scoring (``inference.score --mode serve``, the
bundled base model, N users) on the first and the last date, once every date is in the
tables: the same work on one date's partitions, with 1 and with all the dates beside
them (issue 16: scoring after 60 ingested dates costs about what it costs after 1).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

from bench import record_section

ROOT = Path(__file__).resolve().parents[1]


class Job(NamedTuple):
    module: str
    options: tuple[str, ...] = ()
    recorded_as: str = ""  # its job_runs name, where one job runs in two roles


# The data DAG's and the score DAG's Spark and CLI steps, in the order they run.
JOBS: dict[str, Job] = {
    "ingest": Job("spark_jobs.ingest", ("--source", "movielens-100k")),
    "graph": Job("spark_jobs.graph"),
    "samples": Job("spark_jobs.samples"),
    "chains": Job("spark_jobs.chains"),
    "evidence": Job("spark_jobs.evidence", ("--scope", "samples")),
    "retrieval": Job("spark_jobs.retrieval", ("--active-days", "7")),
    "evidence_serve": Job("spark_jobs.evidence", ("--scope", "serve"), "evidence"),
    "traces": Job("trainer.traces", ("--teacher", "template")),
}
# Not a data job: run on the first and last date only (--score-users), after the replay.
SCORE = Job("inference.score", ("--mode", "serve"))


def spec(name: str) -> Job:
    return SCORE if name == "score" else JOBS[name]


def recorded_as(name: str) -> str:
    return spec(name).recorded_as or name


def replay_dates(start: str, count: int, every_days: int) -> list[str]:
    first = date.fromisoformat(start)
    return [(first + timedelta(days=k * every_days)).isoformat() for k in range(count)]


def run_job(job: str, ds: str, lakehouse: str, extra: tuple[str, ...] = ()) -> float:
    job_spec = spec(job)
    cmd = [sys.executable, "-m", job_spec.module, "--ds", ds, "--lakehouse", lakehouse,
           *job_spec.options, *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2000:]
        raise SystemExit(f"{job} {ds} failed (exit {done.returncode}):\n{tail}")
    return seconds


def run_job_here(job: str, ds: str, lakehouse: str) -> None:
    """``job`` for ``ds`` in this process (``--history-only``): the job's own ``main``, so
    it validates, writes and records its ``job_runs`` row exactly as its process would."""
    import importlib

    job_spec = spec(job)
    argv = ["--ds", ds, "--lakehouse", lakehouse, *job_spec.options]
    if importlib.import_module(job_spec.module).main(argv) != 0:
        raise SystemExit(f"{job} {ds} failed; its error is above")


def build_history(lakehouse: str, dates: list[str], between: list[str], jobs: list[str]) -> int:
    """``--history-only``: every date but the last, ``between`` in ``jobs`` order, skipping
    runs that already succeeded in ``lakehouse``. Returns the number of runs made."""
    done = replayed(lakehouse, dates[:-1], between)
    made = 0
    for ds in dates[:-1]:
        todo = [j for j in jobs if j in between and (j, ds) not in done]
        for job in todo:
            run_job_here(job, ds, lakehouse)
            made += 1
        print(f"{ds}: {', '.join(todo) or 'already built'}", flush=True)
    return made


def _ran_as(row: dict, name: str) -> bool:
    """Whether a job_runs row is bench job ``name``: its job_runs name, and its options in
    its command line (evidence runs once per scope under one name)."""
    if row["job"] != recorded_as(name):
        return False
    options = spec(name).options
    argv = json.loads(row["config"] or "[]")
    n = len(options)
    return n == 0 or any(tuple(argv[i : i + n]) == options for i in range(len(argv)))


def job_rows(lakehouse: str, dates: list[str], jobs: list[str]) -> dict[tuple[str, str], dict]:
    """(job, ds) -> the newest successful job_runs row of that job and date."""
    from r2rec.lakehouse import Lakehouse

    rows = Lakehouse(lakehouse).read_arrow("job_runs").to_pylist()
    out: dict[tuple[str, str], dict] = {}
    for r in sorted(rows, key=lambda r: r["started_at"]):
        if r["status"] != "success" or r["ds"] not in dates:
            continue
        for job in jobs:
            if _ran_as(r, job):
                out[(job, r["ds"])] = r
    return out


def _mib(row: dict) -> float:
    return (row["peak_rss_mb"] or 0.0) + (row["jvm_peak_rss_mb"] or 0.0)


def slope(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    return num / sum((x - mean_x) ** 2 for x in range(n))


def summarise(rows: dict, dates: list[str], jobs: list[str], wall: dict) -> list[dict]:
    out = []
    head, tail = dates[:3], dates[-3:]
    for job in jobs:
        secs = [rows[(job, d)]["elapsed_s"] for d in dates]
        mem = [_mib(rows[(job, d)]) for d in dates]

        def mean(values, which, ds=dates):
            picked = [v for v, d in zip(values, ds, strict=True) if d in which]
            return sum(picked) / len(picked)

        out.append({
            "job": job,
            "s_first3": mean(secs, head), "s_last3": mean(secs, tail),
            "s_ratio": mean(secs, tail) / max(mean(secs, head), 1e-9),
            "s_per_date": slope(secs),
            "mib_first3": mean(mem, head), "mib_last3": mean(mem, tail),
            "mib_ratio": mean(mem, tail) / max(mean(mem, head), 1e-9),
            "wall_s_total": sum(wall[(job, d)] for d in dates),
        })  # fmt: skip
    return out


def score_table(rows: dict, first: str, last: str, users: int) -> str:
    """Scoring of N users on the first and on the last date, every date already replayed."""
    a, b = rows[("score", first)], rows[("score", last)]
    scored = [json.loads(r["report"] or "{}").get("users") for r in (a, b)]
    return "\n".join([
        f"Nightly scoring (`inference.score --mode serve --max-users {users}`, the bundled "
        "base model) once all dates were replayed:",
        "",
        "| date | users scored | s | peak MiB (Python + JVM) |",
        "|---|---|---|---|",
        f"| {first} (first) | {scored[0]} | {a['elapsed_s']:.1f} | {_mib(a):.0f} |",
        f"| {last} (last) | {scored[1]} | {b['elapsed_s']:.1f} | {_mib(b):.0f} |",
        f"| ratio last / first | | {b['elapsed_s'] / max(a['elapsed_s'], 1e-9):.2f} | "
        f"{_mib(b) / max(_mib(a), 1e-9):.2f} |",
    ])  # fmt: skip


def data_growth(lakehouse: str, dates: list[str]) -> tuple[int, int]:
    """Events before the first and the last replayed date (what the jobs learn from)."""
    from r2rec.lakehouse import Lakehouse

    edges = Lakehouse(lakehouse).read_arrow("graph_edges", columns=["ds"])["ds"].to_pylist()
    return edges.count(dates[0]), edges.count(dates[-1])


def endpoint_table(rows: dict, first: str, last: str, jobs: list[str]) -> str:
    """Jobs run on the first and the last date only: the same job with 1 date of history
    and with every replayed date before it."""
    lines = [
        f"Jobs run on the first and the last date only ({first}, {last}):",
        "",
        "| job | s, first | s, last | ratio | peak MiB first (Python + JVM) | peak MiB last "
        "| ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_pair_line(job, rows[(job, first)], rows[(job, last)]) for job in jobs]
    return "\n".join(lines)


def _pair_line(job: str, a: dict, b: dict) -> str:
    """One job's two runs: seconds, peak MiB (Python + JVM), and b's ratio to a."""
    return (
        f"| {job} | {a['elapsed_s']:.1f} | {b['elapsed_s']:.1f} | "
        f"{b['elapsed_s'] / max(a['elapsed_s'], 1e-9):.2f} | {_mib(a):.0f} | {_mib(b):.0f} "
        f"| {_mib(b) / max(_mib(a), 1e-9):.2f} |"
    )


def control_table(rows: dict, control: dict, last: str, jobs: list[str], dates: int) -> str:
    """The last date's jobs with every replayed date in the tables, against the same jobs
    in a lakehouse that holds only that date (``--control``)."""
    lines = [
        f"The last date, {last}, with {dates} dates in the tables and with 1 (a lakehouse "
        "that ingested only this date: the same events, in one run):",
        "",
        f"| job | s, 1 date | s, {dates} dates | ratio | peak MiB, 1 date (Python + JVM) | "
        f"peak MiB, {dates} dates | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_pair_line(job, control[(job, last)], rows[(job, last)]) for job in jobs]
    return "\n".join(lines)


def replayed(lakehouse: str, dates: list[str], jobs: list[str]) -> set[tuple[str, str]]:
    """(job, ds) pairs that already succeeded in ``lakehouse`` (none in a new one)."""
    from r2rec.lakehouse import Lakehouse

    if not Lakehouse(lakehouse).exists("job_runs"):
        return set()
    return set(job_rows(lakehouse, dates, jobs))


def table(summary: list[dict], growth: tuple[int, int], dates: list[str]) -> str:
    lines = [
        f"Replay of {len(dates)} dates {dates[0]} .. {dates[-1]}; graph edges "
        f"{growth[0]:,} on the first date, {growth[1]:,} on the last "
        f"({growth[1] / max(growth[0], 1):.1f}x).",
        "",
        "| job | s, first 3 dates | s, last 3 | ratio | slope s/date | peak MiB first 3 "
        "(Python + JVM) | peak MiB last 3 | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['job']} | {s['s_first3']:.1f} | {s['s_last3']:.1f} | {s['s_ratio']:.2f} | "
            f"{s['s_per_date']:+.2f} | {s['mib_first3']:.0f} | {s['mib_last3']:.0f} | "
            f"{s['mib_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dates", type=int, default=20)
    p.add_argument("--start", default="1997-10-06", help="first date (a Monday of ML-100k)")
    p.add_argument("--every-days", type=int, default=7)
    p.add_argument("--jobs", default=",".join(JOBS))
    p.add_argument(
        "--between-jobs",
        help="jobs run on the dates between the first and the last (default: --jobs)",
    )
    p.add_argument(
        "--score-users",
        type=int,
        default=0,
        help="score N users on the first and last date after the replay (0: no)",
    )
    p.add_argument(
        "--control",
        action="store_true",
        help="also run every job on the last date in a lakehouse holding only that date",
    )
    p.add_argument("--lakehouse", help="default: a new temporary directory")
    p.add_argument(
        "--reuse-history",
        action="store_true",
        help="with --lakehouse: do not rerun a middle date's job that already succeeded there",
    )
    p.add_argument(
        "--history-only",
        action="store_true",
        help="with --lakehouse: build the first and middle dates' --between-jobs in this "
        "process, then stop (untimed; time the ends later with --reuse-history)",
    )
    p.add_argument("--record", help="append the table to this Markdown file")
    args = p.parse_args(argv)
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    between = jobs if args.between_jobs is None else [
        j.strip() for j in args.between_jobs.split(",") if j.strip()]  # fmt: skip
    unknown = sorted(set(jobs) - set(JOBS))
    if unknown or args.dates < 4 or args.every_days < 1 or args.score_users < 0:
        p.error(f"unknown jobs {unknown}" if unknown else
                "--dates >= 4, --every-days >= 1, --score-users >= 0")  # fmt: skip
    if set(between) - set(jobs):
        p.error(f"--between-jobs {sorted(set(between) - set(jobs))} are not in --jobs")
    if args.score_users and not {"retrieval", "evidence_serve"} <= set(jobs):
        p.error("--score-users needs the retrieval and evidence_serve jobs (what it scores)")
    if (args.reuse_history or args.history_only) and not args.lakehouse:
        p.error("--reuse-history and --history-only need --lakehouse (where history is kept)")
    if args.history_only and (args.reuse_history or args.control or args.score_users
                              or args.record):  # fmt: skip
        p.error("--history-only builds history and stops: it times, scores and records nothing")
    dates = replay_dates(args.start, args.dates, args.every_days)
    if args.history_only:
        made = build_history(args.lakehouse, dates, between, jobs)
        print(f"history of {args.lakehouse}: {made} job runs made; time the ends with "
              "--reuse-history")  # fmt: skip
        return 0
    lakehouse = args.lakehouse or tempfile.mkdtemp(prefix="r2rec-replay-")
    done = replayed(lakehouse, dates[1:-1], between) if args.reuse_history else set()
    scoring = ("--max-users", str(args.score_users))
    wall: dict[tuple[str, str], float] = {}
    for ds in dates:
        # In --jobs order, whichever subset runs on this date; the ends always run.
        todo = jobs if ds in (dates[0], dates[-1]) else [
            j for j in jobs if j in between and (j, ds) not in done]  # fmt: skip
        for job in todo:
            wall[(job, ds)] = run_job(job, ds, lakehouse)
        print(f"{ds}: " + ", ".join(f"{j} {wall[(j, ds)]:.0f} s" for j in todo), flush=True)
    if args.score_users:
        for ds in (dates[0], dates[-1]):
            run_job("score", ds, lakehouse, scoring)
    measured = [*jobs, "score"] if args.score_users else jobs
    rows = job_rows(lakehouse, dates, measured)
    growth = data_growth(lakehouse, dates)
    if done:
        # Reused runs were timed by another call, maybe beside other work: no series.
        summary: list[dict] = []
        text = (f"Replay of {len(dates)} dates {dates[0]} .. {dates[-1]} ({len(done)} job runs "
                f"of the middle dates reused); graph edges {growth[0]:,} on the first date, "
                f"{growth[1]:,} on the last.\n\n"
                + endpoint_table(rows, dates[0], dates[-1], jobs))  # fmt: skip
    else:
        summary = summarise(rows, dates, [j for j in jobs if j in between], wall)
        text = table(summary, growth, dates)
        if ends := [j for j in jobs if j not in between]:
            text += "\n\n" + endpoint_table(rows, dates[0], dates[-1], ends)
    if args.score_users:
        text += "\n\n" + score_table(rows, dates[0], dates[-1], args.score_users)
    if args.control:
        control = tempfile.mkdtemp(prefix="r2rec-replay-control-")
        for job in jobs:
            run_job(job, dates[-1], control)
        if args.score_users:
            run_job("score", dates[-1], control, scoring)
        ran = job_rows(control, dates[-1:], measured)
        text += "\n\n" + control_table(rows, ran, dates[-1], measured, len(dates))
    print(text)
    print(json.dumps(summary))
    if args.record:
        record_section(
            args.record,
            "Replay cost over history",
            f"`python -m bench.replay --dates {args.dates} --start {args.start} --every-days "
            f"{args.every_days} --jobs {args.jobs}"
            + (f" --between-jobs {args.between_jobs}" if args.between_jobs is not None else "")
            + f" --score-users {args.score_users}"
            + (" --control" if args.control else "")
            + (" --reuse-history" if args.reuse_history else "")
            + "`; each job "
            "in its own process, times and peaks from `job_runs`.\n\n" + text,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
