"""The evaluation job end to end on a small graph built by the real Spark jobs."""

from __future__ import annotations

import json
import shutil
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from inference import evaluate
from inference.baselines import training_edges
from inference.ranking import Ranking
from r2rec.contracts import (
    CANDIDATES,
    EVAL_METRICS,
    EVAL_OUTCOMES,
    GRAPH_EDGES,
    JOB_METRICS,
    SAMPLES,
)
from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse
from r2rec.prompt import PROMPT_VERSION
from spark_jobs import evidence as evidence_job
from spark_jobs import graph as graph_job
from spark_jobs import samples as samples_job
from spark_jobs.params import CandidateParams, SampleParams
from tests.spark_jobs.test_pipeline_vs_reference import (
    DS,
    synthetic_interactions,
    write_interactions,
)

SEEDS = (0, 7)


class Oracle:
    """An LLM stand-in that always answers the target."""

    name = "llm:oracle"

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def rank(self, samples):
        self.seen += [(s.sample_id, s.seed) for s in samples]
        return [
            Ranking(
                s.sample_id,
                s.seed,
                [s.target_item_id, *[c for c in s.candidates if c != s.target_item_id]],
            )
            for s in samples
        ]


class Invalid:
    """An LLM stand-in whose answers never parse; it keeps the display order."""

    name = "llm:invalid"

    def rank(self, samples):
        return [Ranking(s.sample_id, s.seed, list(s.candidates), False) for s in samples]


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """graph_edges, samples and candidates of DS, made once by the real jobs."""
    lh = Lakehouse(str(tmp_path_factory.mktemp("eval") / "lakehouse"))
    write_interactions(lh, synthetic_interactions(seed=5, users=14, items=24, events=260))
    graph_job.run(spark, lh, DS)
    samples_job.run(spark, lh, DS, SampleParams(history_len=3), CandidateParams(n=6, seeds=SEEDS))
    evidence_job.run(spark, lh, DS)
    return lh.root


@pytest.fixture
def lh(built, tmp_path):
    root = tmp_path / "lakehouse"
    shutil.copytree(built, root)
    return Lakehouse(str(root))


def metrics(lh, model=None) -> list[dict]:
    rows = lh.read_arrow(EVAL_METRICS, partitions=[("ds", "=", DS)]).to_pylist()
    return [r for r in rows if model is None or r["model"] == model]


def row(rows, model, split, metric, seed=None, protocol="sampled", subset="all") -> dict:
    (hit,) = [
        r
        for r in rows
        if (r["model"], r["split"], r["metric"], r["seed"], r["protocol"], r["subset"])
        == (model, split, metric, seed, protocol, subset)
    ]
    return hit


def value(rows, model, split, metric, seed=None, protocol="sampled", subset="all") -> float:
    return row(rows, model, split, metric, seed, protocol, subset)["value"]


def candidates(lh) -> list[dict]:
    rows = lh.read_arrow(CANDIDATES, partitions=[("ds", "=", DS)]).to_pylist()
    return [r for r in rows if r["split"] in ("valid", "test")]


