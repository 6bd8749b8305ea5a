"""Benchmark: does a job's cost grow with the history before its date?

    python -m bench.replay [--dates 20] [--start 1997-10-06] [--every-days 7]
        [--jobs ingest,graph,samples,chains,evidence,retrieval,traces]
        [--lakehouse DIR] [--record bench/RESULTS.md]

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
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# job -> (module, extra options): the data DAG's and the score DAG's Spark and CLI steps.
JOBS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ingest": ("spark_jobs.ingest", ("--source", "movielens-100k")),
    "graph": ("spark_jobs.graph", ()),
    "samples": ("spark_jobs.samples", ()),
    "chains": ("spark_jobs.chains", ()),
    "evidence": ("spark_jobs.evidence", ("--scope", "samples")),
    "retrieval": ("spark_jobs.retrieval", ("--active-days", "7")),
    "traces": ("trainer.traces", ("--teacher", "template")),
}


def replay_dates(start: str, count: int, every_days: int) -> list[str]:
    first = date.fromisoformat(start)
    return [(first + timedelta(days=k * every_days)).isoformat() for k in range(count)]


def run_job(job: str, ds: str, lakehouse: str) -> float:
    module, extra = JOBS[job]
    cmd = [sys.executable, "-m", module, "--ds", ds, "--lakehouse", lakehouse, *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2000:]
        raise SystemExit(f"{job} {ds} failed (exit {done.returncode}):\n{tail}")
    return seconds


def job_rows(lakehouse: str, dates: list[str], jobs: list[str]) -> dict[tuple[str, str], dict]:
    """(job, ds) -> the newest successful job_runs row of that job and date."""
    from r2rec.lakehouse import Lakehouse

    rows = Lakehouse(lakehouse).read_arrow("job_runs").to_pylist()
    out: dict[tuple[str, str], dict] = {}
    for r in sorted(rows, key=lambda r: r["started_at"]):
        if r["status"] == "success" and r["ds"] in dates and r["job"] in jobs:
            out[(r["job"], r["ds"])] = r
    return out


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
        mem = [(rows[(job, d)]["peak_rss_mb"] or 0.0) + (rows[(job, d)]["jvm_peak_rss_mb"] or 0.0)
               for d in dates]  # fmt: skip

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


def data_growth(lakehouse: str, dates: list[str]) -> tuple[int, int]:
    """Events before the first and the last replayed date (what the jobs learn from)."""
    from r2rec.lakehouse import Lakehouse

    edges = Lakehouse(lakehouse).read_arrow("graph_edges", columns=["ds"])["ds"].to_pylist()
    return edges.count(dates[0]), edges.count(dates[-1])


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
    p.add_argument("--lakehouse", help="default: a new temporary directory")
    p.add_argument("--record", help="append the table to this Markdown file")
    args = p.parse_args(argv)
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = sorted(set(jobs) - set(JOBS))
    if unknown or args.dates < 4 or args.every_days < 1:
        p.error(f"unknown jobs {unknown}" if unknown else "--dates >= 4, --every-days >= 1")
    dates = replay_dates(args.start, args.dates, args.every_days)
    lakehouse = args.lakehouse or tempfile.mkdtemp(prefix="r2rec-replay-")
    wall: dict[tuple[str, str], float] = {}
    for ds in dates:
        for job in jobs:
            wall[(job, ds)] = run_job(job, ds, lakehouse)
        print(f"{ds}: " + ", ".join(f"{j} {wall[(j, ds)]:.0f} s" for j in jobs), flush=True)
    rows = job_rows(lakehouse, dates, jobs)
    summary = summarise(rows, dates, jobs, wall)
    text = table(summary, data_growth(lakehouse, dates), dates)
    print(text)
    print(json.dumps(summary))
    if args.record:
        cpu = platform.processor() or platform.machine()
        with open(args.record, "a") as f:
            f.write(
                f"\n### Replay cost over history ({date.today().isoformat()}, "
                f"{platform.node()}, {cpu})\n\n`python -m bench.replay --dates {args.dates} "
                f"--start {args.start} --every-days {args.every_days} --jobs {args.jobs}`; "
                "each job in its own process, times and peaks from `job_runs`.\n\n"
                f"{text}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
