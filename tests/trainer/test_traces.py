"""The traces job on hand-made tables: traces, SFT examples and RL prompts for a date."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from r2rec.contracts import (
    CANDIDATE_EVIDENCE,
    CANDIDATES,
    ITEMS,
    JOB_METRICS,
    REASONING_TRACES,
    RL_PROMPTS,
    SAMPLES,
    SFT_EXAMPLES,
)
from r2rec.prompt import PROMPT_VERSION, RecPrompt, parse_completion, render_messages
from trainer import traces
from trainer.teachers import TemplateTeacher

DS = "2026-03-01"


def ts(day: int) -> datetime:
    return datetime(2026, 2, day, tzinfo=UTC)


TITLES = {"a": "Alien", "b": "Brazil", "c": "Casablanca", "d": "Dune", "e": "Eraserhead"}


def evidence_row(sid: str, user: str, item: str, users: int, score: float, via: list[str]):
    return {
        "ds": DS, "scope": "samples", "context_id": sid, "user_id": user, "item_id": item,
        "cutoff": ts(9), "users": users, "paths": users * len(via), "overlap": score / users,
        "score": score, "via": via, "via_users": [users] * len(via),
    }  # fmt: skip


@pytest.fixture
def lake(lakehouse):
    lakehouse.overwrite(
        ITEMS,
        [
            {"item_id": k, "title": v, "year": 1980 + n, "genres": ["Sci-Fi"],
             "text": f"{v} ({1980 + n}). Genres: Sci-Fi", "ds": "2026-01-01", "source": "s"}
            for n, (k, v) in enumerate(TITLES.items())
        ],
        partition={"ds": "2026-01-01", "source": "s"},
    )  # fmt: skip
    samples = [
        ("train", "u0:2", "u0", 2, ["a", "b"], "d"),  # the target has the strongest evidence
        ("train", "u2:2", "u2", 2, ["a", "b"], "d"),  # a negative's evidence is stronger
        ("train", "u3:1", "u3", 1, ["a"], "d"),  # no chain reaches any candidate
        ("test", "u1:2", "u1", 2, ["a", "b"], "d"),
        ("valid", "u9:1", "u9", 1, ["a"], "b"),  # its candidates were quarantined
    ]
    cols = ["split", "sample_id", "user_id", "position", "history", "target_item_id"]
    lakehouse.overwrite(
        SAMPLES,
        [dict(zip(cols, s, strict=True), ds=DS, target_ts=ts(9)) for s in samples],
        partition={"ds": DS},
    )
    lakehouse.overwrite(
        CANDIDATES,
        [
            {"ds": DS, "split": sp, "sample_id": sid, "seed": seed, "user_id": u,
             "target_item_id": "d", "items": ["c", "d", "e"], "labels": ["C1", "C2", "C3"],
             "target_label": "C2", "sampler": "uniform"}
            for sp, sid, u, seed in [("train", "u0:2", "u0", 0), ("train", "u2:2", "u2", 0),
                                     ("train", "u3:1", "u3", 0), ("test", "u1:2", "u1", 0),
                                     ("test", "u1:2", "u1", 1)]
        ],
        partition={"ds": DS},
    )  # fmt: skip
    lakehouse.overwrite(
        CANDIDATE_EVIDENCE,
        [
            evidence_row("u0:2", "u0", "d", 2, 1.2, ["b", "a"]),
            evidence_row("u0:2", "u0", "c", 1, 0.3, ["a"]),
            evidence_row("u2:2", "u2", "d", 1, 0.4, ["b"]),
            evidence_row("u2:2", "u2", "e", 3, 1.5, ["a"]),
        ],
        partition={"ds": DS, "scope": "samples"},
    )
    return lakehouse


def test_traces_job_writes_all_three_tables(lake):
    report = traces.run(lake, DS, TemplateTeacher())
    assert report["template.traces"] == 2 and report["template.passed"] == 1
    assert report["skipped.no_chain_to_target"] == 1
    assert report["template.rejected.wrong_answer"] == 1  # u2: [C3] has more evidence

    rows = {r["sample_id"]: r for r in lake.read_arrow(REASONING_TRACES).to_pylist()}
    trace = rows["u0:2"]
    assert trace["hops"] == ["u0->i0", "i0->u1", "u1->i1", "final"]
    assert trace["prompt_version"] == PROMPT_VERSION and trace["passed"]
    assert '"Brazil"' in trace["thoughts"][0]  # the chain starts from the strongest via item
    assert '[C2] "Dune"' in trace["thoughts"][2]
    assert "u0" not in trace["completion"] and "u1" not in trace["completion"]
    assert rows["u2:2"]["answer_label"] == "C3" and not rows["u2:2"]["passed"]

    (sft,) = lake.read_arrow(SFT_EXAMPLES).to_pylist()
    assert sft["evidence"] == "chains" and [m["role"] for m in sft["prompt"]] == ["system", "user"]
    user = sft["prompt"][1]["content"]
    assert '[C2] "Dune": 2 users, overlap 0.60, via "Brazil"' in user
    assert "Hop" not in user  # the chain alone would name the answer
    assert sft["completion"] == [{"role": "assistant", "content": trace["completion"]}]
    assert parse_completion(sft["completion"][0]["content"], ["C1", "C2", "C3"]).answer == "C2"

    rl = {r["sample_id"]: r for r in lake.read_arrow(RL_PROMPTS).to_pylist()}
    assert set(rl) == {"u0:2", "u2:2", "u3:1"}  # training samples with candidates only
    assert rl["u0:2"]["candidate_item_ids"] == ["c", "d", "e"]
    assert rl["u3:1"]["flags"] == ["no_evidence"] and rl["u0:2"]["flags"] == []
    facts = RecPrompt.from_json(rl["u0:2"]["prompt_facts"])
    assert render_messages(facts) == rl["u0:2"]["prompt"]  # the facts are the prompt
    metrics = lake.read_arrow(JOB_METRICS, partitions=[("job", "=", "traces.template")]).to_pylist()
    by_name = {m["metric"]: m["value"] for m in metrics}
    assert by_name["sft_examples.chains"] == 1.0 and by_name["rl_prompts.chains.no_evidence"] == 1


def test_without_evidence_the_same_traces_get_the_papers_prompt(lake):
    traces.run(lake, DS, TemplateTeacher())
    traces.run(lake, DS, TemplateTeacher(), evidence="none")
    by_mode = {r["evidence"]: r for r in lake.read_arrow(SFT_EXAMPLES).to_pylist()}
    assert by_mode["none"]["completion"] == by_mode["chains"]["completion"]
    assert "Candidates:\n[C1]" in by_mode["none"]["prompt"][1]["content"]
    assert "users" not in by_mode["none"]["prompt"][1]["content"]
    rl = lake.read_arrow(RL_PROMPTS, partitions=[("evidence", "=", "none")]).to_pylist()
    assert len(rl) == 3 and all(r["flags"] == [] for r in rl)


def test_tables_load_into_trl_datasets_unchanged(lake):
    from datasets import Dataset
    from trl.data_utils import is_conversational

    traces.run(lake, DS, TemplateTeacher())
    sft = Dataset.from_list(lake.read_arrow(SFT_EXAMPLES).to_pylist())
    rl = Dataset.from_list(lake.read_arrow(RL_PROMPTS).to_pylist())
    assert is_conversational(sft[0]) and is_conversational(rl[0])
    assert sft[0]["completion"][0]["role"] == "assistant"
    assert rl.column_names.count("prompt") == 1 and "target_label" in rl.column_names


def test_rerun_replaces_exactly_the_date(lake):
    traces.run(lake, DS, TemplateTeacher())
    first = lake.read_arrow(REASONING_TRACES).to_pylist()
    traces.run(lake, DS, TemplateTeacher())
    assert lake.read_arrow(REASONING_TRACES).to_pylist() == first
    assert lake.read_arrow(SFT_EXAMPLES).num_rows == 1


def test_missing_evidence_is_one_clear_error(lake):
    from r2rec.errors import R2RecError

    lake.overwrite(CANDIDATE_EVIDENCE, [], partition={"ds": DS, "scope": "samples"})
    lake.delta_table(CANDIDATE_EVIDENCE).delete()  # the partition is gone altogether
    with pytest.raises(R2RecError, match="no candidate_evidence for ds=2026-03-01"):
        traces.run(lake, DS, TemplateTeacher())


class NonsenseTeacher:
    """Says the same unusable thing at every step, like an untuned small model."""

    name, model = "vllm", "nonsense"

    def think(self, requests):
        return ["I like turtles."] * len(requests)


def test_a_teacher_whose_every_trace_fails_writes_none_and_reports_why(lake):
    traces.run(lake, DS, TemplateTeacher())  # an earlier teacher's rows must survive
    report = traces.run(lake, DS, NonsenseTeacher())
    assert report["vllm.traces"] > 0 and report["vllm.passed"] == 0
    assert report["sft_examples.chains"] == 0 and report["vllm.pass_rate"] == 0.0
    rows = lake.read_arrow(REASONING_TRACES, partitions=[("teacher", "=", "vllm")]).to_pylist()
    assert len(rows) == report["vllm.traces"] and not any(r["passed"] for r in rows)
    assert all(r["reject_reason"] for r in rows)
    assert lake.read_arrow(SFT_EXAMPLES, partitions=[("teacher", "=", "vllm")]).num_rows == 0
    assert lake.read_arrow(SFT_EXAMPLES, partitions=[("teacher", "=", "template")]).num_rows > 0


def test_chunks_of_any_size_write_what_one_pass_writes(lake):
    """The job holds a chunk of training samples in Python at a time; the chunk's
    evidence is a slice of the date's, found by its last sample id."""
    rows = lake.read_arrow(CANDIDATES).to_pylist()
    # A second seed of u0:2, stored before its first: prompts use each sample's lowest seed.
    seed0 = next(r for r in rows if r["sample_id"] == "u0:2")
    other = {**seed0, "seed": 1, "items": ["e", "c", "d"], "target_label": "C3"}
    lake.overwrite(CANDIDATES, [other, *rows], partition={"ds": DS})

    def written() -> dict[str, list[str]]:
        return {
            t.name: sorted(str(r) for r in lake.read_arrow(t).to_pylist())
            for t in (REASONING_TRACES, SFT_EXAMPLES, RL_PROMPTS)
        }

    report = traces.run(lake, DS, TemplateTeacher(), chunk=100)
    whole = written()
    rl = {r["sample_id"]: r for r in lake.read_arrow(RL_PROMPTS).to_pylist()}
    assert rl["u0:2"]["candidate_item_ids"] == ["c", "d", "e"]
    assert '[C2] "Dune": 2 users' in rl["u0:2"]["prompt"][1]["content"]  # its own evidence
    assert '[C3] "Eraserhead": 3 users' in rl["u2:2"]["prompt"][1]["content"]
    for chunk in (1, 2):
        assert traces.run(lake, DS, TemplateTeacher(), chunk=chunk) == report
        assert written() == whole, chunk


def test_max_chains_counts_across_chunks(lake):
    report = traces.run(lake, DS, TemplateTeacher(), max_chains=1, chunk=1)
    assert report["template.traces"] == 1 and report["rl_prompts.chains"] == 3
    (trace,) = lake.read_arrow(REASONING_TRACES).to_pylist()
    assert trace["sample_id"] == "u0:2"  # the first in sample order