def test_metrics_rows_report_and_job_metrics(lh):
    oracle = Oracle()
    report = evaluate.run(
        None,
        lh,
        DS,
        ["popularity", "itemknn", "sasrec"],
        rankers=[oracle, Invalid()],
        baseline_options={"sasrec": {"epochs": 1, "threads": 1}},
    )
    rows = metrics(lh)
    assert all(set(r) == set(EVAL_METRICS.column_names) for r in rows)
    assert {r["model"] for r in rows} == {
        "popularity",
        "itemknn",
        "sasrec",
        "llm:oracle",
        "llm:invalid",
    }
    assert len({r["run_id"] for r in rows}) == 1 and len(rows[0]["run_id"]) == 32

    cands = candidates(lh)
    per_seed = Counter((c["split"], c["seed"]) for c in cands)
    assert set(per_seed) == {(sp, s) for sp in ("valid", "test") for s in SEEDS}
    for split in ("valid", "test"):
        for seed in (*SEEDS, None):
            assert value(rows, "llm:oracle", split, "hr@1", seed) == 1.0
            assert value(rows, "llm:oracle", split, "ndcg@5", seed) == 1.0
            assert value(rows, "llm:invalid", split, "hr@1", seed) == 0.0
            assert value(rows, "llm:invalid", split, "valid_ratio", seed) == 0.0
            assert value(rows, "popularity", split, "valid_ratio", seed) == 1.0
        for seed in SEEDS:
            # the invalid ranker keeps the display order: hr@5 is the share of lists
            # whose target label is C1..C5
            lists = [c for c in cands if (c["split"], c["seed"]) == (split, seed)]
            in_top5 = sum(c["labels"].index(c["target_label"]) < 5 for c in lists)
            assert value(rows, "llm:invalid", split, "hr@5", seed) == in_top5 / len(lists)
            counts = {
                r["samples"]
                for r in rows
                if (r["split"], r["seed"], r["protocol"]) == (split, seed, "sampled")
            }
            assert counts == {per_seed[(split, seed)]}

    # popularity's test HR@1 for seed 0, recomputed by hand from the tables
    edges = lh.read_arrow(GRAPH_EDGES, partitions=[("ds", "=", DS)]).to_pandas()
    count = Counter(training_edges(edges)["item_id"])
    lists = [c for c in cands if (c["split"], c["seed"]) == ("test", 0)]
    best = [min(c["items"], key=lambda i: (-count[i], i)) for c in lists]
    hits = sum(b == c["target_item_id"] for b, c in zip(best, lists, strict=True))
    assert value(rows, "popularity", "test", "hr@1", 0) == hits / len(lists)
    seed_mean = sum(value(rows, "popularity", "test", "hr@1", s) for s in SEEDS) / 2
    assert value(rows, "popularity", "test", "hr@1") == pytest.approx(seed_mean, abs=1e-15)
    # The 95% interval is over samples, each sample's hits averaged over its seeds.
    per_sample = {}
    for c in [c for c in cands if c["split"] == "test"]:
        top = min(c["items"], key=lambda i: (-count[i], i))
        per_sample.setdefault(c["sample_id"], []).append(float(top == c["target_item_id"]))
    means = [sum(v) / len(v) for v in per_sample.values()]
    mean = sum(means) / len(means)
    sd = (sum((m - mean) ** 2 for m in means) / (len(means) - 1)) ** 0.5
    ci = row(rows, "popularity", "test", "hr@1")
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx(
        (mean - 1.959964 * sd / len(means) ** 0.5, mean + 1.959964 * sd / len(means) ** 0.5)
    )
    assert row(rows, "popularity", "test", "hr@1", 0)["ci_low"] is None  # per-seed rows: none
    assert (row(rows, "llm:oracle", "test", "hr@1")["ci_low"], 1.0) == (1.0, 1.0)

    # full protocol: classical baselines only, seed null, one row per user of the split
    users = Counter(
        s["split"] for s in lh.read_arrow(SAMPLES, partitions=[("ds", "=", DS)]).to_pylist()
    )
    full = [r for r in rows if r["protocol"] == "full"]
    assert {(r["model"], r["split"], r["metric"]) for r in full} == {
        (m, sp, k)
        for m in ("popularity", "itemknn", "sasrec")
        for sp in ("valid", "test")
        for k in ("hr@10", "ndcg@10")
    }
    assert all(r["seed"] is None and r["samples"] == users[r["split"]] for r in full)
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)

    detail = json.loads(metrics(lh, "sasrec")[0]["detail"])
    assert detail["config"]["epochs"] == 1 and len(detail["train_loss"]) == 1
    assert detail["protocol"] == {
        "seeds": list(SEEDS),
        "candidates": 6,
        "splits": ["valid", "test"],
    }
    assert json.loads(metrics(lh, "llm:oracle")[0]["detail"])["prompt_version"] == PROMPT_VERSION

    md = Path(report["report"]).read_text()
    table_rows = [line.split(" | ")[0] for line in md.splitlines() if line.startswith("| ")]
    assert table_rows[1:6] == [
        "| popularity",
        "| itemknn",
        "| sasrec",
        "| llm:invalid",
        "| llm:oracle",
    ]  # classical baselines first, then the LLMs
    assert "| popularity | " in md.split("Full ranking")[1]
    assert "llm:oracle" not in md.split("Full ranking")[1]
    assert report["report"] == f"{lh.root}/reports/eval_{DS}.md"
    with open(report["chart"], "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"

    jm = lh.read_arrow(
        JOB_METRICS, partitions=[("ds", "=", DS), ("job", "=", "evaluate.llm:oracle")]
    ).to_pylist()
    by_name = {r["metric"]: r["value"] for r in jm}
    assert by_name["test.sampled.hr@1"] == 1.0 and "seconds.rank" in by_name
    assert report["models"]["llm:oracle"]["test.sampled.hr@1"] == 1.0


def test_rerun_replaces_exactly_that_model(lh):
    evaluate.run(None, lh, DS, ["popularity"], rankers=[Oracle()])
    before = metrics(lh)
    evaluate.run(None, lh, DS, [], rankers=[Oracle()])
    after = metrics(lh)
    assert len(after) == len(before)
    key = ("model", "split", "protocol", "seed", "metric", "value", "run_id")
    pop = {tuple(r[k] for k in key) for r in before if r["model"] == "popularity"}
    assert len(pop) == 34  # 2 splits x ((2 seeds + mean) x 5 sampled + 2 full)
    assert pop == {tuple(r[k] for k in key) for r in after if r["model"] == "popularity"}
    old_run = {r["run_id"] for r in before if r["model"] == "llm:oracle"}
    new_run = {r["run_id"] for r in after if r["model"] == "llm:oracle"}
    assert len(new_run) == 1 and new_run != old_run
    md = Path(f"{lh.root}/reports/eval_{DS}.md").read_text()
    assert "| popularity |" in md and "| llm:oracle |" in md


def test_outcomes_hold_each_ranking_under_the_metrics_run_id(lh):
    evaluate.run(None, lh, DS, ["popularity"], rankers=[Oracle(), Invalid()], max_samples=3)
    out = lh.read_arrow(EVAL_OUTCOMES, partitions=[("ds", "=", DS)]).to_pylist()
    by_model = {m: [o for o in out if o["model"] == m] for m in {o["model"] for o in out}}
    cands = {(c["sample_id"], c["seed"]): c for c in candidates(lh)}
    # the baseline ranked every (sample, seed); the LLMs their 3 hashed samples per split
    assert len(by_model["popularity"]) == len(cands)
    assert len(by_model["llm:oracle"]) == len(by_model["llm:invalid"]) == 3 * 2 * len(SEEDS)
    assert {(o["target_rank"], o["hit1"]) for o in by_model["llm:oracle"]} == {(1, 1.0)}
    for o in by_model["llm:invalid"]:  # display order kept, and an invalid answer never hits
        c = cands[(o["sample_id"], o["seed"])]
        assert o["target_rank"] == c["items"].index(c["target_item_id"]) + 1
        assert (o["answer_valid"], o["hit1"]) == (False, 0.0)
    # an outcome's HR@1 is what the metrics average: per seed, over the same samples
    pop = metrics(lh, "popularity")
    for split in ("valid", "test"):
        hits = [o["hit1"] for o in by_model["popularity"] if (o["split"], o["seed"]) == (split, 7)]
        assert value(pop, "popularity", split, "hr@1", 7) == pytest.approx(sum(hits) / len(hits))
    for model, rows in by_model.items():
        assert {o["run_id"] for o in rows} == {r["run_id"] for r in metrics(lh, model)}
    # a rerun of one model replaces its outcomes, and only its
    evaluate.run(None, lh, DS, [], rankers=[Oracle()])
    again = lh.read_arrow(EVAL_OUTCOMES, partitions=[("ds", "=", DS)]).to_pylist()
    assert len([o for o in again if o["model"] == "llm:oracle"]) == len(cands)
    assert sorted(map(str, (o for o in again if o["model"] != "llm:oracle"))) == sorted(
        map(str, (o for o in out if o["model"] != "llm:oracle"))
    )


def test_max_samples_is_the_same_hashed_subset_for_every_seed_and_every_model(lh):
    oracle = Oracle()
    evaluate.run(None, lh, DS, ["popularity"], rankers=[oracle], max_samples=3)
    by_seed = {s: {sid for sid, seed in oracle.seen if seed == s} for s in SEEDS}
    assert by_seed[0] == by_seed[7] and len(by_seed[0]) == 6  # 3 valid + 3 test
    rows = metrics(lh, "llm:oracle")
    assert {r["samples"] for r in rows} == {3} and {r["subset"] for r in rows} == {"hash-3"}
    # The baseline is reported on every sample, and on exactly the LLM's samples too.
    pop = metrics(lh, "popularity")
    assert {r["subset"] for r in pop} == {"all", "hash-3"}
    assert {r["samples"] for r in pop if r["subset"] == "hash-3"} == {3}
    edges = lh.read_arrow(GRAPH_EDGES, partitions=[("ds", "=", DS)]).to_pandas()
    count = Counter(training_edges(edges)["item_id"])
    lists = [c for c in candidates(lh) if c["split"] == "test" and c["seed"] == 0
             and c["sample_id"] in by_seed[0]]  # fmt: skip
    hits = [min(c["items"], key=lambda i: (-count[i], i)) == c["target_item_id"] for c in lists]
    assert value(pop, "popularity", "test", "hr@1", 0, subset="hash-3") == sum(hits) / 3
    # deterministic: a rerun sees exactly the same samples
    again = Oracle()
    evaluate.run(None, lh, DS, [], rankers=[again], max_samples=3)
    assert again.seen == oracle.seen


def test_a_rerun_on_every_sample_keeps_the_subsets_an_llm_was_evaluated_on(lh):
    """The LLM ran on hash-3; rerunning popularity on every sample (a rerun replaces all
    of its rows) still reports it on those 3 samples, with the same values."""
    evaluate.run(None, lh, DS, ["popularity"], rankers=[Oracle()], max_samples=3)
    before = {(r["split"], r["metric"], r["seed"]): r["value"]
              for r in metrics(lh, "popularity") if r["subset"] == "hash-3"}  # fmt: skip
    evaluate.run(None, lh, DS, ["popularity"], max_samples=0)
    pop = metrics(lh, "popularity")
    assert {r["subset"] for r in pop} == {"all", "hash-3"}
    assert len({r["run_id"] for r in pop}) == 1  # the rerun's rows only
    after = {(r["split"], r["metric"], r["seed"]): r["value"]
             for r in pop if r["subset"] == "hash-3"}  # fmt: skip
    assert after == before and len(after) > 4


# A registered SFT run of a tiny model (its paths are never opened: the ranker is fake).
TINY = {
    "model_version": "tiny+adapter@abcdefabcdef",
    "run_id": f"sft-{DS}-x",
    "ds": DS,
    "stage": "sft",
    "base_model": "tiny",
    "base_version": "tiny@123456789012",
    "model_path": "/models/tiny",
    "adapter_path": "/runs/x/adapter",
    "run_dir": "/runs/x",
    "manifest": "{}",
}


def test_llm_model_is_built_lazily_from_inference_llm(lh, monkeypatch):
    made = []

    class FakeLLMRanker(Oracle):
        def __init__(self, lakehouse, ds, model=None, adapter=None, evidence=None, registered=None):
            super().__init__()
            self.name = f"llm:{model}"
            made.append((lakehouse, ds, model, adapter, evidence, registered))

    fake = types.ModuleType("inference.llm")
    fake.LLMRanker = FakeLLMRanker
    monkeypatch.setitem(sys.modules, "inference.llm", fake)
    evaluate.run(None, lh, DS, ["llm"], llm_model="tiny", adapter="/a", seeds=[7])
    # A model directory: prompt v2's default, and no registry version to keep.
    assert made == [(lh, DS, "tiny", "/a", "chains", None)]
    rows = metrics(lh, "llm:tiny")
    assert {r["seed"] for r in rows} == {7, None}
    assert value(rows, "llm:tiny", "test", "hr@1", 7) == 1.0
    detail = json.loads(rows[0]["detail"])
    assert (detail["llm_model"], detail["adapter"]) == ("tiny", "/a")

    # A registry reference: its paths, its recorded version and the prompt it was trained on.
    from r2rec import registry

    registry.register(lh, {**TINY, "manifest": '{"config": {"r2rec": {"evidence": "none"}}}'})
    ref = f"registry:sft-{DS}-x"
    with pytest.raises(R2RecError, match="trained on --evidence none prompts"):
        evaluate.run(None, lh, DS, ["llm"], llm_model=ref, evidence="chains", seeds=[7])
    made.clear()
    evaluate.run(None, lh, DS, ["llm"], llm_model=ref, seeds=[7])
    assert made == [
        (lh, DS, "/models/tiny", "/runs/x/adapter", "none", "tiny+adapter@abcdefabcdef")
    ]


def test_incumbent_of_evaluates_the_champion_or_before_one_the_base(lh, monkeypatch, capsys):
    from r2rec import registry

    made = []

    class FakeLLMRanker(Oracle):
        def __init__(self, lakehouse, ds, model=None, adapter=None, evidence=None, registered=None):
            super().__init__()
            self.name = f"llm:{registered or model}"
            made.append((model, adapter))

    fake = types.ModuleType("inference.llm")
    fake.LLMRanker = FakeLLMRanker
    monkeypatch.setitem(sys.modules, "inference.llm", fake)
    registry.register(lh, TINY)
    args = ["--ds", DS, "--lakehouse", lh.root, "--models", "llm", "--seeds", "7"]
    assert evaluate.main([*args, "--incumbent-of", f"registry:sft-{DS}-x"]) == 0
    assert made == [("/models/tiny", None)]  # no champion yet: the untuned base
    old = {"model_version": "tiny+old@000000000000", "run_id": "sft-2026-01-01-y"}
    registry.register(lh, {**TINY, **old, "status": "champion", "adapter_path": "/runs/y/adapter"})
    assert evaluate.main([*args, "--incumbent-of", f"registry:sft-{DS}-x"]) == 0
    assert made[-1] == ("/models/tiny", "/runs/y/adapter")  # the champion, on this date
    assert "llm:tiny+old@000000000000" in {r["model"] for r in metrics(lh)}
    capsys.readouterr()
    assert evaluate.main([*args, "--incumbent-of", "champion", "--llm-model", "x"]) == 1
    assert "--incumbent-of chooses the model" in capsys.readouterr().err
    bad = ["--ds", DS, "--lakehouse", lh.root, "--models", "popularity", "--incumbent-of", "x"]
    assert evaluate.main(bad) == 1
    assert "add llm to --models" in capsys.readouterr().err


def test_the_evidence_ranker_orders_candidates_by_their_evidence(lh):
    from r2rec.contracts import CANDIDATE_EVIDENCE

    evaluate.run(None, lh, DS, ["evidence"])
    score = {
        (r["context_id"], r["item_id"]): (r["score"], r["users"])
        for r in lh.read_arrow(CANDIDATE_EVIDENCE).to_pylist()
    }
    assert len(score) > 20
    lists = [c for c in candidates(lh) if (c["split"], c["seed"]) == ("test", 7)]

    def first(c) -> str:  # strongest evidence, then users, then display order
        keyed = [(-score.get((c["sample_id"], i), (0, 0))[0],
                  -score.get((c["sample_id"], i), (0, 0))[1], k, i)
                 for k, i in enumerate(c["items"])]  # fmt: skip
        return min(keyed)[3]

    hits = sum(first(c) == c["target_item_id"] for c in lists) / len(lists)
    assert value(metrics(lh, "evidence"), "evidence", "test", "hr@1", 7) == pytest.approx(hits)
    assert {r["protocol"] for r in metrics(lh, "evidence")} == {"sampled"}


def test_asof_popularity_counts_each_samples_past_only(lh):
    evaluate.run(None, lh, DS, ["popularity-asof", "itemknn-asof"])
    edges = lh.read_arrow(GRAPH_EDGES, partitions=[("ds", "=", DS)]).to_pylist()
    target_ts = {
        r["sample_id"]: r["target_ts"]
        for r in lh.read_arrow(SAMPLES, partitions=[("ds", "=", DS)]).to_pylist()
    }
    lists = [c for c in candidates(lh) if (c["split"], c["seed"]) == ("valid", 0)]

    def first(c) -> str:  # most users strictly before the target, then item id
        t = target_ts[c["sample_id"]]
        users = {i: len({e["user_id"] for e in edges if e["item_id"] == i and e["ts"] < t})
                 for i in c["items"]}  # fmt: skip
        return min(c["items"], key=lambda i: (-users[i], i))

    hits = sum(first(c) == c["target_item_id"] for c in lists) / len(lists)
    rows = metrics(lh, "popularity-asof")
    assert value(rows, "popularity-asof", "valid", "hr@1", 0) == pytest.approx(hits)
    assert {r["protocol"] for r in rows + metrics(lh, "itemknn-asof")} == {"sampled"}
    # every sample was ranked, not only an LLM-sized subset
    tests = [c for c in candidates(lh) if (c["split"], c["seed"]) == ("test", 7)]
    assert row(metrics(lh, "itemknn-asof"), "itemknn-asof", "test", "hr@1", 7)["samples"] == len(
        tests
    )


def test_main_reports_and_errors(lh, capsys):
    assert evaluate.main(["--ds", DS, "--lakehouse", lh.root, "--models", "popularity"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["models"]) == {"popularity"}
    assert 0.0 <= out["models"]["popularity"]["test.full.hr@10"] <= 1.0
    assert evaluate.main(["--ds", DS, "--lakehouse", lh.root, "--models", "bpr"]) == 1
    assert "unknown model(s) ['bpr']" in capsys.readouterr().err
    base = ["--lakehouse", lh.root, "--models", "popularity"]
    assert evaluate.main(["--ds", DS, *base, "--seeds", "0,3"]) == 1
    assert "no candidates for seed(s) [3]" in capsys.readouterr().err
    assert evaluate.main(["--ds", "2026-01-01", *base]) == 1
    assert "no valid/test samples" in capsys.readouterr().err


def test_r2rec_evaluate_passes_through_to_the_job(capsys):
    from typer.testing import CliRunner

    from r2rec.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    assert "--max-samples" in capsys.readouterr().out + result.output


def test_model_versions_become_safe_job_names():
    from inference.evaluate import job_suffix

    assert job_suffix("llm:smollm2@b179c9+lora/x@1f") == "llm:smollm2_b179c9_lora_x_1f"
    assert job_suffix("sasrec") == "sasrec"


def test_report_links_the_training_runs_of_evaluated_models(tmp_path):
    import datetime as dt

    from inference.report import markdown

    rows = [
        {"ds": "2026-11-25", "model": m, "split": "valid", "protocol": "sampled", "seed": None,
         "metric": "hr@1", "value": v, "samples": 10, "run_id": "e", "detail": None}
        for m, v in (("popularity", 0.25), ("llm:base@1+adapter@2", 0.125))
    ]  # fmt: skip
    run = {
        "model_version": "base@1+adapter@2",
        "stage": "sft",
        "run_id": "sft-2026-11-25-abcd",
        "status": "champion",
        "run_dir": str(tmp_path / "runs" / "sft-2026-11-25-abcd"),
        "registered_at": dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
    }
    text = markdown("2026-11-25", rows, [run])
    assert "| llm:base@1+adapter@2 | sft | sft-2026-11-25-abcd | champion |" in text
    assert f"[curves.png](file://{tmp_path}/runs/sft-2026-11-25-abcd/curves.png)" in text
    assert "Trained models" not in markdown("2026-11-25", rows)


def test_job_runs_records_a_run_and_a_failure_injected_mid_job(lh, capsys, monkeypatch):
    from r2rec import faults
    from r2rec.contracts import JOB_RUNS
    from r2rec.runlog import JOB_INPUTS

    args = ["--ds", DS, "--lakehouse", lh.root, "--models", "popularity,itemknn"]
    assert evaluate.main(args) == 0
    capsys.readouterr()
    monkeypatch.setenv(faults.RAISE_ENV, "evaluate.model_written:1")
    monkeypatch.setattr(faults, "_passed", {})
    with pytest.raises(faults.InjectedFault):
        evaluate.main(args)
    err = capsys.readouterr().err

    ok, failed = sorted(lh.read_arrow(JOB_RUNS).to_pylist(), key=lambda r: r["started_at"])
    for r in (ok, failed):
        r["inputs"], r["outputs"] = dict(r["inputs"]), dict(r["outputs"])
    assert (ok["job"], ok["ds"], ok["status"], failed["status"]) == (
        "evaluate",
        DS,
        "success",
        "failed",
    )
    assert (
        failed["error"] == "InjectedFault: R2REC_FAULT_RAISE: failing at evaluate.model_written #1"
    )
    # The failed run wrote popularity's metrics before it died, and says so.
    assert failed["outputs"]["eval_metrics"] == lh.version(EVAL_METRICS)
    assert ok["outputs"]["eval_metrics"] < failed["outputs"]["eval_metrics"]
    # Inputs are the versions actually read, and the job reads only what it declares.
    assert ok["inputs"]["samples"] == lh.version(SAMPLES)
    assert set(ok["inputs"]) <= set(JOB_INPUTS["evaluate"]), set(ok["inputs"])
    assert json.loads(ok["config"]) == args
    assert json.loads(ok["report"])["models"].keys() == {"popularity", "itemknn"}
    assert f"r2rec evaluate ds={DS} run={failed['run_id']} failed in " in err
