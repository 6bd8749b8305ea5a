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
    monkeypatch.delenv("R2REC_VLLM_KV_CACHE_GIB", raising=False)
    monkeypatch.delenv("R2REC_VLLM_EAGER", raising=False)
    monkeypatch.delenv("VLLM_USE_AOT_COMPILE", raising=False)
    monkeypatch.delenv(assets.DTYPE_ENV, raising=False)


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
    # vllm-cpu cannot load its own AOT artifact back; its older compile cache it can
    assert os.environ["VLLM_USE_AOT_COMPILE"] == "0"


def test_hardware_bf16_runs_bfloat16_and_an_explicit_binding_wins(cpu_only, monkeypatch):
    import os

    monkeypatch.setattr(assets, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
    monkeypatch.setenv("R2REC_VLLM_MEMORY_FRACTION", "0.1")
    monkeypatch.setenv("R2REC_VLLM_BLOCK_SIZE", "64")
    monkeypatch.setenv("VLLM_USE_AOT_COMPILE", "1")
    args = assets.vllm_engine_args()
    assert os.environ["VLLM_USE_AOT_COMPILE"] == "1"  # an operator's choice is kept
    assert args["dtype"] == "bfloat16" and args["gpu_memory_utilization"] == 0.1
    assert args["block_size"] == 64
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert assets.vllm_engine_args(dtype="float32")["dtype"] == "float32"  # caller wins


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("forced", ["float32", "bfloat16"])
def test_r2rec_dtype_forces_either_path_on_any_cpu(cpu_only, monkeypatch, native, forced):
    monkeypatch.setattr(assets, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setenv(assets.DTYPE_ENV, forced)
    assert assets.vllm_engine_args()["dtype"] == forced


def test_an_absolute_kv_cache_replaces_the_memory_fraction(cpu_only, monkeypatch):
    monkeypatch.setenv("R2REC_VLLM_KV_CACHE_GIB", "0.25")
    args = assets.vllm_engine_args()
    assert args["kv_cache_memory_bytes"] == 1 << 28 and "gpu_memory_utilization" not in args
    assert "enforce_eager" not in args  # compiled unless asked
    monkeypatch.setenv("R2REC_VLLM_EAGER", "1")
    assert assets.vllm_engine_args()["enforce_eager"] is True


def test_gpus_keep_the_model_dtype_unless_forced(monkeypatch):
    monkeypatch.delenv(assets.DTYPE_ENV, raising=False)
    assert assets.model_dtype(cuda=True) is None
    monkeypatch.setenv(assets.DTYPE_ENV, "bfloat16")
    assert assets.model_dtype(cuda=True) == "bfloat16"


def test_an_unknown_dtype_is_refused_with_the_choices(monkeypatch):
    from r2rec.errors import R2RecError

    monkeypatch.setenv(assets.DTYPE_ENV, "float16; rm -rf /")
    with pytest.raises(R2RecError, match="R2REC_DTYPE must be one of float32, bfloat16"):
        assets.model_dtype(cuda=False)


def test_close_engine_stops_the_engine_core_and_the_rollout_starts_a_new_one(tmp_path):
    from types import SimpleNamespace

    from r2rec.assets import close_engine
    from trainer.rollout import VLLMRollout

    stopped = []
    llm = SimpleNamespace(
        llm_engine=SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda: stopped.append(1)))
    )
    close_engine(llm)
    close_engine(None)  # never started: nothing to stop
    assert stopped == [1]
    rollout = VLLMRollout("unused", tmp_path, max_tokens=8, temperature=1.0, lora_rank=8)
    rollout._llm, rollout._loaded = llm, (3, tmp_path / "step-3")
    rollout.close()
    assert stopped == [1, 1] and rollout._llm is None and rollout._loaded is None
