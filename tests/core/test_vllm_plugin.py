"""r2rec.vllm_plugin: vLLM's CPU LoRA ops, one matrix product per adapter.

Each replacement is compared with the vLLM function it replaces on the shapes vLLM
gives it. The end-to-end check (a LoRA-served engine equals the merged model) is
tests/inference/test_score_vllm.py's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")


def ops():
    from vllm.lora.ops.torch_ops import lora_ops

    from r2rec import vllm_plugin

    vllm_plugin.register()  # idempotent; vLLM may have loaded it in this process already
    return {name: getattr(lora_ops, name) for name in vllm_plugin._OPS}


CASES = [
    ("one adapter", [0, 0, 0, 0, 0]),
    ("two adapters and no adapter (-1)", [1, -1, 0, 1, -1, 0, 0]),
    ("one token", [2]),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case,indices", CASES)
@pytest.mark.parametrize("stacked", [False, True])  # (loras, out, in) or (loras, 1, out, in)
def test_each_op_computes_what_vllms_does(dtype, case, indices, stacked):
    gen = torch.Generator().manual_seed(len(indices))
    idx = torch.tensor(indices)
    tokens, hidden, rank, out = len(indices), 24, 4, 40

    def weights(o, i):
        w = torch.randn(3, o, i, generator=gen)
        return w[:, None] if stacked else w

    x = torch.randn(tokens, hidden, generator=gen).to(dtype)
    a, b = weights(rank, hidden), weights(out, rank)
    h = torch.randn(tokens, rank, generator=gen).to(dtype)
    base = torch.randn(tokens, out + 8, generator=gen).to(dtype)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 0.1, "rtol": 2e-2}
    for name, op in ops().items():
        assert op.r2rec and op.original is not op
        for add in (True, False):
            start = torch.zeros(tokens, rank, dtype=dtype) if name == "bgmv_shrink" else base
            ours, theirs = start.clone(), start.clone()
            if name == "bgmv_shrink":
                op(x, a, ours, idx, 0.5)
                op.original(x, a, theirs, idx, 0.5)
            elif name == "bgmv_expand":
                op(h, b, ours, idx, add)
                op.original(h, b, theirs, idx, add)
            else:
                op(h, b, ours, idx, 3, out, add)
                op.original(h, b, theirs, idx, 3, out, add)
            assert not torch.equal(ours, start), (name, case)
            torch.testing.assert_close(ours, theirs, **tol, msg=f"{name} {case} add={add}")


def test_a_batch_it_does_not_handle_goes_to_vllms_op():
    """Indices that do not match the tokens one to one: vLLM's own op decides (here,
    broadcasting one index)."""
    op = ops()["bgmv_shrink"]
    x, a = torch.randn(3, 8), torch.randn(2, 4, 8)
    ours, theirs = torch.zeros(3, 4), torch.zeros(3, 4)
    op(x, a, ours, torch.tensor([1]), 1.0)
    op.original(x, a, theirs, torch.tensor([1]), 1.0)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours, x @ a[1].T)


def _replaced_in_fresh_process(env: dict) -> str:
    code = (
        "from r2rec.vllm_plugin import register; register(); register()\n"
        "from vllm.lora.punica_wrapper import punica_cpu as p\n"
        "from vllm.lora.ops.torch_ops import lora_ops as o\n"
        "names = ('bgmv_shrink', 'bgmv_expand', 'bgmv_expand_slice')\n"
        "ops = [getattr(m, n) for m in (p, o) for n in names]\n"
        "print(sorted({getattr(op, 'r2rec', False) for op in ops}))\n"
        "# a second register() must not wrap the wrapper\n"
        "print(not any(getattr(getattr(op, 'original', None), 'r2rec', False) for op in ops))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return out.stdout


def test_register_replaces_the_ops_punica_calls_once_and_the_switch_keeps_vllms():
    # replaced where punica_cpu and lora_ops look them up, and a second register() does
    # not wrap the wrapper
    assert _replaced_in_fresh_process({"R2REC_VLLM_LORA_OPS": ""}) == "[True]\nTrue\n"
    assert _replaced_in_fresh_process({"R2REC_VLLM_LORA_OPS": "vllm"}).startswith("[False]\n")


def test_the_plugin_is_registered_for_vllm():
    """vLLM loads general plugins from this entry point in each process that runs a
    model (the engine core and its workers), so the install must declare it."""
    plugins = {e.value for e in entry_points(group="vllm.general_plugins")}
    assert "r2rec.vllm_plugin:register" in plugins
