"""Engine defaults for CPU machines: the settings the generation benchmark measured."""

from __future__ import annotations

import pytest

from r2rec import assets


@pytest.fixture
def cpu_only(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.delenv("R2REC_VLLM_MEMORY_FRACTION", raising=False)


def test_cpu_without_hardware_bf16_runs_float32_on_every_core(cpu_only, monkeypatch):
    import os

    monkeypatch.setattr(assets, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 3})
    args = assets.vllm_engine_args(max_model_len=1024)
    assert args["dtype"] == "float32"
    assert args["gpu_memory_utilization"] == 0.3
    assert args["max_model_len"] == 1024 and args["enable_prefix_caching"] is True
    assert args["block_size"] == 32  # CPU default 128 caches too coarsely for label requests
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0,1,3"


def test_hardware_bf16_keeps_the_model_dtype_and_an_explicit_binding_wins(cpu_only, monkeypatch):
    import os

    monkeypatch.setattr(assets, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
    monkeypatch.setenv("R2REC_VLLM_MEMORY_FRACTION", "0.1")
    monkeypatch.setenv("R2REC_VLLM_BLOCK_SIZE", "64")
    args = assets.vllm_engine_args()
    assert "dtype" not in args and args["gpu_memory_utilization"] == 0.1
    assert args["block_size"] == 64
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert assets.vllm_engine_args(dtype="bfloat16")["dtype"] == "bfloat16"  # caller wins
