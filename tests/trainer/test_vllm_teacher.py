"""The vLLM teacher end to end on a tiny random model (real vLLM engine, CPU)."""

from __future__ import annotations

import pytest

from trainer.iot import generate_traces
from trainer.teachers import VLLMTeacher, teacher_messages

pytestmark = pytest.mark.slow


def test_vllm_teacher_runs_in_waves_and_is_judged(tiny_model_dir):
    from tests.trainer.test_iot import FACTS

    teacher = VLLMTeacher(tiny_model_dir, max_tokens=12, max_model_len=1024)
    calls: list[int] = []
    real = teacher.think
    teacher.think = lambda reqs: calls.append(len(reqs)) or real(reqs)

    traces = generate_traces([(f"s{k}", FACTS) for k in range(3)], teacher)
    again = generate_traces([(f"s{k}", FACTS) for k in range(3)], teacher)

    assert calls == [3, 3, 3, 3, 3, 3, 3, 3]  # one batch per step, never one request at a time
    assert all(len(t.thoughts) == 4 for t in traces)
    assert [t.thoughts for t in traces] == [t.thoughts for t in again]  # greedy: reproducible
    # a random model cannot name the target: every trace must be rejected, with a reason
    assert {t.reject_reason for t in traces} <= {
        "no_answer", "wrong_answer", "cites_a_masked_item", "not_grounded_in_prompt",
        "unparseable", "repeated_step", "too_short", "too_long",
    }  # fmt: skip
    assert not any(t.passed for t in traces)


def test_teacher_prompt_shows_only_the_masked_view():
    from tests.trainer.test_iot import FACTS, HEAT
    from trainer.iot import StepRequest

    msgs = teacher_messages(StepRequest(2, FACTS, ("first thought",), "k"))
    user = msgs[1]["content"]
    assert "Step 1: first thought" in user
    assert "Hop 3: [MASKED]" in user and HEAT.cite not in user
    assert user.endswith("Step 2: what does Hop 2 say about the similar users and the user?")
