"""Shared fixtures: one local SparkSession for the whole run, a fresh lakehouse per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("R2REC_SPARK_SHUFFLE_PARTITIONS", "4")
# Tests' vLLM engines (tiny models, a few requests) get a small absolute KV cache: a share
# of RAM depends on the machine's NUMA node size and the worker's own memory.
os.environ.setdefault("R2REC_VLLM_KV_CACHE_GIB", "0.25")
# and start without graph compilation (half the start time; they run a few requests).
os.environ.setdefault("R2REC_VLLM_EAGER", "1")


@pytest.fixture(scope="session")
def spark():
    from r2rec.config import SparkConfig
    from spark_jobs.session import get_spark

    session = get_spark(SparkConfig(master="local[2]", driver_memory="2g", shuffle_partitions=4))
    yield session
    session.stop()


@pytest.fixture
def lakehouse(tmp_path):
    from r2rec.lakehouse import Lakehouse

    return Lakehouse(str(tmp_path / "lakehouse"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random 2-layer Llama with SmolLM2's tokenizer: a real model for vLLM and trl, fast."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from r2rec.assets import smollm2_gguf

    torch.manual_seed(0)

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,  # CPU attention kernels need head_dim >= 32
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)
