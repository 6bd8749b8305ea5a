"""Shipped training configs: they parse through trl's parser and accelerate's loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from r2rec.errors import R2RecError
from r2rec.prompt import SHAPE

CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"


def parse(stage: str, *extra: str):
    from trl import GRPOConfig, SFTConfig

    from trainer.common import parse as parse_args

    cls = SFTConfig if stage == "sft" else GRPOConfig
    return parse_args(cls, ["--config", str(CONFIGS / f"{stage}.yaml"), *extra])


def test_sft_yaml_parses_into_run_args_and_sft_config():
    run, sft = parse("sft", "--ds", "2026-11-25", "--max_steps", "3")
    assert (run.ds, run.model, run.teacher, run.use_lora, run.lora_r) == (
        "2026-11-25",
        "smollm2-135m-instruct",
        "template",
        True,
        16,
    )
    assert sft.completion_only_loss is True and sft.gradient_checkpointing is False
    # Lengths come from the prompt contract's shape, not from a number in the YAML.
    assert sft.max_length == SHAPE.max_prompt_tokens + SHAPE.max_completion_tokens
    assert run.evidence == "chains" and run.completion_logits is True
    assert sft.max_steps == 3  # the command line overrides the file
    assert sft.seed == 0


def test_grpo_yaml_parses_into_run_args_and_grpo_config():
    run, grpo = parse("grpo", "--ds", "2026-11-25")
    assert run.init_adapter == "latest-sft" and run.rollout == "auto"
    assert (grpo.num_generations, grpo.per_device_train_batch_size) == (4, 4)
    assert grpo.beta == 0.0 and grpo.max_completion_length == SHAPE.max_completion_tokens
    assert run.max_prompt_tokens == SHAPE.max_prompt_tokens
    # An explicit value still wins over the shape.
    assert (
        parse("grpo", "--ds", "2026-11-25", "--max_completion_length", "64")[
            1
        ].max_completion_length
        == 64
    )


def test_configs_name_no_lengths_the_shape_owns():
    for stage in ("sft", "grpo"):
        text = (CONFIGS / f"{stage}.yaml").read_text()
        keys = {line.split(":")[0] for line in text.splitlines() if ":" in line and line[0] != "#"}
        assert not keys & {"max_length", "max_completion_length", "max_prompt_tokens"}, stage


def test_bf16_on_a_cpu_needs_no_extra_flag():
    _, sft = parse("sft", "--ds", "2026-11-25", "--bf16", "true")
    assert sft.bf16 is True and sft.use_cpu is True


@pytest.mark.parametrize("native", [True, False])
def test_bf16_follows_the_cpu_unless_the_command_line_or_config_pins_it(
    native, monkeypatch, tmp_path
):
    from trl import SFTConfig

    from r2rec import assets
    from trainer.common import parse as parse_args

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(assets, "cpu_has_native_bf16", lambda: native)
    monkeypatch.delenv(assets.DTYPE_ENV, raising=False)
    for stage in ("sft", "grpo"):
        assert parse(stage, "--ds", "2026-11-25")[1].bf16 is native, stage
    assert parse("sft", "--ds", "2026-11-25", "--bf16", str(not native))[1].bf16 is not native
    assert parse("sft", "--ds", "2026-11-25", f"--bf16={not native}")[1].bf16 is not native
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text((CONFIGS / "sft.yaml").read_text() + f"bf16: {str(not native).lower()}\n")
    assert parse_args(SFTConfig, ["--config", str(pinned), "--ds", "2026-11-25"])[1].bf16 is (
        not native
    )
    # $R2REC_DTYPE forces the numeric path for training as for serving
    monkeypatch.setenv(assets.DTYPE_ENV, "float32")
    assert parse("sft", "--ds", "2026-11-25")[1].bf16 is False


def test_ds_is_required_and_checked():
    with pytest.raises(R2RecError, match="--ds is required"):
        parse("sft")
    with pytest.raises(R2RecError):
        parse("sft", "--ds", "2026-13-45")


def test_run_id_is_stable_and_follows_the_config():
    from trainer.common import run_id

    a = run_id("sft", *parse("sft", "--ds", "2026-11-25"))
    assert a == run_id("sft", *parse("sft", "--ds", "2026-11-25"))
    assert a.startswith("sft-2026-11-25-")
    assert a != run_id("sft", *parse("sft", "--ds", "2026-11-25", "--learning_rate", "1e-4"))
    assert a != run_id("sft", *parse("sft", "--ds", "2026-11-26"))


@pytest.mark.parametrize(
    ("name", "kind", "zero"),
    [("multi_gpu", "MULTI_GPU", None), ("deepspeed_zero2", "DEEPSPEED", 2),
     ("deepspeed_zero3", "DEEPSPEED", 3)],
)  # fmt: skip
def test_accelerate_configs_load(name, kind, zero):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.name == kind
    assert config.num_machines == 1 and config.mixed_precision == "bf16"
    assert (config.deepspeed_config or {}).get("zero_stage") == zero
