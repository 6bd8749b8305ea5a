"""Interaction-of-thought: a chain in the prompt becomes step-by-step reasoning.

The chain a trace verbalises is the strongest one the prompt's evidence shows for a
candidate: the user's history item i0 -> the similar users who also chose it -> the
candidate i1 they went on to (docs/METHOD.md §4-5, §8a). Four thoughts:

1. ``u0 -> i0``  the user chose i0 (a history item the evidence names);
2. ``i0 -> u1``  similar users, sharing items with the user, also chose it;
3. ``u1 -> i1``  they went on to the candidate i1;
4. ``final``     weigh that candidate's evidence against the other candidates' and choose.

The teacher writing thought k sees hops 1..k; later hops are shown as ``[MASKED]``. The
final step reveals the candidates with their evidence but not which is the target; the
teacher names one, and the quality filter keeps the trace only if that is the target,
every item, label, count and chain it cites is in the prompt (r2rec.prompt
``check_grounding``), and no step repeats another. Users appear only as "the user" and
"similar users": no id reaches a prompt or a trace.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from r2rec.prompt import (
    RecPrompt,
    check_grounding,
    escape_item_text,
    parse_completion,
    quoted_citations,
    render_candidates,
    render_completion,
    repeated_steps,
)

MASK = "[MASKED]"
HOPS = ("u0->i0", "i0->u1", "u1->i1", "final")


@dataclass(frozen=True)
class Item:
    item_id: str
    text: str  # what the prompt shows, e.g. "Fargo (1996)"

    @property
    def cite(self) -> str:
        return escape_item_text(self.text)


@dataclass(frozen=True)
class Rival:
    """Another candidate with evidence, for the final step's comparison."""

    label: str
    users: int
    score: float


@dataclass(frozen=True)
class ChainFacts:
    """Everything one trace may use: the prompt, one chain in it, the other evidence."""

    prompt: RecPrompt  # exactly what the model is trained on
    history: tuple[Item, ...]  # oldest first
    i0: Item  # the history item the chain starts from
    i0_recency_rank: int  # 1 = the most recent history item
    users: int  # similar users on the chain (the candidate's evidence)
    overlap: float  # their mean overlap with the user
    i1: Item  # the candidate the chain reaches
    i1_label: str
    i1_score: float
    rivals: tuple[Rival, ...]  # the other candidates with evidence, strongest first
    candidates: tuple[tuple[str, Item], ...]  # (label, item) in display order
    answer_label: str  # the target's label: the filter's, never the teacher's

    def revealed_items(self, step: int) -> list[Item]:
        """Items a thought at ``step`` (1-based) may cite."""
        items = [*self.history, self.i0]
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
        hops = [
            f"the user chose {f.i0.cite}",
            f"{f.users} similar users (overlap {f.overlap:.2f} with the user) also chose it",
            f"they went on to [{f.i1_label}] {f.i1.cite}",
        ]
        lines = ["User history, oldest first:"]
        lines += [f"- {item.cite}" for item in f.history]
        lines.append("Interaction chain:")
        for k, hop in enumerate(hops, 1):
            lines.append(f"Hop {k}: {hop if k <= self.step else MASK}")
        if self.step >= 4:  # the prompt's own candidate lines: the answer is not marked
            lines += render_candidates(f.prompt)
        return lines

    def strongest(self) -> list[Rival]:
        """Every candidate with evidence, the chain's own included, strongest first."""
        f = self.facts
        own = Rival(f.i1_label, f.users, f.i1_score)
        order = {label: k for k, (label, _) in enumerate(f.candidates)}
        return sorted([own, *f.rivals], key=lambda r: (-r.score, -r.users, order[r.label]))


@dataclass
class StepGrounding:
    cited: list[str]
    invented: list[str]


def check_revealed(thoughts: Sequence[str], facts: ChainFacts) -> StepGrounding:
    """Progressive masking: every quoted item a thought cites was revealed at its step."""
    out = StepGrounding([], [])
    for step, thought in enumerate(thoughts, 1):
        allowed = {item.cite[1:-1] for item in facts.revealed_items(min(step, 4))}
        for cited in quoted_citations(thought):
            out.cited.append(cited)
            if cited not in allowed:
                out.invented.append(cited)
    return out


# --- traces -------------------------------------------------------------------------------

MIN_THOUGHT_CHARS, MAX_THOUGHT_CHARS = 12, 300
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


WAVE_PART = 512  # requests per teacher call: big enough to batch, small enough to report


def generate_traces(
    keyed_facts: Sequence[tuple[str, ChainFacts]], teacher, progress=None
) -> list[Trace]:
    """Write every trace step by step, one teacher batch ("wave") per step; ``progress``
    (r2rec.progress.Progress) is the caller's when it spans more than these traces."""
    from r2rec.progress import Progress

    thoughts: list[list[str]] = [[] for _ in keyed_facts]
    total = len(HOPS) * len(keyed_facts)
    with (
        contextlib.nullcontext(progress)
        if progress is not None
        else Progress(f"traces teacher={teacher.name}", total, "steps")
    ) as progress:
        for step in range(1, len(HOPS) + 1):
            wave = [
                StepRequest(step, facts, tuple(thoughts[k]), key)
                for k, (key, facts) in enumerate(keyed_facts)
            ]
            # In parts, so a slow LLM teacher shows progress within a wave.
            for start in range(0, len(wave), WAVE_PART):
                part = wave[start : start + WAVE_PART]
                for k, text in enumerate(teacher.think(part), start=start):
                    thoughts[k].append(" ".join((text or "").split()))
                progress.advance(len(part))
    return [judge(key, facts, th) for (key, facts), th in zip(keyed_facts, thoughts, strict=True)]


def judge(key: str, facts: ChainFacts, thoughts: list[str]) -> Trace:
    """The quality filter: the target, grounded in the prompt, parses, no repeats, sane length.

    The teacher's answer is the first candidate label its final step names (the step
    may go on to name the runner-up it weighed).
    """
    labels = [label for label, _ in facts.candidates]
    named = [lb for lb in _LABEL.findall(thoughts[-1]) if lb in labels] if thoughts else []
    answer = named[0] if named else None
    completion = render_completion(thoughts, answer or "?")
    reason = None
    if answer is None:
        reason = "no_answer"
    elif answer != facts.answer_label:
        reason = "wrong_answer"
    elif check_revealed(thoughts, facts).invented:
        reason = "cites_a_masked_item"
    elif not check_grounding(thoughts, facts.prompt).grounded:
        reason = "not_grounded_in_prompt"
    elif not parse_completion(completion, labels).valid:
        reason = "unparseable"
    elif repeated_steps(thoughts):
        reason = "repeated_step"
    elif any(len(t) < MIN_THOUGHT_CHARS for t in thoughts):
        reason = "too_short"
    elif any(len(t) > MAX_THOUGHT_CHARS for t in thoughts):
        reason = "too_long"
    return Trace(key, facts, thoughts, answer, completion, reason is None, reason)
