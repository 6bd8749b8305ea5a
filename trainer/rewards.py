"""GRPO rewards (docs/METHOD.md §7): pure functions of a completion and its prompt's facts.

Each follows trl's reward-function signature: ``completions`` plus the dataset's
columns as keyword arguments (``target_label``, ``candidate_labels``,
``grounding_items`` from ``rl_prompts``), one float per completion. They parse with
the shared prompt contract, so training rewards exactly what scoring accepts.

* accuracy: 1.0 when the answer is the target's label, else 0.0;
* format: +0.1 when the completion is well formed, -1.0 when it has no answer or the
  answer is not a candidate label, 0.0 otherwise (a valid answer in a flawed layout);
* grounding: for the items a completion quotes, +0.1 times the share that exist in the
  prompt, minus 0.05 per invented one, floored at -0.2; 0.0 when it quotes none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r2rec.prompt import escape_item_text, parse_completion
from trainer.iot import quoted_citations

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
            out.append(FORMAT_BONUS if parsed.well_formed else 0.0)
    return out


def grounding_reward(
    completions: Sequence[Any],
    grounding_items: Sequence[Sequence[str]],
    candidate_labels: Sequence[Sequence[str]] | None = None,
    **_: Any,
) -> list[float]:
    out = []
    labels_per = candidate_labels if candidate_labels is not None else [()] * len(completions)
    for c, items, labels in zip(completions, grounding_items, labels_per, strict=True):
        parsed = parse_completion(completion_text(c), list(labels))
        # Citations are compared in the form the prompt shows them (escaped, unquoted).
        known = {escape_item_text(t)[1:-1] for t in items}
        cited = [q for t in parsed.thoughts for q in quoted_citations(t)]
        if not cited:
            out.append(0.0)
            continue
        invented = sum(q not in known for q in cited)
        share = 1.0 - invented / len(cited)
        out.append(max(GROUNDING_FLOOR, GROUNDED_BONUS * share - INVENTED_PENALTY * invented))
    return out


REWARD_FUNCS = (accuracy_reward, format_reward, grounding_reward)
