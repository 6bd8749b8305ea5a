"""GRPO rewards (docs/METHOD.md §7): pure functions of a completion and its prompt's facts.

Each follows trl's reward-function signature: ``completions`` plus the dataset's
columns as keyword arguments (``target_label``, ``candidate_labels``, ``prompt_facts``
from ``rl_prompts``), one float per completion. They parse and check with the shared
prompt contract, so training rewards exactly what scoring and evaluation accept.

* accuracy: 1.0 when the answer is the target's label, else 0.0;
* format: +0.1 when the completion is valid (well formed, a candidate answer), -1.0
  when it has no answer or the answer is not a candidate label, 0.0 otherwise;
* grounding: of what a completion cites (quoted items, labels, "[Ck] N users" counts
  and the chain from a history item to a candidate), +0.1 times the share that the
  prompt shows, minus 0.05 per invented one, floored at -0.2; 0.0 when it cites nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r2rec.prompt import RecPrompt, check_grounding, parse_completion

ACCURACY = 1.0
FORMAT_BONUS, FORMAT_PENALTY = 0.1, -1.0
GROUNDED_BONUS, INVENTED_PENALTY, GROUNDING_FLOOR = 0.1, 0.05, -0.2


def completion_text(completion: Any) -> str:
    """Plain text of a completion, whether trl passes a string or chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return ""


def accuracy_reward(
    completions: Sequence[Any],
    target_label: Sequence[str],
    candidate_labels: Sequence[Sequence[str]],
    **_: Any,
) -> list[float]:
    out = []
    for c, target, labels in zip(completions, target_label, candidate_labels, strict=True):
        answer = parse_completion(completion_text(c), list(labels)).answer
        out.append(ACCURACY if answer is not None and answer == target else 0.0)
    return out


def format_reward(
    completions: Sequence[Any], candidate_labels: Sequence[Sequence[str]], **_: Any
) -> list[float]:
    out = []
    for c, labels in zip(completions, candidate_labels, strict=True):
        parsed = parse_completion(completion_text(c), list(labels))
        if parsed.answer is None:
            out.append(FORMAT_PENALTY)
        else:
            out.append(FORMAT_BONUS if parsed.valid else 0.0)
    return out


def grounding_reward(
    completions: Sequence[Any],
    prompt_facts: Sequence[str],
    candidate_labels: Sequence[Sequence[str]],
    **_: Any,
) -> list[float]:
    out = []
    for c, facts, labels in zip(completions, prompt_facts, candidate_labels, strict=True):
        parsed = parse_completion(completion_text(c), list(labels))
        grounding = check_grounding(parsed.thoughts, RecPrompt.from_json(facts))
        if not grounding.items and grounding.chain is None and grounding.grounded:
            out.append(0.0)  # cites nothing: neither grounded nor invented
            continue
        out.append(
            max(
                GROUNDING_FLOOR,
                GROUNDED_BONUS * grounding.share_grounded - INVENTED_PENALTY * grounding.invented,
            )
        )
    return out


REWARD_FUNCS = (accuracy_reward, format_reward, grounding_reward)
