"""Interaction-of-thought traces: golden template text, masking, waves, quality filter."""

from __future__ import annotations

from dataclasses import replace

from r2rec.prompt import build_prompt, parse_completion, reasoning_checks
from trainer.iot import MASK, ChainFacts, Item, Rival, StepRequest, check_revealed, generate_traces
from trainer.teachers import TemplateTeacher

TEXT = {"1": "Toy Story", "300": "Se7en", "100": "Fargo", "200": "Heat", "400": "Up"}
EVIDENCE = {
    "200": {"users": 9, "overlap": 0.31, "via": ["100", "300"], "score": 2.8},
    "1": {"users": 0, "overlap": 0.0, "via": [], "score": 0.0},  # a zero row: no evidence
    "400": {"users": 4, "overlap": 0.12, "via": ["300"], "score": 0.5},
}
PROMPT, _ = build_prompt(["1", "300", "100"], ["400", "200", "500"], ["C1", "C2", "C3"],
                         lambda i: TEXT.get(i, "Brazil"), EVIDENCE)  # fmt: skip
FARGO, HEAT, UP = Item("100", "Fargo"), Item("200", "Heat"), Item("400", "Up")
FACTS = ChainFacts(
    prompt=PROMPT,
    history=(Item("1", "Toy Story"), Item("300", "Se7en"), FARGO),
    i0=FARGO,
    i0_recency_rank=1,
    users=9,
    overlap=0.31,
    i1=HEAT,
    i1_label="C2",
    i1_score=2.8,
    rivals=(Rival("C1", 4, 0.5),),
    candidates=(("C1", UP), ("C2", HEAT), ("C3", Item("500", "Brazil"))),
    answer_label="C2",
)


class Recorder:
    """A fake LLM teacher: records each wave and answers from a script."""

    name, model = "fake", "fake"

    def __init__(self, script):
        self.waves: list[list[StepRequest]] = []
        self.script = script

    def think(self, requests):
        self.waves.append(list(requests))
        return [self.script(r) for r in requests]


GOLDEN = """<think>
Step 1: The user recently chose "Fargo".
Step 2: 9 similar users sharing items with the user chose it too.
Step 3: They went on to [C2] "Heat".
Step 4: [C2] is first by evidence (9 users); next is [C1] (4 users).
</think>
<answer>[C2]</answer>"""


def test_template_trace_is_golden_grounded_and_passes_the_filter():
    (trace,) = generate_traces([("u7:12/1", FACTS)], TemplateTeacher())
    assert trace.completion == GOLDEN
    assert trace.passed and trace.reject_reason is None and trace.answer_label == "C2"
    assert all("u7" not in t for t in trace.thoughts)  # users never appear by id
    parsed = parse_completion(trace.completion, ["C1", "C2", "C3"])
    assert parsed.valid and parsed.answer == "C2" and len(parsed.thoughts) == 4
    assert reasoning_checks(parsed.thoughts, PROMPT, "C2") == {
        "names_top": True, "grounded": True, "no_repeat": True,
    }  # fmt: skip


def test_template_phrasing_varies_across_traces_but_not_across_runs():
    teacher = TemplateTeacher()
    for step in (1, 2, 3, 4):
        texts = {teacher.think([StepRequest(step, FACTS, (), f"s{k}")])[0] for k in range(30)}
        assert len(texts) == 3, step  # all three phrasings are used
    assert teacher.think([StepRequest(1, FACTS, (), "s1")]) == teacher.think(
        [StepRequest(1, FACTS, (), "s1")]
    )


def test_the_final_step_names_the_strongest_candidate_even_if_the_chain_ends_elsewhere():
    # A rival stronger than the chain's candidate: the grounded trace names the rival,
    # and the filter rejects it as a wrong answer (it is not the target).
    strong = replace(FACTS, rivals=(Rival("C1", 20, 5.0),))
    (trace,) = generate_traces([("k", strong)], TemplateTeacher())
    assert trace.answer_label == "C1" and trace.reject_reason == "wrong_answer"
    alone = replace(FACTS, rivals=())
    (trace,) = generate_traces([("k", alone)], TemplateTeacher())
    assert (
        "only candidate" in trace.thoughts[-1]
        or "alone" in trace.thoughts[-1]
        or ("Only [C2]" in trace.thoughts[-1])
    )


