"""Benchmark: the same recommendation prompts through vLLM and through transformers generate.

    python -m bench.generation [--prompts 256] [--new-tokens 64] [--batch-sizes 16,32,64,128]
        [--engines vllm,transformers] [--model PATH] [--vllm-settings a,b] [--hf-dtypes a,b]
        [--record bench/RESULTS.md]

Prompts are built from MovieLens-100k through the prompt contract (r2rec.prompt), run
through the tokenizer's chat template once, and the same token ids go to both engines.
Decoding is greedy with EOS ignored, so every prompt yields exactly ``--new-tokens``
tokens in both engines and the outputs can be compared token for token.

Each configuration runs in its own process (as bench/pipeline.py does), so peak RSS,
thread pools and allocator state never mix; engine or model load is timed apart from
generation, after one small warm-up call. The ceiling is this machine's matmul rate
(fp32 and bf16); each run's achieved FLOP/s ~ 2 x params x (prompt + generated tokens) /
wall time is reported as a share of it. The device is chosen automatically: the same
command runs on a CUDA node with a 1-8B model given by ``--model``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from r2rec.prompt import RecPrompt, render_messages

HISTORY_LEN = 10
N_CANDIDATES = 20
SEED = 0
HEADING = "## Generation: vLLM vs transformers (issue 5)"
TARGET_SPEEDUP = 2.0


# ---------------------------------------------------------------------------------------
# Prompts: pure, deterministic, no model needed
# ---------------------------------------------------------------------------------------


def _id_key(value: str) -> tuple:
    # Numeric ids sort as numbers ("2" before "10"), anything else after them as text.
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def _columns(header: str) -> list[str]:
    # RecBole atomic files name columns "user_id:token"; the type suffix is not needed.
    return [name.split(":", 1)[0] for name in header.rstrip("\n").split("\t")]


def load_movielens(directory: Path) -> tuple[dict[str, list[tuple[int, str]]], dict[str, str]]:
    """Per user the (ts, item) events, and per item its title."""
    directory = Path(directory)
    events: dict[str, list[tuple[int, str]]] = {}
    with open(directory / "ml-100k.inter", encoding="utf-8") as fh:
        cols = _columns(next(fh))
        u, i, t = cols.index("user_id"), cols.index("item_id"), cols.index("timestamp")
        for line in fh:
            f = line.rstrip("\n").split("\t")
            events.setdefault(f[u], []).append((int(float(f[t])), f[i]))
    titles: dict[str, str] = {}
    with open(directory / "ml-100k.item", encoding="latin-1") as fh:
        cols = _columns(next(fh))
        i, title = cols.index("item_id"), cols.index("movie_title")
        for line in fh:
            f = line.rstrip("\n").split("\t")
            titles[f[i]] = f[title].strip() or "(untitled)"
    return events, titles


@dataclass(frozen=True)
class BenchPrompt:
    user_id: str
    prompt: RecPrompt
    target_label: str


def build_prompts(
    directory: Path,
    n_users: int = 256,
    history_len: int = HISTORY_LEN,
    n_candidates: int = N_CANDIDATES,
    seed: int = SEED,
) -> list[BenchPrompt]:
    """One prompt per user for the first ``n_users`` user ids in sorted order.

    The target is the user's last event (by ts, then item); the history is the
    ``history_len`` events before it, oldest first; the candidates are the target plus
    items the user never rated, in a seeded shuffled order labelled C1..CN.
    """
    import numpy as np

    from r2rec.seeding import stable_hash

    events, items = load_movielens(directory)
    pool = sorted(items, key=_id_key)
    out = []
    for user in sorted(events, key=_id_key)[:n_users]:
        seq = [item for _, item in sorted(events[user], key=lambda e: (e[0], _id_key(e[1])))]
        target, history = seq[-1], seq[:-1][-history_len:]
        rated = set(seq)
        unrated = [item for item in pool if item not in rated]
        # Seeded per user, so a user's prompt does not depend on how many users are asked for.
        rng = np.random.default_rng(stable_hash("bench.generation", seed, user))
        negatives = [unrated[k] for k in rng.choice(len(unrated), n_candidates - 1, replace=False)]
        shown = [[target, *negatives][k] for k in rng.permutation(n_candidates)]
        labels = [f"C{k}" for k in range(1, n_candidates + 1)]
        candidates = [(label, items[item]) for label, item in zip(labels, shown, strict=True)]
        out.append(
            BenchPrompt(
                user_id=user,
                prompt=RecPrompt([items[item] for item in history], candidates),
                target_label=labels[shown.index(target)],
            )
        )
    return out


def encode_prompts(tokenizer, prompts: Sequence[BenchPrompt]) -> list[list[int]]:
    """Chat template applied once; both engines get exactly these ids."""
    ids = []
    for p in prompts:
        out = tokenizer.apply_chat_template(
            render_messages(p.prompt), add_generation_prompt=True, tokenize=True
        )
        # transformers 5 returns a BatchEncoding here, 4.x a plain list.
        ids.append(list(out["input_ids"] if hasattr(out, "keys") else out))
    return ids


def prompt_order(ids: Sequence[Sequence[int]], order: str) -> list[int]:
    """Indices in the order prompts are submitted.

    ``prefix`` sorts the token lists, so prompts that share a prefix are adjacent and a
    prefix cache keeps the shared blocks hot; ``length`` groups similar lengths, so
    padded batches waste little; ``given`` keeps user order.
    """
    if order == "given":
        return list(range(len(ids)))
    if order == "prefix":
        return sorted(range(len(ids)), key=lambda k: list(ids[k]))
    if order == "length":
        return sorted(range(len(ids)), key=lambda k: len(ids[k]))
    raise ValueError(f"unknown order {order!r}")


def vllm_inputs(ids: Sequence[Sequence[int]], order: Sequence[int]) -> list[dict]:
    return [{"prompt_token_ids": list(ids[k])} for k in order]


def hf_batches(
    ids: Sequence[Sequence[int]], order: Sequence[int], batch_size: int, pad_id: int
) -> list[tuple[list[int], list[list[int]], list[list[int]]]]:
    """Left-padded batches: (prompt indices, input ids, attention mask), plain lists."""
    out = []
    for start in range(0, len(order), batch_size):
        idx = list(order[start : start + batch_size])
        width = max(len(ids[k]) for k in idx)
        rows = [[pad_id] * (width - len(ids[k])) + list(ids[k]) for k in idx]
        mask = [[0] * (width - len(ids[k])) + [1] * len(ids[k]) for k in idx]
        out.append((idx, rows, mask))
    return out


def pad_token_id(tokenizer) -> int:
    """A pad id that is not EOS: a pad equal to EOS would read as 'stop' to generate."""
    pad = tokenizer.pad_token_id
    if pad is None or pad == tokenizer.eos_token_id:
        pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        if pad is None or pad == tokenizer.unk_token_id or pad == tokenizer.eos_token_id:
            pad = 0
    return pad


# ---------------------------------------------------------------------------------------
# Accounting and rendering: pure
# ---------------------------------------------------------------------------------------


def achieved_flops(n_params: int, prompt_tokens: int, generated_tokens: int, seconds: float):
    """~2 FLOPs per matmul parameter per token processed (attention and padding ignored)."""
    return 2.0 * n_params * (prompt_tokens + generated_tokens) / seconds


def derive(run: dict, n_params: int, ceiling: dict[str, float]) -> dict:
    """Rates and the share of the matmul ceiling for one measured run."""
    wall = run["wall_s"]
    flops = achieved_flops(n_params, run["prompt_tokens"], run["generated_tokens"], wall)
    out = {
        "gen_tps": run["generated_tokens"] / wall,
        "prompt_tps": run["prompt_tokens"] / wall,
        "prompts_per_s": run["prompts"] / wall,
        "flops": flops,
    }
    for dtype, rate in ceiling.items():
        out[f"share_{dtype}"] = flops / rate
    return out


def agreement(outputs: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Share of prompts whose generated tokens are identical to the reference run's."""
    if not reference:
        return float("nan")
    same = sum(list(a) == list(b) for a, b in zip(outputs, reference, strict=True))
    return same / len(reference)


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _fmt(value, spec: str) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return format(value, spec)


