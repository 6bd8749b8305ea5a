"""r2rec.redact: secrets never reach a stored command line; everything else stays as given."""

from __future__ import annotations

import pytest

from r2rec.redact import MASK, redact_argv

HF = "hf_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"  # the shape of a Hugging Face token
OPENAI = "sk-proj-" + "Zq8_Xw2-Lp4Rt6Yv8Nb0Mc2Kd4Jf6Hg8"
HEX32 = "9f86d081884c7d659a2feaa0c55ad015"
BASE64URL = "R5JMvd29ez5vVbqZCE2tesajXU4-DxjcCggtp2cuo24"  # secrets.token_urlsafe(32)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--hub_token", "abc"], ["--hub_token", MASK]),
        (["--hub_token=abc"], [f"--hub_token={MASK}"]),
        (["--hub-token", "abc"], ["--hub-token", MASK]),
        (["--hubToken", "abc"], ["--hubToken", MASK]),
        (["--api-key", "abc"], ["--api-key", MASK]),
        (["--openai_api_key=abc"], [f"--openai_api_key={MASK}"]),
        (["--aws-secret-access-key", "abc"], ["--aws-secret-access-key", MASK]),
        (["--client_secret", "abc"], ["--client_secret", MASK]),
        (["--db-password", "hunter2"], ["--db-password", MASK]),
        (["--passwd", "hunter2"], ["--passwd", MASK]),
        (["--auth", "user:pw"], ["--auth", MASK]),
        (["--credentials", "{}"], ["--credentials", MASK]),
        (["HF_TOKEN=abc"], [f"HF_TOKEN={MASK}"]),
    ],
)
def test_values_of_secret_named_options_are_masked(argv, expected):
    assert redact_argv(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-new-tokens", "320"],
        ["--max_tokens=64"],
        ["--tokenizer", "/models/smollm2"],
        ["--keys", "a,b"],
        ["--model", "registry:base@1+adapter@2"],
        ["--config", "trainer/configs/sft.yaml", "--max_steps", "8", "--seed", "0"],
        ["--run-name", "sft_2026_11_25_smollm2_135m_instruct_lora"],
        ["--model", "SmolLM2-135M-Instruct-FineTuned-On-ML100K"],
        ["--output_dir", "/runs/sft-2026-11-25-9f86d081/model"],
        ["--lr=5e-5", "--ds", "2026-11-25", "--lakehouse", "s3://bucket/r2rec"],
    ],
)
def test_ordinary_options_are_kept(argv):
    assert redact_argv(argv) == argv


@pytest.mark.parametrize("token", [HF, OPENAI, HEX32, BASE64URL, "ghp_" + "x1Y2z3" * 6,
                                   "AKIAIOSFODNN7EXAMPLE"])  # fmt: skip
def test_token_shaped_values_are_masked_whatever_the_option(token):
    assert redact_argv(["--model", token]) == ["--model", MASK]
    assert redact_argv([f"--model={token}"]) == [f"--model={MASK}"]
    assert redact_argv([token]) == [MASK]


def test_known_tokens_inside_a_value_are_cut_out_and_url_passwords_masked():
    argv = [
        "--model",
        f"https://user:{HF}@hf.co/org/model",
        f"--header=Authorization: Bearer {OPENAI}",
        "--lakehouse",
        "s3://key:hunter2@minio:9000/r2rec",
    ]

    assert redact_argv(argv) == [
        "--model",
        f"https://user:{MASK}@hf.co/org/model",
        f"--header=Authorization: Bearer {MASK}",
        "--lakehouse",
        f"s3://key:{MASK}@minio:9000/r2rec",
    ]


def test_a_secret_option_without_a_value_does_not_swallow_the_next_option():
    assert redact_argv(["--use_auth_token", "--max_steps", "8"]) == [
        "--use_auth_token",
        "--max_steps",
        "8",
    ]
    assert redact_argv(["--hub_token"]) == ["--hub_token"]


def test_a_whole_trainer_command_line():
    argv = ["/venv/bin/r2rec", "sft", "--ds", "2026-11-25", "--config", "trainer/configs/sft.yaml",
            "--max_steps", "8", "--hub_token", HF, "--push_to_hub", "--report_to=none"]  # fmt: skip

    got = redact_argv(argv)

    assert got == [*argv[:9], MASK, *argv[10:]]
    assert HF not in " ".join(got)
    assert argv[9] == HF  # the caller's list is left alone
