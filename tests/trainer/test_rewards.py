"""GRPO rewards: exact values on hand-written completions (docs/METHOD.md §7)."""

from __future__ import annotations

import math

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


class _PolicyThatReadsItsReasoning:
    """A rollout stand-in (the real engine runs in test_training.py): characters as tokens,
    and after the answer's opening it prefers C1 when the reasoning names Alpha."""

    def prompt_ids(self, prompts):
        return [[ord(c) for c in p[-1]["content"]] for p in prompts]

    def encode(self, text):
        return [ord(c) for c in text]

    def next_logprobs(self, prompts, allowed):
        out = []
        for p, kids in zip(prompts, allowed, strict=True):
            text = "".join(map(chr, p))
            if kids == [ord("C")]:
                out.append({ord("C"): math.log(0.9)})
            else:
                c1, c2 = (0.6, 0.2) if "Alpha" in text.split("<|assistant|>")[-1] else (0.1, 0.5)
                out.append({ord("1"): math.log(c1), ord("2"): math.log(c2)})
        return out


def test_target_likelihood_rewards_the_reasoning_that_makes_the_target_likely():
    from trainer.rollout import TargetLikelihood

    reward = TargetLikelihood(_PolicyThatReadsItsReasoning(), weight=0.5)
    prompt = [{"role": "user", "content": "pick one<|assistant|>"}]
    completions = [
        "<think>\nStep 1: Alpha.\n</think>\n<answer>[C2]</answer>",  # names C2, reasons to C1
        "<think>\nStep 1: Beta.\n</think>\n<answer>[C2]</answer>",
        "<think>\nStep 1: Alpha.\n</think>\n<answer>[C1]</answer>",
    ]
    out = reward(
        prompts=[prompt] * 3,
        completions=completions,
        target_label=["C1", "C1", "C2"],
        candidate_labels=[["C1", "C2"]] * 3,
        trainer_state=None,
    )
    # The share among the labels (0.6 / 0.8, 0.1 / 0.6, 0.2 / 0.8), on a log scale from 0
    # at e^-20 to 1, times the weight.
    shares = [0.75, 1 / 6, 0.25]
    assert out == pytest.approx([0.5 * (1 + math.log(x) / 20) for x in shares])
    assert out[0] > out[2] > out[1]
    # The answer written after the reasoning does not count: only what the reasoning makes
    # likely (the first and the third have the same reasoning).
    assert reward.__name__ == "target_likelihood_reward"
    # a target the policy all but rules out earns 0, never less
    sure = _PolicyThatReadsItsReasoning()
    sure.next_logprobs = lambda prompts, allowed: [
        {ord("C"): 0.0} if a == [ord("C")] else {ord("1"): -30.0, ord("2"): 0.0} for a in allowed
    ]
    miss = TargetLikelihood(sure, weight=0.5)(
        prompts=[prompt], completions=completions[:1], target_label=["C1"],
        candidate_labels=[["C1", "C2"]],
    )  # fmt: skip
    assert miss == [0.0]
    with pytest.raises(ValueError, match="> 0"):
        TargetLikelihood(_PolicyThatReadsItsReasoning(), weight=0.0)


def test_the_likelihood_reward_is_refused_without_an_engine_or_below_zero():
    from r2rec.errors import R2RecError
    from trainer.common import RunArgs
    from trainer.grpo import reward_funcs
    from trainer.rewards import REWARD_FUNCS

    assert reward_funcs(RunArgs(likelihood_reward=0.0), None) == list(REWARD_FUNCS)
    with pytest.raises(R2RecError, match="needs the vllm rollout"):
        reward_funcs(RunArgs(likelihood_reward=1.0), None)  # trl's own generation
    with pytest.raises(R2RecError, match=">= 0"):
        reward_funcs(RunArgs(likelihood_reward=-1.0), _PolicyThatReadsItsReasoning())
    funcs = reward_funcs(RunArgs(likelihood_reward=0.5), _PolicyThatReadsItsReasoning())
    assert [f.__name__ for f in funcs] == [
        *(f.__name__ for f in REWARD_FUNCS),
        "target_likelihood_reward",
    ]
