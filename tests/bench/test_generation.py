"""The generation benchmark's pure parts: prompts, token identity, accounting, the table.

No engine starts here; the measurements themselves live in bench/RESULTS.md.
"""

from __future__ import annotations

import pytest

from bench import generation as g

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


@pytest.fixture
def tiny_ml(tmp_path):
    """40 items; user 10 rated 1..13 in order, user 2 rated 13 items with a ts tie."""
    items = [f"{k}\tMovie {k}\t1990\tDrama\n" for k in range(1, 41)]
    (tmp_path / "ml-100k.item").write_text(ITEM + "".join(items))
    rows = [f"10\t{k}\t4\t{1000 + k}\n" for k in range(1, 14)]
    # user 2: items 30..20 at rising ts, then 5 and 3 at the same last ts: 5 wins the tie
    rows += [f"2\t{30 - k}\t3\t{k}\n" for k in range(11)]
    rows += ["2\t5\t3\t100\n", "2\t3\t3\t100\n"]
    (tmp_path / "ml-100k.inter").write_text(INTER + "".join(rows))
    return tmp_path


@pytest.fixture(scope="module")
def ml100k_prompts():
    from r2rec.assets import movielens_100k_dir

    return g.build_prompts(movielens_100k_dir(), 256)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _labelled(p) -> dict[str, str]:
    return dict(p.prompt.candidates)


def test_prompts_follow_the_definition(tiny_ml):
    prompts = g.build_prompts(tiny_ml, n_users=5)
    assert [p.user_id for p in prompts] == ["2", "10"]  # numeric order, not text order
    two, ten = prompts
    # ts tie at the end broken by item id: 3 before 5, so 5 is the target
    assert _labelled(two)[two.target_label] == "Movie 5"
    assert list(two.prompt.history) == [f"Movie {k}" for k in range(28, 19, -1)] + ["Movie 3"]
    assert list(ten.prompt.history) == [f"Movie {k}" for k in range(3, 13)]
    assert _labelled(ten)[ten.target_label] == "Movie 13"
    for p, rated in ((two, {*range(20, 31), 3, 5}), (ten, set(range(1, 14)))):
        labels = [label for label, _ in p.prompt.candidates]
        assert labels == [f"C{k}" for k in range(1, 21)]
        shown = {int(t.split()[1]) for _, t in p.prompt.candidates}
        assert len(shown) == 20
        target = int(_labelled(p)[p.target_label].split()[1])
        assert shown - {target} <= set(range(1, 41)) - rated  # negatives never rated


def test_prompts_are_deterministic_and_independent_of_the_user_count(tiny_ml):
    assert g.build_prompts(tiny_ml) == g.build_prompts(tiny_ml)
    assert g.build_prompts(tiny_ml, n_users=1)[0] == g.build_prompts(tiny_ml)[0]
    assert g.build_prompts(tiny_ml, seed=1) != g.build_prompts(tiny_ml)


def test_movielens_prompts(ml100k_prompts):
    from r2rec.assets import movielens_100k_dir

    prompts = ml100k_prompts
    assert [p.user_id for p in prompts] == [str(k) for k in range(1, 257)]
    assert prompts == g.build_prompts(movielens_100k_dir(), 256)
    assert all(len(p.prompt.history) == 10 and len(p.prompt.candidates) == 20 for p in prompts)
    events, titles = g.load_movielens(movielens_100k_dir())
    first = prompts[0]
    _, last_item = max(events["1"], key=lambda e: (e[0], int(e[1])))
    assert _labelled(first)[first.target_label] == titles[last_item]
    # the target label is spread over positions, not stuck at C1
    assert len({p.target_label for p in prompts}) > 10


def test_both_engines_get_the_same_token_ids(ml100k_prompts, tokenizer):
    prompts = ml100k_prompts[:12]
    ids = g.encode_prompts(tokenizer, prompts)
    assert ids == g.encode_prompts(tokenizer, prompts)
    for p, row in zip(prompts, ids, strict=True):
        text = tokenizer.apply_chat_template(
            g.render_messages(p.prompt), add_generation_prompt=True, tokenize=False
        )
        assert tokenizer.decode(row) == text
        assert text.endswith("<|im_start|>assistant\n")
    pad = g.pad_token_id(tokenizer)
    assert pad != tokenizer.eos_token_id
    for order_name in ("given", "prefix", "length"):
        order = g.prompt_order(ids, order_name)
        assert sorted(order) == list(range(len(ids)))
        vllm = g.vllm_inputs(ids, order)
        assert [x["prompt_token_ids"] for x in vllm] == [ids[k] for k in order]
        for bs in (1, 5, 12, 64):
            batches = g.hf_batches(ids, order, bs, pad)
            assert [k for idx, _, _ in batches for k in idx] == order
            for idx, rows, mask in batches:
                assert len({len(r) for r in rows}) == 1
                for k, row, m in zip(idx, rows, mask, strict=True):
                    assert [t for t, keep in zip(row, m, strict=True) if keep] == ids[k]
                    assert m == sorted(m)  # left padding: zeros first


