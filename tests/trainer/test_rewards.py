"""GRPO rewards: exact values on hand-written completions (docs/METHOD.md §7)."""

from __future__ import annotations

import pytest

from r2rec.prompt import build_prompt
from trainer.rewards import (
    accuracy_reward,
    completion_text,
    format_reward,
    grounding_reward,
)

LABELS = ["C1", "C2", "C3"]
TEXT = {"f": "Fargo", "h": 'Heat "1995"', "a": "Alien", "u": "Up"}
PROMPT, _ = build_prompt(
    ["a", "f"], ["u", "h", "a2"], LABELS, lambda i: TEXT.get(i, "Brazil"),
    {"h": {"users": 9, "overlap": 0.2, "via": ["f"], "score": 1.8}},
)  # fmt: skip
FACTS = PROMPT.to_json()

GOOD = (
    '<think>\nStep 1: The user chose "Fargo".\n'
    "Step 2: So [C2] fits, with 9 users.\n</think>\n<answer>[C2]</answer>"
)
NO_STEPS = "<think>\nI like it.\n</think>\n<answer>[C2]</answer>"
NOT_A_LABEL = "<think>\nStep 1: hmm.\n</think>\n<answer>[C9]</answer>"
NO_ANSWER = "<think>\nStep 1: The user liked many things.\n</think>"
# Heat is quoted as the prompt shows it ('Heat "1995"' -> Heat '1995'); Titanic is not in
# the prompt; the chain Fargo -> [C2] is shown; [C2] "4 users" is a wrong count.
INVENTED = (
    '<think>\nStep 1: "Fargo" and "Titanic" and "Heat \'1995\'".\n'
    "Step 2: [C2] has 4 users.\n</think>\n<answer>[C1]</answer>"
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
        0.1,  # valid: well formed, a candidate
        0.0,  # a candidate, but no "Step k:" lines
        -1.0,  # not a candidate label
        -1.0,  # no answer
        -1.0,  # empty
    ]


def test_grounding_checks_items_counts_and_chains_against_the_prompt():
    out = grounding_reward(
        [chat(GOOD), chat(INVENTED), chat(NO_STEPS), chat(ALL_INVENTED)],
        prompt_facts=[FACTS] * 4,
        candidate_labels=[LABELS] * 4,
    )
    # GOOD: Fargo (history) and the chain Fargo -> [C2] (shown), 9 users right -> 0.1.
    # INVENTED: 3 items + 1 chain cited; Titanic and "4 users" invented -> 2 of 4 wrong:
    # 0.1 * 2/4 - 0.05 * 2. NO_STEPS cites nothing. ALL_INVENTED: floored at -0.2.
    assert out == pytest.approx([0.1, 0.1 * 2 / 4 - 0.1, 0.0, -0.2])


def test_rewards_take_the_trl_signature_with_extra_columns():
    kwargs = {
        "prompts": [[{"role": "user", "content": "x"}]],
        "target_label": ["C2"],
        "candidate_labels": [LABELS],
        "prompt_facts": [FACTS],
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