def test_step_k_prompt_reveals_nothing_of_later_hops_or_the_answer():
    for step in (1, 2, 3, 4):
        text = "\n".join(StepRequest(step, FACTS).context_lines())
        hops = [line for line in text.splitlines() if line.startswith("Hop ")]
        assert [h.endswith(MASK) for h in hops] == [k > step for k in (1, 2, 3)]
        if step < 2:
            assert "similar users" not in text and '"Se7en"' in text  # Se7en is in history
        if step < 3:
            assert HEAT.cite not in text  # the candidate appears from hop 3 on
        if step < 4:
            assert "Candidates" not in text and "[C1]" not in text
        else:
            assert "[C1]" in text and "Candidates by evidence" in text
            assert "answer" not in text.lower() and "target" not in text.lower()


def test_teacher_is_called_once_per_step_for_the_whole_batch():
    teacher = Recorder(lambda r: TemplateTeacher().think([r])[0])
    traces = generate_traces([(f"s{k}", FACTS) for k in range(5)], teacher)
    assert [len(w) for w in teacher.waves] == [5, 5, 5, 5]
    assert [w[0].step for w in teacher.waves] == [1, 2, 3, 4]
    # step k sees the k-1 thoughts already written for its own trace
    assert [len(r.previous) for r in teacher.waves[3]] == [3] * 5
    assert all(t.passed for t in traces)


def test_filter_rejects_wrong_answers_ungrounded_repeated_and_junk():
    def script(answer: str, **how):
        def write(r: StepRequest) -> str:
            if r.step == 4:
                return f"The best candidate is [{answer}] by its evidence here."
            if how.get("short"):
                return ("ok", "no", "hm")[r.step - 1]
            if how.get("repeat"):
                return 'The user chose "Fargo" and it matters.'
            if how.get("masked") and r.step == 1:
                return 'The user will like "Heat" for sure.'
            if how.get("count") and r.step == 3:
                return "Those users then chose [C2], 12 users in all."
            if how.get("chain") and r.step == 1:
                return 'The user chose "Toy Story" long ago.'
            return (
                ["The history has it.", "Similar people agree.", 'Then [C2] "Heat" came.'][
                    r.step - 1
                ]
                if r.step > 1
                else 'The user chose "Fargo" lately.'
            )

        return write

    cases = {
        "wrong_answer": script("C1"),
        "no_answer": script("C9"),
        "cites_a_masked_item": script("C2", masked=True),
        "not_grounded_in_prompt": script("C2", count=True),
        "repeated_step": script("C2", repeat=True),
        "too_short": script("C2", short=True),
    }
    for reason, fn in cases.items():
        (trace,) = generate_traces([("k", FACTS)], Recorder(fn))
        assert not trace.passed and trace.reject_reason == reason, reason
    # Toy Story is history, but no chain from it reaches [C2] in the prompt.
    (trace,) = generate_traces([("k", FACTS)], Recorder(script("C2", chain=True)))
    assert trace.reject_reason == "not_grounded_in_prompt"


def test_revealed_items_grow_hop_by_hop():
    # Heat is the chain's candidate: citing it at step 1 leaks the future; at step 3 it
    # is revealed.
    early = check_revealed([f"Maybe {HEAT.cite}."], FACTS)
    assert early.invented == ["Heat"]
    ok = check_revealed(["a", "b", f"went on to {HEAT.cite}"], FACTS)
    assert ok.invented == [] and ok.cited == ["Heat"]
    assert check_revealed(["", "", "", f"or {UP.cite}"], FACTS).invented == []  # step 4
