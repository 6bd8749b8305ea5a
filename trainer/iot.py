"""Interaction-of-thought: chains become step-by-step traces by progressive masking.

A chain ``u0 -> i0 -> u1 -> i1`` gives four thoughts (docs/METHOD.md §4-5):

1. ``u0 -> i0``  what interacting with i0 says about the user's taste;
2. ``i0 -> u1``  a similar user also chose i0 and shares other items with the user;
3. ``u1 -> i1``  that user went on to i1, and why i1 fits;
4. final         weigh the candidates and choose.

The teacher writing thought k sees hops 1..k; later hops are shown as ``[MASKED]``.
The final step reveals the candidate list but not which label is the answer; the
teacher names it, and the quality filter checks it against the target. Users appear
only as "the user" and "a similar user": no id reaches a prompt or a trace.

Items are cited in thoughts by their escaped, quoted text (``r2rec.prompt``), which is
what makes the grounding check possible: every quoted citation must be an item of the
revealed context.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from r2rec.prompt import escape_item_text

MASK = "[MASKED]"
HOPS = ("u0->i0", "i0->u1", "u1->i1", "final")
_QUOTED = re.compile(r'"([^"]*)"')


@dataclass(frozen=True)
class Item:
    item_id: str
    text: str  # e.g. "Fargo (1996). Genres: Crime, Drama, Thriller"
    genres: tuple[str, ...] = ()

    @property
    def cite(self) -> str:
        return escape_item_text(self.text)


@dataclass(frozen=True)
class ChainFacts:
    """Everything one trace may use: the sample, one chain, the candidates."""

    history: tuple[Item, ...]  # oldest first
    i0: Item
    i1: Item  # the target for positive chains
    overlap: int  # items the similar user shares with the user before the target
    shared_example: Item | None  # one shared item other than i0, for the i0 -> u1 hop
    i0_recency_rank: int  # 1 = the most recent history item
    candidates: tuple[tuple[str, Item], ...]  # (label, item) in display order
    answer_label: str

    def revealed_items(self, step: int) -> list[Item]:
        """Items a thought at ``step`` (1-based) may cite."""
        items = [*self.history, self.i0]
        if step >= 2 and self.shared_example is not None:
            items.append(self.shared_example)
        if step >= 3:
            items.append(self.i1)
        if step >= 4:
            items += [item for _, item in self.candidates]
        return items


@dataclass(frozen=True)
class StepRequest:
    """One teacher call: write thought ``step`` given only what is revealed so far."""

    step: int
    facts: ChainFacts
    previous: tuple[str, ...] = ()  # thoughts already written for this trace
    key: str = ""  # seeds phrasing choice (template) and identifies the trace

    def context_lines(self) -> list[str]:
        """The masked view of the chain shown to the teacher at this step."""
        f = self.facts
        hop1 = f"the user interacted with {f.i0.cite}"
        example = f", for example {f.shared_example.cite}" if f.shared_example else ""
        hop2 = (
            f"a similar user also interacted with {f.i0.cite} and shares {f.overlap} items "
            f"with the user{example}"
        )
        hop3 = f"that similar user went on to {f.i1.cite}"
        hops = [hop1, hop2, hop3]
        lines = ["User history, oldest first:"]
        lines += [f"- {item.cite}" for item in f.history]
        lines.append("Interaction chain:")
        for k, hop in enumerate(hops, 1):
            lines.append(f"Hop {k}: {hop if k <= self.step else MASK}")
        if self.step >= 4:
            lines.append("Candidates (the answer is not marked):")
            lines += [f"[{label}] {item.cite}" for label, item in f.candidates]
        return lines


def quoted_citations(text: str) -> list[str]:
    return _QUOTED.findall(text)


@dataclass
class GroundingResult:
    cited: list[str] = field(default_factory=list)
    invented: list[str] = field(default_factory=list)

    @property
    def share_grounded(self) -> float:
        return 1.0 - len(self.invented) / len(self.cited) if self.cited else 1.0


def check_grounding(thoughts: Sequence[str], facts: ChainFacts) -> GroundingResult:
    """Every quoted item a thought cites must be revealed at that thought's step."""
    result = GroundingResult()
    for step, thought in enumerate(thoughts, 1):
        allowed = {item.cite[1:-1] for item in facts.revealed_items(min(step, 4))}
        for cited in quoted_citations(thought):
            result.cited.append(cited)
            if cited not in allowed:
                result.invented.append(cited)
    return result


# --- traces -------------------------------------------------------------------------------

MIN_THOUGHT_CHARS, MAX_THOUGHT_CHARS = 20, 400
_LABEL = re.compile(r"\[(C\d+)\]")


@dataclass
class Trace:
    key: str
    facts: ChainFacts
    thoughts: list[str]
    answer_label: str | None
    completion: str
    passed: bool
    reject_reason: str | None


def generate_traces(keyed_facts: Sequence[tuple[str, ChainFacts]], teacher) -> list[Trace]:
    """Write every trace step by step, one teacher batch ("wave") per step."""
    thoughts: list[list[str]] = [[] for _ in keyed_facts]
    for step in range(1, len(HOPS) + 1):
        wave = [
            StepRequest(step, facts, tuple(thoughts[k]), key)
            for k, (key, facts) in enumerate(keyed_facts)
        ]
        for k, text in enumerate(teacher.think(wave)):
            thoughts[k].append(" ".join((text or "").split()))
    return [judge(key, facts, th) for (key, facts), th in zip(keyed_facts, thoughts, strict=True)]


def judge(key: str, facts: ChainFacts, thoughts: list[str]) -> Trace:
    """Apply the quality filter: right answer, grounded citations, parses, sane length."""
    from r2rec.prompt import parse_completion, render_completion

    labels = [label for label, _ in facts.candidates]
    named = [lb for lb in _LABEL.findall(thoughts[-1]) if lb in labels] if thoughts else []
    answer = named[-1] if named else None
    completion = render_completion(thoughts, answer or "?")
    reason = None
    if answer is None:
        reason = "no_answer"
    elif answer != facts.answer_label:
        reason = "wrong_answer"
    elif check_grounding(thoughts, facts).invented:
        reason = "invented_citation"
    elif not parse_completion(completion, labels).well_formed:
        reason = "unparseable"
    elif any(len(t) < MIN_THOUGHT_CHARS for t in thoughts):
        reason = "too_short"
    elif any(len(t) > MAX_THOUGHT_CHARS for t in thoughts):
        reason = "too_long"
    return Trace(key, facts, thoughts, answer, completion, reason is None, reason)
