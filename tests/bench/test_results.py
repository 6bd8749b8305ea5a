"""bench.results resumes: what an earlier call made is kept, in order."""

from __future__ import annotations

import argparse
import json

from bench import results
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