def table(rows: Sequence[dict], ceiling: dict[str, float]) -> str:
    dtypes = list(ceiling)
    head = (
        "| engine | setting | dtype | batch | load s | wall s | gen tok/s | prompt tok/s "
        "| prompts/s | GFLOP/s | "
        + " | ".join(f"% {d} matmul" for d in dtypes)
        + " | peak RSS MB | same output | load 1m |\n"
        + "|---" * (13 + len(dtypes))
        + "|\n"
    )
    lines = []
    for r in rows:
        d = r["derived"]
        shares = " | ".join(_fmt(100 * d[f"share_{dt}"], ".1f") for dt in dtypes)
        best = " **best**" if r.get("best") else ""
        load = "→".join(f"{x:.1f}" for x in r.get("load_1m", [])) or "—"
        same = "reference" if r.get("agreement") is None else f"{100 * r['agreement']:.0f}%"
        lines.append(
            f"| {r['engine']}{best} | {r['setting']} | {r['dtype']} | {r['batch']} "
            f"| {r['load_s']:.1f} | {r['wall_s']:.1f} | {_rate(d['gen_tps'])} "
            f"| {_rate(d['prompt_tps'])} | {d['prompts_per_s']:.2f} | {d['flops'] / 1e9:.1f} "
            f"| {shares} | {r['peak_rss_mb']:.0f} | {same} | {load} |"
        )
    return head + "\n".join(lines) + "\n"


