"""What SFT and GRPO runs share: arguments, run directories, models, manifests, registry.

A run's directory is ``<runs dir>/<stage>/<run id>`` with ``run id =
<stage>-<ds>-<hash of the whole config>``: the same command for the same date finds the
same directory, so a killed run started again resumes from its last checkpoint, and a
finished one is not trained twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2rec import faults, registry
from r2rec.assets import model_dtype
from r2rec.config import parse_ds
from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse
from r2rec.models import resolve_model
from r2rec.prompt import EVIDENCE_MODES, SHAPE
from r2rec.redact import redact_argv

DONE = "complete.json"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Fields of transformers' TrainingArguments that name places, not what is trained.
_VOLATILE = {"output_dir", "logging_dir", "run_name", "hub_model_id", "hub_token", "push_to_hub"}
# ... and ours: where the lakehouse and runs live is not what is trained (the input
# partitions' fingerprints are), so --lakehouse X and $R2REC_LAKEHOUSE=X are one run.
_PLACES = {"lakehouse", "runs_dir", "register", "examples"}  # examples: by their digest
# Options added after runs were trained, left out of the run id at these values (which
# train what the code trained before they existed), so finished runs keep their ids and
# are not trained again.
_LATER_DEFAULTS = {"likelihood_reward": 0.0, "max_train_seconds": 0.0}


@dataclass
class RunArgs:
    """R2Rec's side of a training config (the trl side is SFTConfig / GRPOConfig)."""

    ds: str | None = field(default=None, metadata={"help": "data date YYYY-MM-DD (required)"})
    lakehouse: str | None = field(default=None, metadata={"help": "default $R2REC_LAKEHOUSE"})
    model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "base model: the bundled default's name or a model directory"},
    )
    max_examples: int = field(default=0, metadata={"help": "seeded subsample; 0 = all"})
    use_lora: bool = field(default=True, metadata={"help": "false = full fine-tuning"})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    runs_dir: str | None = field(default=None, metadata={"help": "default <lakehouse>/runs"})
    register: bool = field(default=True, metadata={"help": "record the model in model_registry"})
    # SFT
    teacher: str = field(default="template", metadata={"help": "SFT: sft_examples teacher"})
    examples: str | None = field(
        default=None,
        metadata={
            "help": "SFT: train on this export of sft_examples (python -m trainer.offline "
            "export) instead of the table, on a node without Delta Lake; needs --register "
            "false, and `python -m trainer.offline import RUN_DIR` registers the run"
        },
    )
    max_train_seconds: float = field(
        default=0.0,
        metadata={
            "help": "stop training after this many seconds and save the model as it is "
            "(a leased node's time); the manifest says so. 0 = no limit"
        },
    )
    # GRPO
    init_adapter: str | None = field(
        default=None,
        metadata={
            "help": "GRPO: starting adapter: a directory, registry:<run id>, 'latest-sft' "
            "(the newest SFT run registered for ds; the default), or 'none'"
        },
    )
    min_runner_up: float = field(
        default=0.0,
        metadata={
            "help": "GRPO: train only on prompts whose second-strongest candidate's evidence "
            "score is at least this share of the strongest's (r2rec.prompt.RecPrompt."
            "runner_up); 0 = every prompt"
        },
    )
    max_prompt_tokens: int = field(
        default=SHAPE.max_prompt_tokens,
        metadata={"help": "GRPO: prompts longer than this are skipped (counted)"},
    )
    evidence: str = field(
        default="chains",
        metadata={"help": "prompt of the examples: chains (with evidence) or none (the paper's)"},
    )
    likelihood_reward: float = field(
        default=0.0,
        metadata={
            "help": "GRPO: weight of the target-likelihood reward (the log-probability the "
            "policy gives the target's label after each completion's reasoning, scaled to "
            "[0, 1]: trainer.rollout.TargetLikelihood); 0 = off. Needs the vllm rollout"
        },
    )
    rollout: str = field(
        default="auto",
        metadata={
            "help": "GRPO: completions from vllm (an engine serving each step's LoRA "
            "adapter, trainer.rollout) or trl (transformers generate, or --use_vllm); auto: "
            "vllm on CPU with LoRA, trl otherwise"
        },
    )
    completion_logits: bool = field(
        default=True,
        metadata={"help": "SFT on CPU: the LM head only on the completion (false: trl's own)"},
    )
    shared_prompt: bool = field(
        default=True,
        metadata={
            "help": "GRPO: each prompt runs once for all its completions, the LM head on "
            "completion positions only (false: trl's own forward per row)"
        },
    )


