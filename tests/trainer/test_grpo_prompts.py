"""Which training prompts GRPO sees, in which order (trainer.grpo.order_prompts)."""

from __future__ import annotations

import pytest

from r2rec.errors import R2RecError
from r2rec.prompt import Evidence, RecPrompt
from trainer.grpo import order_prompts


def row(sample_id: str, *scores: float) -> dict:
    labels = tuple((f"C{k + 1}", f"item {k}") for k in range(max(len(scores), 1)))
    ev = {f"C{k + 1}": Evidence(2, 0.2, ("h",), s) for k, s in enumerate(scores)}
    return {"sample_id": sample_id, "prompt_facts": RecPrompt(("h",), labels, ev).to_json()}


ROWS = [row(f"u{k}:1", 1.0, 0.95 if k % 3 == 0 else 0.2) for k in range(30)] + [
    row("solo:1", 1.0),
    row("none:1"),
]


def test_the_order_depends_on_the_seed_not_on_the_order_rows_arrive_in():
    ids = [r["sample_id"] for r in order_prompts(ROWS, seed=0)[0]]
    again = [r["sample_id"] for r in order_prompts(list(reversed(ROWS)), seed=0)[0]]
    other = [r["sample_id"] for r in order_prompts(ROWS, seed=1)[0]]
    assert ids == again and sorted(ids) == sorted(r["sample_id"] for r in ROWS)
    assert ids != other


def test_min_runner_up_keeps_only_the_prompts_the_evidence_barely_decides_in_the_same_order():
    everything = [r["sample_id"] for r in order_prompts(ROWS, seed=0)[0]]
    kept, left_out = order_prompts(ROWS, seed=0, min_runner_up=0.9)
    ids = [r["sample_id"] for r in kept]
    close = {f"u{k}:1" for k in range(0, 30, 3)}  # runner-up at 0.95 of the strongest
    assert ids == [i for i in everything if i in close]
    assert len(ids) == 10 and left_out == len(ROWS) - 10  # the single and empty ones too
    assert order_prompts(ROWS, seed=0, min_runner_up=0.0) == (order_prompts(ROWS, seed=0)[0], 0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_min_runner_up_outside_zero_one_is_refused(bad):
    with pytest.raises(R2RecError, match="min_runner_up"):
        order_prompts(ROWS, seed=0, min_runner_up=bad)
