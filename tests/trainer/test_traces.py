"""The traces job on hand-made tables: traces, SFT examples and RL prompts for a date."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from r2rec.contracts import (
    CANDIDATES,
    CHAINS,
    GRAPH_EDGES,
    ITEMS,
    JOB_METRICS,
    REASONING_TRACES,
    RL_PROMPTS,
    SAMPLES,
    SFT_EXAMPLES,
)
from r2rec.prompt import PROMPT_VERSION, parse_completion
from trainer import traces
from trainer.teachers import TemplateTeacher

DS = "2026-03-01"


def ts(day: int) -> datetime:
    return datetime(2026, 2, day, tzinfo=UTC)


TITLES = {"a": "Alien (1979)", "b": "Brazil (1985)", "c": "Casablanca (1942)", "d": "Dune (1984)"}


@pytest.fixture
def lake(lakehouse):
    lakehouse.overwrite(
        ITEMS,
        [
            {
                "item_id": k,
                "title": v,
                "year": None,
                "genres": ["Sci-Fi"] if k != "c" else ["Drama"],
                "text": f"{v}. Genres: {'Drama' if k == 'c' else 'Sci-Fi'}",
                "ds": "2026-01-01",
                "source": "s",
            }
            for k, v in TITLES.items()
        ],
        partition={"ds": "2026-01-01", "source": "s"},
    )
    edges = [
        ("u0", "a", 1),
        ("u0", "b", 2),
        ("u0", "d", 9),
        ("u1", "a", 3),
        ("u1", "b", 4),
        ("u1", "d", 5),
    ]
    lakehouse.overwrite(
        GRAPH_EDGES,
        [
            {"ds": DS, "user_id": u, "item_id": i, "rating": 4.0, "ts": ts(d), "weight": 4.0}
            for u, i, d in edges
        ],
        partition={"ds": DS},
    )
    samples = [
        ("train", "u0:2", "u0", 2, ["a", "b"], "d", ts(9)),
        ("test", "u1:2", "u1", 2, ["a", "b"], "d", ts(5)),
        ("valid", "u9:1", "u9", 1, ["a"], "b", ts(6)),  # its candidates were quarantined
    ]
    lakehouse.overwrite(
        SAMPLES,
        [
            dict(
                zip(
                    [
                        "split",
                        "sample_id",
                        "user_id",
                        "position",
                        "history",
                        "target_item_id",
                        "target_ts",
                    ],
                    s,
                    strict=True,
                ),
                ds=DS,
            )
            for s in samples
        ],
        partition={"ds": DS},
    )
    lakehouse.overwrite(
        CANDIDATES,
        [
            {
                "ds": DS,
                "split": sp,
                "sample_id": sid,
                "seed": seed,
                "user_id": u,
                "target_item_id": "d",
                "items": ["c", "d"],
                "labels": ["C1", "C2"],
                "target_label": "C2",
                "sampler": "uniform",
            }
            for sp, sid, u, seed in [
                ("train", "u0:2", "u0", 0),
                ("test", "u1:2", "u1", 0),
                ("test", "u1:2", "u1", 1),
            ]
        ],
        partition={"ds": DS},
    )
    lakehouse.overwrite(
        CHAINS,
        [
            {
                "ds": DS,
                "sample_id": "u0:2",
                "chain_id": "u0:2/1",
                "rank": 1,
                "user_id": "u0",
                "i0": "b",
                "u0_i0_ts": ts(2),
                "u1": "u1",
                "u1_i0_ts": ts(4),
                "i1": "d",
                "u1_i1_ts": ts(5),
                "target_ts": ts(9),
                "overlap": 2,
                "jaccard": 2 / 3,
                "recency": 1.0,
                "score": 2 / 3 + 0.1,
            }
        ],
        partition={"ds": DS},
    )
    return lakehouse


def test_traces_job_writes_all_three_tables(lake):
    report = traces.run(lake, DS, TemplateTeacher())
    assert report["template.traces"] == 1 and report["template.pass_rate"] == 1.0

    (trace,) = lake.read_arrow(REASONING_TRACES).to_pylist()
    assert trace["hops"] == ["u0->i0", "i0->u1", "u1->i1", "final"]
    assert trace["prompt_version"] == PROMPT_VERSION and trace["passed"]
    assert '"Alien (1979). Genres: Sci-Fi"' in trace["thoughts"][1]  # the shared item other than i0
    assert "u0" not in trace["completion"] and "u1" not in trace["completion"]

    (sft,) = lake.read_arrow(SFT_EXAMPLES).to_pylist()
    assert [m["role"] for m in sft["prompt"]] == ["system", "user"]
    assert '[C2] "Dune (1984). Genres: Sci-Fi"' in sft["prompt"][1]["content"]
    assert "Hop" not in sft["prompt"][1]["content"]  # the chain would leak the answer
    assert sft["completion"] == [{"role": "assistant", "content": trace["completion"]}]
    assert parse_completion(sft["completion"][0]["content"], ["C1", "C2"]).answer == "C2"

    rl = {r["sample_id"]: r for r in lake.read_arrow(RL_PROMPTS).to_pylist()}
    assert set(rl) == {"u0:2", "u1:2"}  # u9 has no candidates
    assert rl["u1:2"]["split"] == "test" and rl["u1:2"]["target_label"] == "C2"
    assert rl["u0:2"]["candidate_item_ids"] == ["c", "d"]
    assert rl["u0:2"]["grounding_items"] == sorted(
        [
            "Alien (1979). Genres: Sci-Fi",
            "Brazil (1985). Genres: Sci-Fi",
            "Casablanca (1942). Genres: Drama",
            "Dune (1984). Genres: Sci-Fi",
        ]
    )
    metrics = lake.read_arrow(JOB_METRICS, partitions=[("job", "=", "traces.template")]).to_pylist()
    assert {m["metric"]: m["value"] for m in metrics}["sft_examples"] == 1.0


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


class NonsenseTeacher:
    """Says the same unusable thing at every step, like an untuned small model."""

    name, model = "vllm", "nonsense"

    def think(self, requests):
        return ["I like turtles."] * len(requests)


def test_a_teacher_whose_every_trace_fails_writes_none_and_reports_why(lake):
    traces.run(lake, DS, TemplateTeacher())  # an earlier teacher's rows must survive
    report = traces.run(lake, DS, NonsenseTeacher())
    assert report["vllm.traces"] > 0 and report["vllm.passed"] == 0
    assert report["sft_examples"] == 0 and report["vllm.pass_rate"] == 0.0
    rows = lake.read_arrow(REASONING_TRACES, partitions=[("teacher", "=", "vllm")]).to_pylist()
    assert len(rows) == report["vllm.traces"] and not any(r["passed"] for r in rows)
    assert all(r["reject_reason"] for r in rows)
    assert lake.read_arrow(SFT_EXAMPLES, partitions=[("teacher", "=", "vllm")]).num_rows == 0
    assert lake.read_arrow(SFT_EXAMPLES, partitions=[("teacher", "=", "template")]).num_rows > 0