def mark_best(rows: list[dict]) -> dict[str, dict]:
    """Flag each engine's fastest run (generated tokens/s); return them by engine."""
    best: dict[str, dict] = {}
    for r in rows:
        r["best"] = False
        cur = best.get(r["engine"])
        if cur is None or r["derived"]["gen_tps"] > cur["derived"]["gen_tps"]:
            best[r["engine"]] = r
    for r in best.values():
        r["best"] = True
    return best


def verdict(best: dict[str, dict]) -> str:
    if "vllm" not in best or "transformers" not in best:
        return "Target (vLLM ≥ 2x transformers generated tokens/s): not evaluated (one engine run)."
    v, t = best["vllm"], best["transformers"]
    ratio = v["derived"]["gen_tps"] / t["derived"]["gen_tps"]
    met = "**met**" if ratio >= TARGET_SPEEDUP else "**not met**"
    return (
        f"Target: vLLM ≥ {TARGET_SPEEDUP:.0f}x transformers generated tokens/s: {met} — "
        f"best vLLM ({v['setting']}, {v['dtype']}) {v['derived']['gen_tps']:.0f} tok/s vs best "
        f"transformers ({t['dtype']}, batch {t['batch']}) {t['derived']['gen_tps']:.0f} tok/s "
        f"= {ratio:.2f}x."
    )


# ---------------------------------------------------------------------------------------
# vLLM engine settings tried, per device
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VLLMSetting:
    name: str
    why: str
    engine: dict = field(default_factory=dict)  # overrides of r2rec.assets.vllm_engine_args
    env: dict = field(default_factory=dict)  # set for the child only (CPU thread binding)
    order: str = "given"


def _all_cores_env() -> dict:
    # vLLM's CPU auto-binding keeps one core per worker for its scheduler process; on a
    # 2-core machine that leaves the model one OpenMP thread. Bind the worker to every
    # core instead and let the (mostly idle) scheduler share.
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus))} if cpus else {}


def _iomp_env() -> dict:
    # vLLM's CPU guide preloads Intel OpenMP; the intel-openmp wheel puts it in the venv.
    lib = Path(sys.prefix) / "lib" / "libiomp5.so"
    preload = ":".join(p for p in (str(lib), os.environ.get("LD_PRELOAD", "")) if p)
    return {"LD_PRELOAD": preload} if lib.exists() else {}


def vllm_settings(cuda: bool) -> dict[str, VLLMSetting]:
    if cuda:
        settings = [
            VLLMSetting("defaults", "r2rec.assets.vllm_engine_args() as shipped"),
            VLLMSetting("prefix-sorted", "defaults, prompts in token order", order="prefix"),
            VLLMSetting(
                "no-prefix-cache",
                "prefix caching off, prompts in token order",
                engine={"enable_prefix_caching": False},
                order="prefix",
            ),
        ]
    else:
        cores, fp32 = _all_cores_env(), {"dtype": "float32"}
        tuned = "fp32-all-cores"
        settings = [
            VLLMSetting("defaults", "r2rec.assets.vllm_engine_args() as shipped"),
            VLLMSetting("all-cores", "defaults, worker bound to all cores", env=cores),
            VLLMSetting("fp32", "defaults, dtype float32", engine=fp32),
            VLLMSetting(tuned, "float32, all cores", fp32, cores),
            VLLMSetting(
                f"{tuned}-sorted", f"as {tuned}, prompts in token order", fp32, cores, "prefix"
            ),
            VLLMSetting(
                f"{tuned}-no-prefix-cache",
                f"as {tuned}, prefix caching off",
                {**fp32, "enable_prefix_caching": False},
                cores,
            ),
            VLLMSetting(
                f"{tuned}-big-steps",
                f"as {tuned}, max_num_batched_tokens 16384",
                {**fp32, "max_num_batched_tokens": 16384},
                cores,
            ),
            VLLMSetting(
                f"{tuned}-eager",
                f"as {tuned}, enforce_eager (no torch.compile)",
                {**fp32, "enforce_eager": True},
                cores,
            ),
            VLLMSetting(
                f"{tuned}-iomp",
                f"as {tuned}, Intel OpenMP preloaded",
                fp32,
                {**cores, **_iomp_env()},
            ),
        ]
    return {s.name: s for s in settings}


