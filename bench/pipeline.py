"""Benchmark: graph -> samples + candidates -> chains -> evidence on local[2], 2 GB driver.

    python -m bench.pipeline --sizes 100k,1m,5m [--ml100k] [--reference-timeout 900]
        [--record bench/RESULTS.md]

Each size runs in its own process (a fresh SparkSession) on seeded synthetic data with
power-law users and items; wall time per stage and the peak resident memory of the
whole process tree (driver JVM, Python driver and workers) are measured. The plain-
Python reference runs on the same data in another process, where it finishes in time.
"total s" is graph + samples + chains, as before the evidence job existed (the target of
issue 3 and the reference's scope); "with evidence s" adds the prompt evidence of every
candidate list (issue 15: its added time, and whether 1M still ends within 180 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date

from bench import machine

DS = "2026-11-25"


class PeakRSS:
    """Samples the RSS of this process and all its children (the JVM, Python workers)."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self.proc, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_spark_pipeline(lakehouse_root: str) -> dict:
    from r2rec.lakehouse import Lakehouse
    from spark_jobs import chains, evidence, graph, samples
    from spark_jobs.session import get_spark

    out: dict = {}
    with PeakRSS() as mem:
        t = time.perf_counter()
        spark = get_spark()
        out["spark_start_s"] = time.perf_counter() - t
        lh = Lakehouse(lakehouse_root)
        stages = (("graph", graph), ("samples", samples), ("chains", chains),
                  ("evidence", evidence))  # fmt: skip
        for name, job in stages:
            t = time.perf_counter()
            report = job.run(spark, lh, DS)
            out[f"{name}_s"] = time.perf_counter() - t
            out[name] = report
    out["peak_rss_mb"] = mem.peak / 2**20
    out["total_s"] = out["graph_s"] + out["samples_s"] + out["chains_s"]
    out["with_evidence_s"] = out["total_s"] + out["evidence_s"]
    return out


def run_reference(lakehouse_root: str) -> dict:
    from r2rec.contracts import INTERACTIONS
    from r2rec.lakehouse import Lakehouse
    from spark_jobs.reference import run_reference as ref

    rows = Lakehouse(lakehouse_root).read_arrow(INTERACTIONS).to_pylist()
    with PeakRSS() as mem:
        t = time.perf_counter()
        result = ref(rows, DS)
        elapsed = time.perf_counter() - t
    return {"total_s": elapsed, "peak_rss_mb": mem.peak / 2**20, "chains": len(result.chains)}


def _child(mode: str, root: str, timeout: float) -> dict | None:
    cmd = [sys.executable, "-m", "bench.pipeline", "--child", mode, "--lakehouse", root]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{mode} failed:\n{exc.stderr[-3000:]}") from None
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(size: str, root: str) -> None:
    from bench import synthetic
    from r2rec.lakehouse import Lakehouse

    if size == "ml100k":
        from spark_jobs.ingest import main as ingest

        if ingest(["--source", "movielens-100k", "--ds", DS, "--lakehouse", root]) != 0:
            raise SystemExit("ingest of ML-100k failed")
        return
    events = int(float(size.lower().replace("k", "e3").replace("m", "e6")))
    synthetic.write(Lakehouse(root), synthetic.generate(events), DS)


def table(rows: list[dict]) -> str:
    head = (
        "| data | interactions (edges) | train samples | chains | coverage | graph s "
        "| samples+cand s | chains s | total s | evidence s | evidence rows | with evidence s "
        "| peak RSS MB | reference s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        s = r["spark"]
        ref = r["reference"]
        if ref:
            ref_s = f"{ref['total_s']:.1f}"
        elif r["reference_ran"]:
            ref_s = f"> {r['reference_timeout']:.0f} (stopped)"
        else:
            ref_s = "not run"
        lines.append(
            f"| {r['size']} | {int(s['graph']['user.edges']):,} "
            f"| {s['chains']['train_samples']:,} | {s['chains']['chains']:,} "
            f"| {s['chains']['chain_coverage']:.3f} | {s['graph_s']:.1f} "
            f"| {s['samples_s']:.1f} | {s['chains_s']:.1f} | {s['total_s']:.1f} "
            f"| {s['evidence_s']:.1f} | {int(s['evidence']['samples.rows']):,} "
            f"| {s['with_evidence_s']:.1f} | {s['peak_rss_mb']:.0f} | {ref_s} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100k,1m,5m")
    p.add_argument("--ml100k", action="store_true", help="also run on MovieLens-100k")
    p.add_argument("--reference-timeout", type=float, default=600)
    p.add_argument(
        "--reference-sizes",
        default="ml100k,100k,1m",
        help="sizes on which to also run the plain-Python reference",
    )
    p.add_argument("--record", help="append the table to this Markdown file")
    p.add_argument("--child", choices=["spark", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--lakehouse", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        fn = run_spark_pipeline if args.child == "spark" else run_reference
        print(json.dumps(fn(args.lakehouse), default=str))
        return
    sizes = (["ml100k"] if args.ml100k else []) + [s for s in args.sizes.split(",") if s]
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix=f"r2rec-bench-{size}-") as root:
            prepare(size, root)
            spark = _child("spark", root, timeout=3600)
            ref = None
            if size in args.reference_sizes.split(","):
                ref = _child("reference", root, timeout=args.reference_timeout)
            rows.append(
                {
                    "size": size,
                    "spark": spark,
                    "reference": ref,
                    "reference_ran": size in args.reference_sizes.split(","),
                    "reference_timeout": args.reference_timeout,
                }
            )
            print(table(rows[-1:]), flush=True)
    result = table(rows)
    print(result)
    if args.record:
        with open(args.record, "a") as fh:
            fh.write(
                f"\n### Pipeline (graph → samples + candidates → chains → evidence), "
                f"{date.today()}\n\n"
            )
            fh.write(
                f"Machine: {machine()}; Spark local[2], driver memory 2g; "
                "defaults L=10, M=20, N=20, 3 seeds, K=3, F=50.\n\n"
            )
            fh.write(result)


if __name__ == "__main__":
    main()