def test_prompt_orders():
    ids = [[1, 5, 2], [1, 2], [0, 9, 9, 9], [1, 5, 1]]
    assert g.prompt_order(ids, "given") == [0, 1, 2, 3]
    assert g.prompt_order(ids, "prefix") == [2, 1, 3, 0]  # shared [1, 5] prefixes adjacent
    assert g.prompt_order(ids, "length") == [1, 0, 3, 2]
    with pytest.raises(ValueError):
        g.prompt_order(ids, "random")


def test_pad_is_endoftext_when_pad_is_eos(tokenizer):
    assert tokenizer.pad_token_id in (None, tokenizer.eos_token_id)  # SmolLM2 as shipped
    assert g.pad_token_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|endoftext|>")


def test_flop_accounting_is_exact():
    assert g.achieved_flops(1_000, 300, 100, 2.0) == 2 * 1_000 * 400 / 2.0
    run = {"wall_s": 4.0, "prompts": 8, "prompt_tokens": 3_000, "generated_tokens": 1_000}
    d = g.derive(run, n_params=5_000_000, ceiling={"float32": 2e10, "bfloat16": 5e9})
    assert d["gen_tps"] == 250.0
    assert d["prompt_tps"] == 750.0
    assert d["prompts_per_s"] == 2.0
    assert d["flops"] == 1e10  # 2 * 5e6 * 4000 / 4
    assert d["share_float32"] == 0.5
    assert d["share_bfloat16"] == 2.0


def test_matmul_params_count_tied_weights_once(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert lm.get_input_embeddings().weight is lm.get_output_embeddings().weight
    assert g.count_matmul_params(tiny_model_dir) == sum(p.numel() for p in lm.parameters())


def test_agreement():
    ref = [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert g.agreement(ref, ref) == 1.0
    assert g.agreement([[1, 2], [3, 0], [5, 6], [0, 8]], ref) == 0.5


def _row(engine, setting, dtype, batch, wall, gen=1_024, agreement=None):
    run = {
        "engine": engine,
        "setting": setting,
        "dtype": dtype,
        "batch": batch,
        "load_s": 12.34,
        "wall_s": wall,
        "prompts": 16,
        "prompt_tokens": 8_192,
        "generated_tokens": gen,
        "peak_rss_mb": 2345.6,
        "agreement": agreement,
    }
    run["derived"] = g.derive(run, 100_000_000, {"float32": 2e11, "bfloat16": 5e10})
    return run


def test_table_and_verdict_carry_the_numbers():
    rows = [
        _row("transformers", "generate, length order", "float32", 16, 8.0),
        _row("transformers", "generate, length order", "float32", 32, 4.0, agreement=1.0),
        _row("vllm", "fp32-all-cores", "float32", "all", 1.6, agreement=0.75),
    ]
    best = g.mark_best(rows)
    assert best["transformers"] is rows[1] and best["vllm"] is rows[2]
    text = g.table(rows, {"float32": 2e11, "bfloat16": 5e10})
    lines = text.splitlines()
    assert len(lines) == 2 + 3
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    # row 3: 1024/1.6 = 640 tok/s, 8192/1.6 = 5120 prompt tok/s, 10 prompts/s,
    # 2e8 * 9216 / 1.6 = 1152 GFLOP/s = 576% of fp32 and 2304% of bf16
    assert "| vllm **best** | fp32-all-cores | float32 | all | 12.3 | 1.6 | 640 | 5120 |" in text
    assert "| 10.00 | 1152.0 | 576.0 | 2304.0 | 2346 | 75% |" in text
    assert "| transformers | generate, length order | float32 | 16 |" in text
    assert "reference" in lines[2]
    verdict = g.verdict(best)
    assert "**met**" in verdict and "640 tok/s" in verdict and "256 tok/s" in verdict
    assert "2.50x" in verdict
    slow = _row("vllm", "defaults", "bfloat16", "all", 3.0)
    assert "**not met**" in g.verdict(g.mark_best([rows[1], slow]))
    assert "not evaluated" in g.verdict(g.mark_best([slow]))


def test_cpu_settings_are_well_formed():
    settings = g.vllm_settings(cuda=False)
    assert settings["defaults"].engine == {} and settings["defaults"].env == {}
    for s in [*settings.values(), *g.vllm_settings(cuda=True).values()]:
        assert s.order in ("given", "prefix", "length")
        g.prompt_order([[1], [2]], s.order)