# ---------------------------------------------------------------------------------------
# Children: one engine configuration per process
# ---------------------------------------------------------------------------------------


def _load_ids(path: str) -> list[list[int]]:
    return json.loads(Path(path).read_text())["ids"]


def run_transformers(
    model: str, ids_path: str, new_tokens: int, batch_size: int, dtype: str, order: str
) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.pipeline import PeakRSS

    ids = _load_ids(ids_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with PeakRSS() as mem:
        t = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).to(device)
        lm.eval()
        # Without an EOS, generate neither stops nor masks EOS: plain argmax for exactly
        # new_tokens steps, as vLLM's ignore_eos. (eos=None passed to generate() is
        # refilled from the model's config; clearing it here is not.)
        lm.generation_config.eos_token_id = None
        pad = pad_token_id(tokenizer)
        load_s = time.perf_counter() - t

        def generate(batch, n):
            _, rows, mask = batch
            out = lm.generate(
                input_ids=torch.tensor(rows, device=device),
                attention_mask=torch.tensor(mask, device=device),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=pad,
            )
            return out[:, len(rows[0]) :].tolist()

        batches = hf_batches(ids, prompt_order(ids, order), batch_size, pad)
        t = time.perf_counter()
        generate(hf_batches(ids, range(2), 2, pad)[0], 4)
        sync()
        warmup_s = time.perf_counter() - t
        outputs: list[list[int] | None] = [None] * len(ids)
        load = [os.getloadavg()[0]]
        t = time.perf_counter()
        for batch in batches:
            for k, gen in zip(batch[0], generate(batch, new_tokens), strict=True):
                outputs[k] = gen
        sync()
        wall_s = time.perf_counter() - t
        load.append(os.getloadavg()[0])
    return {
        "engine": "transformers",
        "setting": f"generate, {order} order",
        "dtype": str(lm.dtype).removeprefix("torch."),
        "batch": batch_size,
        "device": device,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "wall_s": wall_s,
        "load_1m": load,
        "prompts": len(ids),
        "prompt_tokens": sum(map(len, ids)),
        "padded_prompt_tokens": sum(len(b[1]) * len(b[1][0]) for b in batches),
        "generated_tokens": sum(map(len, outputs)),
        "peak_rss_mb": mem.peak / 2**20,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "outputs": outputs,
    }


def run_vllm(model: str, ids_path: str, new_tokens: int, setting: str) -> dict:
    import torch

    from bench.pipeline import PeakRSS
    from r2rec.assets import vllm_engine_args

    cuda = torch.cuda.is_available()
    s = vllm_settings(cuda)[setting]
    ids = _load_ids(ids_path)
    order = prompt_order(ids, s.order)
    with PeakRSS() as mem:
        t = time.perf_counter()
        from vllm import LLM, SamplingParams

        llm = LLM(model=model, **vllm_engine_args(**s.engine))
        load_s = time.perf_counter() - t

        def params(n):
            return SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, seed=0)

        t = time.perf_counter()
        llm.generate(vllm_inputs(ids, range(2)), params(4), use_tqdm=False)
        # The timed run must not start with the warm-up's prompts already cached.
        llm.reset_prefix_cache()
        warmup_s = time.perf_counter() - t
        load = [os.getloadavg()[0]]
        t = time.perf_counter()
        results = llm.generate(vllm_inputs(ids, order), params(new_tokens), use_tqdm=False)
        wall_s = time.perf_counter() - t
        load.append(os.getloadavg()[0])
        config = llm.llm_engine.vllm_config
        dtype = str(config.model_config.dtype).removeprefix("torch.")
        engine = {
            "max_num_seqs": config.scheduler_config.max_num_seqs,
            "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
            "enable_prefix_caching": config.cache_config.enable_prefix_caching,
            "enforce_eager": config.model_config.enforce_eager,
        }
    outputs: list[list[int] | None] = [None] * len(ids)
    for k, r in zip(order, results, strict=True):
        if list(r.prompt_token_ids) != ids[k]:
            raise RuntimeError(f"vLLM changed prompt {k}'s token ids")
        outputs[k] = list(r.outputs[0].token_ids)
    return {
        "engine": "vllm",
        "setting": setting,
        "why": s.why,
        "engine_config": engine,
        "env": s.env,
        "order": s.order,
        "dtype": dtype,
        "batch": "all",
        "device": "cuda" if cuda else "cpu",
        "load_s": load_s,
        "warmup_s": warmup_s,
        "wall_s": wall_s,
        "load_1m": load,
        "prompts": len(ids),
        "prompt_tokens": sum(map(len, ids)),
        "cached_prompt_tokens": sum(r.num_cached_tokens or 0 for r in results),
        "generated_tokens": sum(map(len, outputs)),
        "peak_rss_mb": mem.peak / 2**20,
        "gpu_peak_mb": None,
        "outputs": outputs,
    }


