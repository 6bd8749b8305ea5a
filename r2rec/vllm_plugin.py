"""A vLLM general plugin: LoRA on CPU without a copy of the adapter's weights per token.

vLLM's CPU LoRA ops (``vllm.lora.ops.torch_ops``) gather each token's adapter matrices
(``weights[indices]``, a ``(tokens, out, in)`` copy) and multiply them with a batched
einsum, for every LoRA-wrapped layer. Through SmolLM2-135M's 210 adapted projections
at rank 16 that is about 10 MB of bfloat16 copies per token (GBs for a 540-token
prompt), and decoding pays the gather and a batched matmul of 1-row matrices on every
step: on our 2-core CPU, four 160-token completions took 20 s with a LoRA adapter and
7 s without (bench/RESULTS.md). GRPO's rollout serves each step's adapter that way
(scoring merges the champion's adapter on CPU unless told not to).

Here each distinct adapter of a batch is one matrix product over its tokens; a batch
serving one adapter (GRPO, unmerged serving) is one ``mm``. Same results as vLLM's ops (a test
compares them, to bfloat16 rounding). vLLM loads this module in every process that
runs a model (entry point ``vllm.general_plugins``, see pyproject.toml), where
:func:`register` swaps the functions its CPU Punica wrapper calls.
``R2REC_VLLM_LORA_OPS=vllm`` keeps vLLM's own (for comparison).
"""

from __future__ import annotations

import logging
import os

# Under vLLM's logger, so the line shows in the engine's log where vLLM's plugin lines do.
log = logging.getLogger("vllm.plugins.r2rec")

_OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")


def _matrices(weights, index: int, dtype):
    w = weights[index]
    if w.dim() == 3:  # (1, out, in): the 4-D stacking vLLM squeezes
        w = w.squeeze(0)
    return w.to(dtype=dtype)


def lora_product(inputs, weights, indices, dtype):
    """``out[t] = inputs[t] @ weights[indices[t]].T``, as vLLM's einsum over per-token
    copies computes it, with one matrix product per distinct adapter index (negative
    indices wrap, as tensor indexing does there)."""
    import torch

    if indices.numel() == 0 or indices.numel() != inputs.shape[0]:
        return None
    inputs = inputs.to(dtype=dtype)
    first = int(indices[0])
    if bool((indices == first).all()):
        return inputs @ _matrices(weights, first, dtype).T
    out = None
    for index in torch.unique(indices).tolist():
        rows = indices == index
        part = inputs[rows] @ _matrices(weights, index, dtype).T
        if out is None:
            out = inputs.new_zeros((inputs.shape[0], part.shape[1]))
        out[rows] = part
    return out


def _with_fallback(original, body):
    """``body``, or vLLM's ``original`` where the shapes are not the ones it handles."""

    def op(inputs, weights, output_tensor, indices, *args, **kwargs):
        outputs = lora_product(inputs, weights, indices, output_tensor.dtype)
        if outputs is None:
            return original(inputs, weights, output_tensor, indices, *args, **kwargs)
        return body(outputs, output_tensor, *args, **kwargs)

    op.__name__ = original.__name__
    op.__doc__ = f"r2rec.vllm_plugin's {original.__name__}: one product per adapter."
    op.r2rec = True
    op.original = original
    return op


def _shrink(outputs, output_tensor, scaling: float = 1.0):
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def _expand(outputs, output_tensor, add_inputs: bool = True):
    # as vLLM's: one row broadcast to all, and the shorter width where they are padded
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    width = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :width] += outputs[:limit, :width]
    else:
        output_tensor[:, :width] = outputs[:limit, :width]


def _expand_slice(outputs, output_tensor, slice_offset: int, slice_size: int,
                  add_inputs: bool = True):  # fmt: skip
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs


def register() -> None:
    """vLLM's plugin hook: replace its CPU LoRA ops in this process (idempotent)."""
    if os.environ.get("R2REC_VLLM_LORA_OPS", "").strip() == "vllm":
        return
    try:
        from vllm.lora.ops import torch_ops
        from vllm.lora.ops.torch_ops import lora_ops
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError as exc:  # another vLLM layout: leave it as it is, and say so
        log.warning("r2rec: vLLM's CPU LoRA ops not found (%s); using vLLM's own", exc)
        return
    bodies = {"bgmv_shrink": _shrink, "bgmv_expand": _expand, "bgmv_expand_slice": _expand_slice}
    for name in _OPS:
        original = getattr(lora_ops, name)
        if getattr(original, "r2rec", False):
            continue
        op = _with_fallback(original, bodies[name])
        # lora_ops' sgmv_* (prefill) call these through the module's globals;
        # punica_cpu imported the names themselves for decoding.
        setattr(lora_ops, name, op)
        for module in (torch_ops, punica_cpu):
            if getattr(module, name, None) is original:
                setattr(module, name, op)
    log.info("r2rec: vLLM's CPU LoRA ops replaced (one matrix product per adapter)")