def parse(config_cls, argv: list[str] | None):
    """(RunArgs, trl config) from ``--config file.yaml`` plus command-line overrides."""
    import torch
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available() and not any(a.startswith("--use_cpu") for a in argv):
        # transformers refuses --bf16 without it on a CPU ("doesn't support bf16/gpu"),
        # and a machine without CUDA trains on the CPU whatever it says.
        argv += ["--use_cpu", "true"]
    argv += hardware_bf16(argv)
    parser = TrlParser((RunArgs, config_cls))
    run_args, train_args = parser.parse_args_and_config(args=argv)
    if not run_args.ds:
        raise R2RecError("--ds is required (the data date whose tables to train on)")
    parse_ds(run_args.ds)
    if run_args.evidence not in EVIDENCE_MODES:
        raise R2RecError(f"--evidence must be one of {', '.join(EVIDENCE_MODES)}")
    if run_args.rollout not in ("auto", "vllm", "trl"):
        raise R2RecError("--rollout must be auto, vllm or trl")
    apply_shape(train_args)
    return run_args, train_args


def hardware_bf16(argv: list[str]) -> list[str]:
    """``--bf16`` as the hardware prefers, unless the command line or the config sets it.

    bfloat16 where it is native: GPUs that support it, and CPUs with AVX512-BF16 or AMX
    (as serving chooses, :func:`r2rec.assets.model_dtype`, so ``$R2REC_DTYPE`` forces
    either path). On such a CPU an SFT step took 5.99 s against 7.11 in float32 and a
    GRPO step 31.5 s against 41.1 (bench/RESULTS.md); without it bfloat16 is emulated
    and slower than float32.
    """
    import torch
    import yaml

    if any(a.split("=")[0] in ("--bf16", "--fp16") for a in argv):
        return []
    config = _option(argv, "--config")
    if config:
        try:
            keys = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return []  # the parser reports the file
        if isinstance(keys, dict) and ({"bf16", "fp16"} & keys.keys()):
            return []
    cuda = torch.cuda.is_available()
    dtype = model_dtype(cuda)  # None: a GPU and no $R2REC_DTYPE
    native = dtype == "bfloat16" if dtype else torch.cuda.is_bf16_supported()
    return ["--bf16", "true" if native else "false"]


# trl fields whose default comes from the prompt contract's shape, unless a config or
# the command line sets them: one place decides how long prompts and completions are.
SHAPE_FIELDS = {
    "max_length": SHAPE.max_prompt_tokens + SHAPE.max_completion_tokens,  # SFT
    "max_completion_length": SHAPE.max_completion_tokens,  # GRPO
}


def apply_shape(train_args) -> None:
    """Set the SHAPE_FIELDS a config left at trl's own default to the prompt shape."""
    fields = type(train_args).__dataclass_fields__
    for name, value in SHAPE_FIELDS.items():
        if name in fields and getattr(train_args, name) == fields[name].default:
            setattr(train_args, name, value)


