"""Interaction-of-thought traces: golden template text, masking, waves, quality filter."""

from __future__ import annotations

from dataclasses import replace

from r2rec.prompt import parse_completion
from trainer.iot import MASK, ChainFacts, Item, StepRequest, check_grounding, generate_traces
from trainer.teachers import TemplateTeacher

FARGO = Item("100", "Fargo (1996). Genres: Crime, Drama, Thriller", ("Crime", "Drama", "Thriller"))
HEAT = Item("200", "Heat (1995). Genres: Action, Crime, Thriller", ("Action", "Crime", "Thriller"))
TOY = Item("1", "Toy Story (1995). Genres: Animation, Children's", ("Animation", "Children's"))
SE7EN = Item("300", "Se7en (1995). Genres: Crime, Thriller", ("Crime", "Thriller"))
UP = Item("400", "Up (2009). Genres: Animation", ("Animation",))

FACTS = ChainFacts(
    history=(TOY, SE7EN, FARGO),
    i0=FARGO,
    i1=HEAT,
    overlap=4,
    shared_example=SE7EN,
    i0_recency_rank=1,
    candidates=(("C1", UP), ("C2", HEAT), ("C3", TOY)),
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
Step 1: The user most recently interacted with "Fargo (1996). Genres: Crime, Drama, Thriller", \
which suggests a taste for Crime and Drama.
Step 2: "Fargo (1996). Genres: Crime, Drama, Thriller" links the user to a similar user: they \
have 4 items in common, such as "Se7en (1995). Genres: Crime, Thriller".
Step 3: That similar user went on to "Heat (1995). Genres: Action, Crime, Thriller"; it fits \
because it shares Crime and Thriller with the user's history.
Step 4: Among the candidates, "Heat (1995). Genres: Action, Crime, Thriller" ([C2]) is the one \
the chain leads to and matches the user's taste best.
</think>
<answer>[C2]</answer>"""


def test_template_trace_is_golden_and_passes_the_filter():
    (trace,) = generate_traces([("u7:12/1", FACTS)], TemplateTeacher())
    assert trace.completion == GOLDEN
    assert trace.passed and trace.reject_reason is None and trace.answer_label == "C2"
    assert all("u7" not in t for t in trace.thoughts)  # users never appear by id
    parsed = parse_completion(trace.completion, ["C1", "C2", "C3"])
    assert parsed.well_formed and parsed.answer == "C2" and len(parsed.thoughts) == 4


def test_template_phrasing_varies_across_traces_but_not_across_runs():
    teacher = TemplateTeacher()
    firsts = {teacher.think([StepRequest(1, FACTS, (), f"s{k}")])[0] for k in range(30)}
    assert len(firsts) == 3  # all three phrasings are used
    assert teacher.think([StepRequest(1, FACTS, (), "s1")]) == teacher.think(
        [StepRequest(1, FACTS, (), "s1")]
    )


def test_step_k_prompt_reveals_nothing_of_later_hops_or_the_answer():
    for step in (1, 2, 3, 4):
        text = "\n".join(StepRequest(step, FACTS).context_lines())
        hops = [line for line in text.splitlines() if line.startswith("Hop ")]
        assert [h.endswith(MASK) for h in hops] == [k > step for k in (1, 2, 3)]
        if step < 2:
            assert "similar user" not in text and SE7EN.cite in text  # Se7en is in history
            assert "4 items" not in text
        if step < 3:
            assert HEAT.cite not in text  # the target appears from hop 3 on
        if step < 4:
            assert "Candidates" not in text and "[C" not in text
        else:
            assert "[C2]" in text and "answer is not marked" in text
            assert "(answer)" not in text.lower() and "correct" not in text.lower()


def test_teacher_is_called_once_per_step_for_the_whole_batch():
    teacher = Recorder(lambda r: TemplateTeacher().think([r])[0])
    traces = generate_traces([(f"s{k}", FACTS) for k in range(5)], teacher)
    assert [len(w) for w in teacher.waves] == [5, 5, 5, 5]
    assert [w[0].step for w in teacher.waves] == [1, 2, 3, 4]
    # step k sees the k-1 thoughts already written for its own trace
    assert [len(r.previous) for r in teacher.waves[3]] == [3] * 5
    assert all(t.passed for t in traces)


def test_filter_rejects_wrong_answers_invented_citations_and_junk():
    def script(answer: str, invent: bool = False, short: bool = False):
        def write(r: StepRequest) -> str:
            if r.step == 4:
                return f"The best candidate is [{answer}] given the chain evidence."
            if short:
                return "ok"
            extra = ' Also "Titanic (1997)" fits.' if invent and r.step == 2 else ""
            return f"The user likes {FARGO.cite} a lot, it seems.{extra}"

        return write

    cases = {
        "wrong_answer": script("C1"),
        "invented_citation": script("C2", invent=True),
        "no_answer": script("C9"),
        "too_short": script("C2", short=True),
    }
    for reason, fn in cases.items():
        (trace,) = generate_traces([("k", FACTS)], Recorder(fn))
        assert not trace.passed and trace.reject_reason == reason, reason


def test_grounding_allows_only_items_revealed_by_that_step():
    # Heat is the target: citing it at step 1 leaks the future, at step 3 it is revealed.
    early = check_grounding([f"Maybe {HEAT.cite}."], FACTS)
    assert early.invented == [HEAT.cite[1:-1]] and early.share_grounded == 0.0
    ok = check_grounding(["a", "b", f"went on to {HEAT.cite}"], FACTS)
    assert ok.invented == [] and ok.cited == [HEAT.cite[1:-1]]
    no_example = replace(FACTS, shared_example=None)
    assert check_grounding(["", f"shares {SE7EN.cite}"], no_example).invented == []  # history