def matmul_rate(dtype: str, seconds: float = 3.0) -> float:
    """FLOP/s of repeated square matmuls on all threads (the device's dense ceiling)."""
    import torch

    cuda = torch.cuda.is_available()
    n = 8192 if cuda else 2048
    dev = "cuda" if cuda else "cpu"
    a = torch.randn(n, n, dtype=getattr(torch, dtype), device=dev)
    b = torch.randn(n, n, dtype=getattr(torch, dtype), device=dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    a @ b
    sync()
    count, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ b
        count += 1
        if cuda and count % 10:
            continue
        sync()
    sync()
    return 2.0 * n**3 * count / (time.perf_counter() - t)


def count_matmul_params(model: str) -> int:
    """Parameters that take part in a matmul per token: all but an untied input embedding."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in lm.parameters())  # tied weights are counted once
    emb, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    if head is None or emb.weight is not head.weight:
        total -= emb.weight.numel()  # a lookup, not a matmul
    return total


def _child_main(args) -> None:
    if args.child == "transformers":
        out = run_transformers(
            args.model, args.ids, args.new_tokens, args.batch, args.dtype, args.order
        )
    elif args.child == "vllm":
        out = run_vllm(args.model, args.ids, args.new_tokens, args.setting)
    else:
        out = {d: matmul_rate(d) for d in args.dtype.split(",")}
    Path(args.out).write_text(json.dumps(out))


def _child(
    argv: list[str], workdir: Path, name: str, timeout: float, env: dict, resume: bool = False
) -> dict | None:
    """Run one configuration in a fresh process; its (huge) logs go to a file."""
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    cmd = [sys.executable, "-m", "bench.generation", "--child", *argv, "--out", str(out)]
    print(f"  {name} ... ", end="", flush=True)
    if resume and out.exists():
        print("measured before (--resume)", flush=True)
        return json.loads(out.read_text())
    out.unlink(missing_ok=True)
    try:
        with open(log, "w") as fh:
            done = subprocess.run(
                cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, env={**os.environ, **env}
            )
    except subprocess.TimeoutExpired:
        print(f"stopped after {timeout:.0f} s (log: {log})", flush=True)
        return None
    if done.returncode != 0 or not out.exists():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        print(f"failed (rc {done.returncode}, log: {log}):\n{tail}", flush=True)
        return None
    result = json.loads(out.read_text())
    if isinstance(result, dict) and "wall_s" in result:
        print(f"{result['wall_s']:.1f} s, load {result['load_s']:.1f} s", flush=True)
    else:
        print("done", flush=True)
    return result


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


def machine() -> str:
    import importlib.metadata as md

    from bench import machine as cpu_machine

    versions = []
    for dist in ("torch", "transformers", "vllm", "vllm-cpu"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions.append(f"{dist} {md.version(dist)}")
    desc = f"{cpu_machine()}, {', '.join(versions)}"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
        desc += f"; GPU {gpu.splitlines()[0]}" if gpu else ""
    return desc


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch-sizes", default="16,32,64,128")
    p.add_argument("--engines", default="vllm,transformers")
    p.add_argument("--model", help="a Hugging Face model dir (default: SmolLM2-135M-Instruct)")
    p.add_argument("--vllm-settings", help="comma list; default: all for the device")
    p.add_argument(
        "--hf-dtypes",
        help="comma list; the first sweeps --batch-sizes, the others run at its best batch "
        "(default: float32,bfloat16 on CPU, bfloat16 on CUDA)",
    )
    p.add_argument(
        "--movielens-dir",
        help="MovieLens-100k atomic files (default: the recbole wheel's copy); for nodes "
        "without the project's packages",
    )
    p.add_argument("--hf-order", default="length", choices=["given", "prefix", "length"])
    p.add_argument("--matmul-dtypes", default="float32,bfloat16")
    p.add_argument("--timeout", type=float, default=3600, help="per configuration, seconds")
    p.add_argument("--workdir", help="where children's logs and results go (default: a tmp dir)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse configurations already measured in --workdir on the same prompts",
    )
    p.add_argument("--record", help="append the table to this Markdown file")
    p.add_argument("--child", choices=["transformers", "vllm", "matmul"], help=argparse.SUPPRESS)
    for hidden in ("--ids", "--out", "--setting", "--dtype", "--order"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child_main(args)
        return

    from transformers import AutoTokenizer

    load_start = os.getloadavg()
    if args.model:
        model = args.model
    else:
        from r2rec.assets import default_model_dir

        model = str(default_model_dir())
    cuda = _cuda()
    engines = [e for e in args.engines.split(",") if e]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="r2rec-bench-generation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"model {model}; device {'cuda' if cuda else 'cpu'}; logs in {workdir}", flush=True)

    if args.movielens_dir:
        ml_dir = Path(args.movielens_dir)
    else:
        from r2rec.assets import movielens_100k_dir

        ml_dir = movielens_100k_dir()
    prompts = build_prompts(ml_dir, args.prompts)
    ids = encode_prompts(AutoTokenizer.from_pretrained(model), prompts)
    ids_path = workdir / "prompt_ids.json"
    users = [q.user_id for q in prompts]
    stored = json.dumps({"model": model, "new_tokens": args.new_tokens, "users": users, "ids": ids})
    if args.resume and ids_path.exists() and ids_path.read_text() != stored:
        raise SystemExit(f"--resume: {workdir} holds runs of another model, prompts or length")
    ids_path.write_text(stored)
    n_params = count_matmul_params(model)
    lens = sorted(map(len, ids))
    print(
        f"{len(ids)} prompts, {sum(lens)} prompt tokens (min {lens[0]}, median "
        f"{lens[len(lens) // 2]}, max {lens[-1]}); {n_params / 1e6:.1f}M matmul params",
        flush=True,
    )
    common = ["--model", model, "--ids", str(ids_path), "--new-tokens", str(args.new_tokens)]
    matmul = ["matmul", "--dtype", args.matmul_dtypes]
    ceilings = [_child(matmul, workdir, "matmul-start", 600, {}) or {}]
    print("matmul: " + ", ".join(f"{d} {r / 1e9:.0f} GFLOP/s" for d, r in ceilings[0].items()))

    rows: list[dict] = []
    if "transformers" in engines:
        dtypes = (args.hf_dtypes or ("bfloat16" if cuda else "float32,bfloat16")).split(",")
        sizes = [int(b) for b in args.batch_sizes.split(",") if b]

        def hf(dtype: str, bs: int) -> dict | None:
            argv = ["transformers", *common, "--batch", str(bs), "--dtype", dtype]
            argv += ["--order", args.hf_order]
            name = f"transformers-{dtype}-b{bs}"
            run = _child(argv, workdir, name, args.timeout, {}, args.resume)
            rows.extend([run] if run else [])
            return run

        # Only the first dtype sweeps batch sizes: bf16 without native CPU support is
        # several times slower, and a full sweep of it would dominate the run.
        swept = [r for r in (hf(dtypes[0], bs) for bs in sizes) if r]
        if swept:
            best_bs = min(swept, key=lambda r: r["wall_s"])["batch"]
            for dtype in dtypes[1:]:
                hf(dtype, best_bs)
    if "vllm" in engines:
        settings = vllm_settings(cuda)
        names = args.vllm_settings.split(",") if args.vllm_settings else list(settings)
        for name in names:
            run = _child(
                ["vllm", *common, "--setting", name],
                workdir,
                f"vllm-{name}",
                args.timeout,
                settings[name].env,
                args.resume,
            )
            rows += [run] if run else []
    if not rows:
        raise SystemExit("no configuration finished")
    # Other work on a shared machine only lowers a matmul rate: the better of the two
    # measurements, before and after, is nearer the machine's ceiling.
    ceilings.append(_child(matmul, workdir, "matmul-end", 600, {}) or {})
    ceiling = {d: max(c.get(d, 0.0) for c in ceilings) for d in ceilings[0] | ceilings[1]}

    reference = next((r for r in rows if r["engine"] == "transformers"), rows[0])
    for r in rows:
        r["derived"] = derive(r, n_params, ceiling)
        r["agreement"] = None if r is reference else agreement(r["outputs"], reference["outputs"])
    best = mark_best(rows)
    result = table(rows, ceiling)
    summary = verdict(best)
    (workdir / "results.json").write_text(
        json.dumps([{k: v for k, v in r.items() if k != "outputs"} for r in rows], indent=1)
    )
    print()
    print(result)
    print(summary)
    load_end = os.getloadavg()
    if args.record:
        _record(args, model, n_params, lens, ceilings, rows, result, summary, load_start, load_end)


def _record(args, model, n_params, lens, ceilings, rows, result, summary, load_start, load_end):
    text = Path(args.record).read_text() if Path(args.record).exists() else ""
    reference = next((r for r in rows if r.get("agreement") is None), rows[0])
    vllm_notes = [
        f"- `{r['setting']}`: {r['why']}; {json.dumps(r['engine_config'])}"
        + (f", env {json.dumps(r['env'])}" if r["env"] else "")
        + f", {r['order']} order; prefix-cache hits {r['cached_prompt_tokens']:,} of "
        f"{r['prompt_tokens']:,} prompt tokens"
        for r in rows
        if r["engine"] == "vllm"
    ]
    hf_pad = [
        f"{r['dtype']} b{r['batch']}: {r['padded_prompt_tokens']:,}"
        for r in rows
        if r["engine"] == "transformers"
    ]
    with open(args.record, "a") as fh:
        if HEADING not in text:
            fh.write(f"\n{HEADING}\n\n")
            fh.write(
                "Target: vLLM generates at least 2x the tokens/s of transformers `generate` on "
                "the same prompts, model and greedy decoding. Recorded by "
                "`python -m bench.generation --record bench/RESULTS.md`.\n"
            )
        fh.write(f"\n### Generation, {date.today()}\n\n")
        fh.write(f"Machine: {machine()}.\n")
        fh.write(
            f"Load average (1 min) at start {load_start[0]:.2f}, at end {load_end[0]:.2f}. "
            f"Model `{Path(model).name}`, {n_params / 1e6:.1f}M matmul parameters. "
            f"{len(lens)} MovieLens-100k prompts (first users by id; titles of the last 10 "
            "items before the target; 20 candidates: the target and 19 seeded unrated items), "
            f"{sum(lens):,} prompt tokens (min {lens[0]}, "
            f"median {lens[len(lens) // 2]}, max {lens[-1]}), token-identical in both "
            f"engines; greedy, EOS ignored, exactly {args.new_tokens} new tokens each. "
            "Wall time excludes load and one warm-up call; peak RSS is the configuration's "
            "whole process tree (vLLM's engine core included). "
            + "; ".join(
                f"{d} matmul {' / '.join(f'{c.get(d, 0) / 1e9:.0f}' for c in ceilings)} GFLOP/s"
                for d in ceilings[0] | ceilings[1]
            )
            + " (before / after the runs; the better one is the ceiling)"
            + ". GFLOP/s ≈ 2 x params x (prompt + generated tokens) / wall time (attention, "
            "padding and prefix-cache savings not counted). 'same output': share of "
            f"prompts whose tokens equal the {reference['engine']} {reference['dtype']} "
            f"batch {reference['batch']} run's. 'load 1m': the 1-minute load average at the "
            f"start and end of the timed part ({os.cpu_count()} cores; more means other work "
            "shared the CPUs).\n\n"
        )
        fh.write(result)
        fh.write(f"\n{summary}\n")
        if vllm_notes:
            fh.write("\nvLLM settings:\n" + "\n".join(vllm_notes) + "\n")
        if hf_pad:
            fh.write(
                f"\ntransformers: {args.hf_order} order, left padding; prompt tokens incl. "
                "padding: " + "; ".join(hf_pad) + ".\n"
            )


if __name__ == "__main__":
    main()