def stage_main(job: str, config_name: str, train, argv: list[str] | None) -> int:
    """``main`` of a training stage: parse the config into trl's ``config_name``, train."""
    from r2rec import runlog
    from r2rec.jobs import run_main

    def body():
        import trl

        run_args, train_args = parse(getattr(trl, config_name), argv)
        # The config file may set ds and the lakehouse, so the record learns them here.
        record = runlog.current()
        if record is not None:
            record.describe(ds=run_args.ds, lakehouse=run_args.lakehouse)
        return train(run_args, train_args)

    return run_main(body, job=job, argv=argv, ds=_option(argv, "--ds"),
                    lakehouse=_option(argv, "--lakehouse"))  # fmt: skip


def _option(argv: list[str] | None, name: str) -> str | None:
    """An option's value on the command line, before the config is parsed (for the log)."""
    args = sys.argv[1:] if argv is None else argv
    for i, word in enumerate(args):
        if word == name and i + 1 < len(args):
            return args[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def config_dict(run_args: RunArgs, train_args) -> dict[str, Any]:
    trl_side = {k: v for k, v in train_args.to_dict().items() if k not in _VOLATILE}
    return {"r2rec": dataclasses.asdict(run_args), "trl": trl_side}


def run_id(stage: str, run_args: RunArgs, train_args, identity: dict | None = None) -> str:
    """``<stage>-<ds>-<hash>`` of the config plus ``identity``: what the config names only
    indirectly (GRPO's ``latest-sft`` resolves to a different adapter after a new SFT run,
    and that must be a new run, not an "already complete" old one)."""
    config = config_dict(run_args, train_args)
    config["r2rec"] = {
        k: v
        for k, v in config["r2rec"].items()
        if k not in _PLACES and (k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k])
    }
    if identity:
        config["identity"] = identity
    blob = json.dumps(config, sort_keys=True, default=str)
    return f"{stage}-{run_args.ds}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


@dataclass
class Run:
    stage: str
    run_id: str
    dir: Path
    lake: Lakehouse
    args: RunArgs
    started: dt.datetime
    git: dict[str, Any]  # at start: the code that trains, not the tree when it finishes

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    def last_checkpoint(self) -> str | None:
        """The newest *complete* checkpoint: its trainer state (written last) parses and
        names its step. A process killed while writing ``checkpoint-N`` leaves one
        without it; resuming from that would fail on every retry."""
        if not self.checkpoints.is_dir():
            return None
        found = [p for p in self.checkpoints.glob("checkpoint-*") if p.name[11:].isdigit()]
        for path in sorted(found, key=lambda p: int(p.name[11:]), reverse=True):
            try:
                state = json.loads((path / "trainer_state.json").read_text())
            except (OSError, ValueError):
                continue
            if state.get("global_step") == int(path.name[11:]):
                return str(path)
        return None

    def completed(self) -> dict | None:
        done = self.dir / DONE
        return json.loads(done.read_text()) if done.is_file() else None


def input_fingerprint(run_args: RunArgs, table, partition: dict) -> str | None:
    """The training partition's file fingerprint (None if the table does not exist yet:
    loading the examples then fails with the message that says what to run)."""
    lake = Lakehouse(run_args.lakehouse)
    if not lake.exists(table):
        return None
    return lake.partition_fingerprint(table, partition)


def start(stage: str, run_args: RunArgs, train_args, identity: dict | None = None) -> Run:
    lake = Lakehouse(run_args.lakehouse)
    rid = run_id(stage, run_args, train_args, identity)
    runs = Path(run_args.runs_dir) if run_args.runs_dir else Path(lake.root) / "runs"
    run = Run(stage, rid, runs / stage / rid, lake, run_args, dt.datetime.now(dt.UTC), git_state())
    run.dir.mkdir(parents=True, exist_ok=True)
    train_args.output_dir = str(run.checkpoints)
    train_args.run_name = rid
    return run


