"""GRPO rewards: exact values on hand-written completions (docs/METHOD.md §7)."""

from __future__ import annotations

import pytest

from trainer.rewards import (
    accuracy_reward,
    completion_text,
    format_reward,
    grounding_reward,
)

LABELS = ["C1", "C2", "C3"]
ITEMS = ["Fargo (1996). Genres: Crime", 'Heat "1995"', "Alien (1979)"]

GOOD = (
    '<think>\nStep 1: The user liked "Fargo (1996). Genres: Crime".\n'
    "Step 2: So [C2] fits.\n</think>\n<answer>[C2]</answer>"
)
NO_STEPS = "<think>\nI like it.\n</think>\n<answer>[C2]</answer>"
NOT_A_LABEL = "<think>\nStep 1: hmm.\n</think>\n<answer>[C9]</answer>"
NO_ANSWER = "<think>\nStep 1: The user liked many things.\n</think>"
INVENTED = (
    '<think>\nStep 1: "Fargo (1996). Genres: Crime" and "Titanic (1997)" and '
    "\"Heat '1995'\".\n</think>\n<answer>[C1]</answer>"
)
ALL_INVENTED = '<think>\nStep 1: "A" "B" "C" "D" "E" "F".\n</think>\n<answer>[C1]</answer>'


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_accuracy_is_one_only_for_the_target_label():
    completions = [chat(GOOD), chat(GOOD), chat(NOT_A_LABEL), chat(NO_ANSWER)]
    assert accuracy_reward(
        completions, target_label=["C2", "C1", "C9", "C2"], candidate_labels=[LABELS] * 4
    ) == [1.0, 0.0, 0.0, 0.0]  # C9 "matches" its target but is no candidate


def test_format_bonus_penalty_and_neutral():
    completions = [GOOD, NO_STEPS, NOT_A_LABEL, NO_ANSWER, ""]
    assert format_reward(completions, candidate_labels=[LABELS] * 5) == [
        0.1,  # well formed
        0.0,  # valid answer, but no "Step k:" lines
        -1.0,  # not a candidate label
        -1.0,  # no answer
        -1.0,  # empty
    ]


def test_grounding_counts_cited_items_in_their_escaped_prompt_form():
    out = grounding_reward(
        [chat(GOOD), chat(INVENTED), chat(NO_STEPS), chat(ALL_INVENTED)],
        grounding_items=[ITEMS] * 4,
        candidate_labels=[LABELS] * 4,
    )
    # GOOD: 1 of 1 cited exists -> 0.1. INVENTED: 2 of 3 exist ("Heat '1995'" is how the
    # prompt shows 'Heat "1995"'), 1 invented -> 0.1 * 2/3 - 0.05. NO_STEPS: cites none.
    # ALL_INVENTED: 0.0 - 6 * 0.05 = -0.3, floored at -0.2.
    assert out == pytest.approx([0.1, 0.1 * 2 / 3 - 0.05, 0.0, -0.2])


def test_rewards_take_the_trl_signature_with_extra_columns():
    kwargs = {
        "prompts": [[{"role": "user", "content": "x"}]],
        "target_label": ["C2"],
        "candidate_labels": [LABELS],
        "grounding_items": [ITEMS],
        "sample_id": ["u1:5"],
        "trainer_state": None,
    }
    assert accuracy_reward([chat(GOOD)], **kwargs) == [1.0]
    assert format_reward([chat(GOOD)], **kwargs) == [0.1]
    assert grounding_reward([chat(GOOD)], **kwargs) == [pytest.approx(0.1)]


def test_completion_text_reads_strings_and_messages():
    assert completion_text("abc") == "abc"
    assert completion_text(chat("abc")) == "abc"
    assert completion_text([]) == ""
