"""bench.results resumes: what an earlier call made is kept, in order."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from unittest import mock

import pytest

from bench import machine, results
from tests.bench.test_replay import run_row


def test_a_job_succeeded_only_with_its_own_options_date_and_lakehouse(lakehouse):
    run = results.Run(lakehouse.root, lakehouse.root + "/results.log")
    assert not run.succeeded("graph")  # no job_runs table yet
    at = ["--ds", results.DS, "--lakehouse", lakehouse.root]
    lakehouse.append("job_runs", [
        run_row("traces", results.DS, [], 1.0, 1,
                config=json.dumps(["--evidence", "none", *at])),
        run_row("graph", results.DS, [], 1.0, 2, config=json.dumps([*at[:3], "/elsewhere"])),
        run_row("samples", results.DS, [], 1.0, 3, status="failed", config=json.dumps(at)),
    ])  # fmt: skip
    assert run.succeeded("traces", "--evidence", "none")
    assert not run.succeeded("traces", "--evidence", "chains")
    assert not run.succeeded("graph")  # another lakehouse's run
    assert not run.succeeded("samples")  # failed


def test_data_jobs_after_the_first_rerun_all_run_again(monkeypatch, tmp_path):
    ran: list[str] = []
    before = {"ingest", "graph", "chains"}  # samples failed earlier: chains is stale
    run = results.Run(str(tmp_path), tmp_path / "results.log")
    monkeypatch.setattr(run, "succeeded", lambda job, *options: job in before)
    monkeypatch.setattr(run, "job", lambda name, *args: ran.append(args[0]) or {})
    for job in ("ingest", "graph", "samples", "chains", "evidence"):
        run.data_job(job, job)
    assert ran == ["samples", "chains", "evidence"]
    assert run.times[:2] == [("ingest", None), ("graph", None)]


def test_a_version_is_promoted_once(monkeypatch, tmp_path):
    ran: list[tuple] = []
    run = results.Run(str(tmp_path), tmp_path / "results.log")
    monkeypatch.setattr(run, "job", lambda name, *args: ran.append(args) or {})
    monkeypatch.setattr(run, "succeeded", lambda *args: args == ("promote", "--candidate", "m@1"))
    results.promote(run, "promote SFT", "m@1")
    results.promote(run, "promote GRPO", "m@2")
    assert ran == [("promote", "--candidate", "m@2")]
    assert run.times == [("promote SFT", None)]


def test_the_likelihood_grpo_run_trains_evaluates_and_promotes_its_own_version(
    monkeypatch, tmp_path
):
    ran: list[tuple] = []
    run = results.Run(str(tmp_path), tmp_path / "results.log")

    def job(name, *args):
        ran.append(args)
        return {"run_id": "grpo-x", "model_version": "m@lik"} if args[0] == "grpo" else {}

    monkeypatch.setattr(run, "job", job)
    monkeypatch.setattr(run, "succeeded", lambda *args: False)
    monkeypatch.setattr(run, "evaluated", lambda model, subset: False)
    args = argparse.Namespace(grpo_steps=30, no_untuned=False)
    results.grpo(run, args, {"run_id": "sft-1"}, "hash-300", ("evaluate",), likelihood=0.5)
    assert ran[0][-4:] == ("--init_adapter", "registry:sft-1", "--likelihood_reward", "0.5")
    assert ran[1:] == [
        ("evaluate", "--llm-model", "registry:grpo-x"),
        ("promote", "--candidate", "m@lik"),
    ]


def test_a_stopped_step_writes_its_time_and_the_record_sums_every_call(tmp_path):
    """A real SIGTERM to a call whose step is under way: the attempt is in the ledger,
    the child is gone, and the next call's record adds both calls' seconds."""
    child = tmp_path / "r2rec"
    child.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/child.pid\nexec sleep 60\n")
    child.chmod(0o755)
    script = (
        "import sys; from bench import results; results.R2REC = sys.argv[1]; "
        "results.stop_on_sigterm(); "
        "run = results.Run(sys.argv[2], results.Path(sys.argv[2]) / 'results.log'); "
        "run.job('SFT with evidence', 'sft')"
    )
    call = subprocess.Popen([sys.executable, "-c", script, str(child), str(tmp_path)],
                            cwd=results.ROOT)  # fmt: skip
    pid_file = tmp_path / "child.pid"
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    time.sleep(0.3)
    call.send_signal(signal.SIGTERM)
    assert call.wait(timeout=20) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):  # the step's process went with the call
        for _ in range(100):
            os.kill(int(pid_file.read_text()), 0)
            time.sleep(0.05)
    (first,) = [json.loads(x) for x in (tmp_path / "results_times.jsonl").read_text().splitlines()]
    assert first["step"] == "SFT with evidence" and first["outcome"] == "interrupted"
    assert 0.3 <= first["seconds"] < 20

    run = results.Run(str(tmp_path), tmp_path / "results.log")
    ok = subprocess.CompletedProcess([], 0, stdout='{"run_id": "sft-1"}\n')
    with mock.patch.object(results.subprocess, "run", return_value=ok):
        assert run.job("SFT with evidence", "sft") == {"run_id": "sft-1"}
    run.kept("ingest")  # done by a call whose times were never written: 0 s, said so below
    args = argparse.Namespace(sft_steps=1000, ablation_sft_steps=0, grpo_steps=0,
                              no_untuned=True, eval_samples=300)  # fmt: skip
    text = results.record(run, args, 12.0)
    this = run.times[0][1]
    row = next(x for x in text.splitlines() if x.startswith("| SFT with evidence"))
    assert row == f"| SFT with evidence | {this:.0f} | {first['seconds'] + this:.0f} (2 calls) |"
    assert "| ingest | done by an earlier call | 0 |" in text
    # The machine in bench's words (CPU model, cores, bfloat16 path), not the host name.
    assert f"(`make results`) on {machine()}: SFT 1000 steps x 2 examples" in text
    total = text.splitlines()[-1]
    assert total.startswith("| **total** | **12** (0.00 h) |")
    assert f"**{first['seconds'] + this:.0f}**" in total and "at least" not in total


def test_a_failed_step_is_an_attempt_and_an_untimed_one_makes_the_total_a_floor(tmp_path):
    run = results.Run(str(tmp_path), tmp_path / "results.log")
    failed = subprocess.CompletedProcess([], 3, stdout="")
    with (
        mock.patch.object(results.subprocess, "run", return_value=failed),
        pytest.raises(SystemExit, match="graph failed"),
    ):
        run.job("graph", "graph")
    run.write_time("graph", None, "interrupted")  # e.g. a call killed with SIGKILL
    spent, attempts, unknown = run.all_calls()["graph"]
    assert (attempts, unknown) == (2, True) and spent == run.times[0][1]
    args = argparse.Namespace(sft_steps=10, ablation_sft_steps=0, grpo_steps=0,
                              no_untuned=True, eval_samples=300)  # fmt: skip
    text = results.record(run, args, 1.0)
    assert "(2 calls) + an attempt not timed |" in text
    assert text.splitlines()[-1].endswith("h; at least) |")