def progress_callback(run: Run):
    """A callback appending every log line (with pid and wall clock) to ``progress.jsonl``
    in the run dir.

    Lets an operator follow a run with ``tail -f`` and shows, after a crash, which
    process trained which steps.
    """
    from transformers import TrainerCallback

    from r2rec.progress import Progress

    path = run.dir / "progress.jsonl"

    class _Progress(TrainerCallback):
        bar: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = Progress(f"{run.stage} {run.run_id}", state.max_steps, "steps")
            self.bar.start_at(state.global_step)  # resumed from a checkpoint

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.advance()

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

        def on_log(self, args, state, control, logs=None, **kwargs):
            # The wall clock too: a run's step times (and what slowed them, beside rss_mb)
            # cannot be read back from the steps alone.
            entry = {"pid": os.getpid(), "step": state.global_step, "time": round(time.time(), 3),
                     "rss_mb": resident_mb(), **(logs or {})}  # fmt: skip
            with open(path, "a") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")
            if self.bar is not None and logs and "loss" in logs:
                self.bar.note = f"loss {float(logs['loss']):.4f}"

    return _Progress()


def resident_mb() -> float | None:
    """This process's resident memory now, in MiB (Linux; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _glibc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def trim_above_mb() -> float:
    """Resident MiB above which :func:`release_memory_callback` trims: $R2REC_TRIM_ABOVE_MB,
    else 30% of physical memory (7.2 GiB of our 24)."""
    raw = os.environ.get("R2REC_TRIM_ABOVE_MB", "").strip()
    if not raw:
        return 0.3 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= 0:  # also NaN
        raise R2RecError(f"R2REC_TRIM_ABOVE_MB must be MiB >= 0 (0 = every step), got {raw!r}")
    return value


def release_memory_callback(trim=None, above_mb: float | None = None, rss=None):
    """A callback handing the heap's freed pages back to the system after a step, when the
    process holds more than ``above_mb`` (:func:`trim_above_mb`).

    On a CPU, a GRPO step allocates tensors of a new shape each time (completion lengths
    vary), and glibc keeps what they freed in its arenas: the trainer's resident memory
    grew from 12.1 to 15.8 GB over 20 steps of SmolLM2-135M with 8 completions and was
    OOM-killed on our 24 GB machine. ``malloc_trim(0)`` returns the free pages; the
    tensors in use are untouched. But the next step faults every returned page in again:
    trimming after each SFT step (1.4 GB kept, 5 GB inside a step) cost 1.3 M page faults
    and about 9 CPU-seconds a step on our VM. So a process under the bound keeps its
    pages. ``trim`` and ``rss`` are for tests.
    """
    import gc

    from transformers import TrainerCallback

    trim = trim if trim is not None else _glibc_trim()
    bound = above_mb if above_mb is not None else trim_above_mb()
    rss = rss or resident_mb

    class _Release(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            held = rss()
            if held is None or held <= bound:
                return
            gc.collect()
            if trim is not None:
                trim(0)

    return _Release()


def own_progress_only(trainer) -> None:
    """Drop transformers' tqdm bar and log printer: :func:`progress_callback` reports
    steps, rate and ETA as a bar on a terminal and as plain lines in a task log."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)


def load_tokenizer(path: str):
    """The base tokenizer with a pad token distinct from EOS.

    SmolLM2 pads with its EOS token; trainers then mask the padding and the model never
    learns to emit EOS, so generation runs to the token limit.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        for candidate in ("<|endoftext|>", tok.unk_token, tok.bos_token):
            if candidate and candidate != tok.eos_token and candidate in tok.get_vocab():
                tok.pad_token = candidate
                break
        else:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
    if tok.pad_token_id == tok.eos_token_id:
        raise R2RecError(f"could not give {path}'s tokenizer a pad token distinct from EOS")
    return tok


def load_model(path: str, train_args):
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if train_args.bf16 else torch.float32
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def causal_lm_parts(model):
    """(the causal LM under any PEFT wrapper, its backbone, its LM head): for the trainers
    that run the backbone themselves and project only the positions they score."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(causal_lm, causal_lm.base_model_prefix)
    return causal_lm, backbone, causal_lm.get_output_embeddings()


def head_log_probs(head, hidden, temperature: float = 1.0, fp32_head: bool = False):
    """Log-softmax over the vocabulary of the LM head applied to ``hidden`` (positions x
    width) only, in float32, logits divided by ``temperature``. ``fp32_head`` projects in
    float32 outside autocast (trl's ``cast_lm_head_to_fp32``)."""
    import torch

    if fp32_head:
        with torch.autocast(hidden.device.type, enabled=False):
            bias = None if head.bias is None else head.bias.float()
            logits = torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)
    else:
        logits = head(hidden)
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def lora_config(args: RunArgs):
    from peft import LoraConfig

    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=list(args.lora_target_modules),
        task_type="CAUSAL_LM",
    )


def git_state() -> dict[str, Any]:
    if os.environ.get("R2REC_GIT_COMMIT"):  # deployed code without a checkout, as runlog
        return {"commit": os.environ["R2REC_GIT_COMMIT"][:40], "dirty": None}
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "deltalake"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def checkpoint_step(checkpoint: str | None) -> int:
    """The global step a ``checkpoint-N`` directory holds (0 for a fresh start)."""
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def throughput(
    log_history: list[dict], runtime_s: float | None, global_step: int, resumed_step: int = 0
) -> dict[str, float | None]:
    """Pace of the steps this process trained.

    A resumed run's log history holds the earlier process's steps too, while trl's
    ``train_runtime`` covers only this process: count steps and tokens since the checkpoint.
    trl's ``num_tokens`` counter itself restarts from 0 in the resumed process (seen with
    trl 0.2x: 625,611 at step 500, 1,236 at step 501), so a drop means a restart; the
    run's total is then the earlier count plus this process's.
    """
    counted = sorted((e.get("step", 0), e["num_tokens"]) for e in log_history if "num_tokens" in e)
    before = max((n for step, n in counted if step <= resumed_step), default=0)
    after = [n for step, n in counted if step > resumed_step]
    if not counted:
        new_tokens, tokens = None, None
    elif not after:
        new_tokens, tokens = 0, before
    elif after[0] < before:  # the counter restarted with this process
        new_tokens, tokens = after[-1], before + after[-1]
    else:
        new_tokens, tokens = after[-1] - before, after[-1]
    steps = global_step - resumed_step
    return {
        "num_tokens": tokens,
        "steps_this_process": steps,
        "seconds_per_step": runtime_s / steps if runtime_s and steps > 0 else None,
        "tokens_per_s": new_tokens / runtime_s if new_tokens and runtime_s else None,
    }


def finish(
    run: Run,
    trainer,
    tokenizer,
    *,
    base,
    inputs: dict[str, Any],
    train_args,
    parent_version: str | None,
    resumed_from: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Save the weights, curves and manifest; register the version; mark the run done."""
    from trainer.plots import plot_curves

    result = trainer.state
    if run.args.use_lora:
        adapter_dir = run.dir / "adapter"
        trainer.model.save_pretrained(str(adapter_dir))
        model_path, adapter_path = base.path, str(adapter_dir)
    else:
        model_dir = run.dir / "model"
        trainer.save_model(str(model_dir))
        tokenizer.save_pretrained(str(model_dir))
        model_path, adapter_path = str(model_dir), None
    version = resolve_model(model_path, adapter_path).version
    curves = plot_curves(result.log_history, run.dir / "curves.png", title=run.run_id)
    # trl logs train_runtime once per train() call; a resumed run's history keeps only
    # this call's summary, so this is the runtime of the steps this process trained.
    runtime = next(
        (e["train_runtime"] for e in reversed(result.log_history) if "train_runtime" in e), None
    )
    finished = dt.datetime.now(dt.UTC)
    manifest = {
        "run_id": run.run_id,
        "stage": run.stage,
        "ds": run.args.ds,
        "model_version": version,
        "base_model": {"spec": run.args.model, "path": base.path, "version": base.version},
        "parent_version": parent_version,
        # True when training changed no weight (GRPO with no reward spread in any group):
        # the run then registers its parent's version under its own run id.
        "unchanged": version == parent_version,
        "inputs": inputs,
        "config": config_dict(run.args, train_args),
        "seed": train_args.seed,
        "git": run.git,
        "libraries": library_versions(),
        "hardware": hardware(),
        "argv": redact_argv(sys.argv),
        "started_at": run.started.isoformat(),
        "finished_at": finished.isoformat(),
        "resumed_from": resumed_from,
        "global_step": result.global_step,
        "train_runtime_s": runtime,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_gpu_mb": peak_gpu_mb(),
        **throughput(
            result.log_history, runtime, result.global_step, checkpoint_step(resumed_from)
        ),
        "curves": str(curves) if curves else None,
        **(extra or {}),
    }
    write_atomic(run.dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    write_atomic(run.dir / "log_history.json", json.dumps(result.log_history, indent=2))
    if run.args.register:
        registry.register(run.lake, registry_row(manifest, run.dir, model_path, adapter_path))
    # A rerun reports this file as "already complete": it says how far the run got, so a
    # run that stopped at its time limit is not mistaken for one that reached max_steps.
    done = {
        "model_version": version,
        "run_id": run.run_id,
        "global_step": result.global_step,
        "stopped_at_deadline": bool(manifest.get("stopped_at_deadline")),
    }
    write_atomic(run.dir / DONE, json.dumps(done))
    return manifest


def registry_row(
    manifest: dict[str, Any], run_dir: Path, model_path: str, adapter_path: str | None
) -> dict[str, Any]:
    """A run's model_registry row, from its manifest and where its files are."""
    return {
        "model_version": manifest["model_version"],
        "run_id": manifest["run_id"],
        "ds": manifest["ds"],
        "stage": manifest["stage"],
        "base_model": manifest["base_model"]["spec"],
        "base_version": manifest["base_model"]["version"],
        "model_path": model_path,
        "adapter_path": adapter_path,
        "parent_version": manifest["parent_version"],
        "run_dir": str(run_dir),
        "manifest": json.dumps(manifest, default=str),
        "registered_at": dt.datetime.fromisoformat(manifest["finished_at"]),
    }


def deadline_callback(seconds: float):
    """Stops training once ``seconds`` of it have passed (0: never); the trainer then
    saves as at the last step. The callback's ``stopped`` says whether it did."""
    from transformers import TrainerCallback

    class Deadline(TrainerCallback):
        stopped = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            late = seconds > 0 and time.monotonic() - self.started >= seconds
            if late and state.global_step < state.max_steps:  # the last step cuts nothing
                control.should_training_stop = self.stopped = True

    return Deadline()


def write_atomic(path: Path, text: str) -> None:
    """Write a file whole or not at all (temp file + rename): a reader never sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def with_fault_points(trainer_cls, stage: str):
    """``trainer_cls`` with the crash points tests inject (r2rec.faults), named by stage.

    ``<stage>.checkpoint_partial``: the weights and optimizer of a checkpoint are on disk,
    its trainer state is not yet: the moment a kill leaves a half-written checkpoint.
    ``<stage>.checkpoint_saved``: a checkpoint is complete.
    """

    class WithFaultPoints(trainer_cls):
        fault_stage = stage

        def _save_rng_state(self, output_dir):  # transformers writes the state right after
            super()._save_rng_state(output_dir)
            faults.checkpoint(f"{self.fault_stage}.checkpoint_partial")

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            faults.checkpoint(f"{self.fault_stage}.checkpoint_saved")

    WithFaultPoints.__name__ = trainer_cls.__name__
    return WithFaultPoints
