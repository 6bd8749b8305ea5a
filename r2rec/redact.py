"""Redacting secrets from a command line before it is stored.

Run manifests keep the command that trained a model (``sys.argv``); the manifest lands
in ``model_registry``, which anyone with ``r2rec sql`` can read. A token passed on the
command line must not travel with it, so values are replaced by ``***`` when either the
option's name says it holds a secret or the value itself looks like one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

MASK = "***"

# Words of an option name that mark its value as a secret. Whole words, not substrings:
# `--max-new-tokens 320` and `--tokenizer x` hold no secret, `--hub_token` does.
_SECRET_WORDS = {"auth", "authorization", "bearer", "credential", "credentials", "passphrase",
                 "pwd", "apikey"}  # fmt: skip
_SECRET_SUFFIXES = ("token", "key", "secret", "password", "passwd")

# Tokens with a well-known prefix, found anywhere in a value (a URL, a header).
_KNOWN_TOKENS = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI and OpenAI-compatible servers
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key ids
    r")"
)
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)[^/@\s]+@")  # https://user:PASSWORD@host
_KEY_CHARS = re.compile(r"[A-Za-z0-9_-]{32,}")
_RUN = re.compile(r"[A-Za-z0-9]+")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with every secret-looking value replaced by ``***``.

    Covers ``--hub_token X``, ``--hub_token=X``, ``HF_TOKEN=X``, known token formats
    anywhere in a value, URL passwords, and long random-looking values of any option.
    """
    out: list[str] = []
    secret_next = False
    for arg in argv:
        if secret_next and not arg.startswith("--"):
            out.append(MASK)
            secret_next = False
            continue
        secret_next = False
        name, sep, value = arg.partition("=")
        if sep and _secret_name(name):
            out.append(f"{name}={MASK}")
        elif sep and name.startswith("-"):
            out.append(f"{name}={_redact_value(value)}")
        elif arg.startswith("--") and _secret_name(arg):
            out.append(arg)
            secret_next = True
        else:
            out.append(_redact_value(arg))
    return out


def _secret_name(name: str) -> bool:
    # hubToken, hub-token and HUB_TOKEN all split into the words hub, token.
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.lstrip("-"))
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) for w in words)


def _redact_value(value: str) -> str:
    if _looks_random(value):
        return MASK
    return _URL_PASSWORD.sub(rf"\1{MASK}@", _KNOWN_TOKENS.sub(MASK, value))


def _looks_random(value: str) -> bool:
    """A long key-like value: 32+ characters of [A-Za-z0-9_-] that are not words.

    Hex digests and base62 keys have a 20+ character run mixing letters and digits;
    base64url keys (with an occasional ``-``/``_``) have long runs that mix upper case,
    lower case and digits at a high entropy. Names made of words
    (``sft_2026_11_25_smollm2_135m_lora``, ``SmolLM2-135M-Instruct-FineTuned``) do neither.
    """
    if not _KEY_CHARS.fullmatch(value):
        return False
    runs = _RUN.findall(value)
    if any(len(r) >= 20 and re.search("[A-Za-z]", r) and re.search("[0-9]", r) for r in runs):
        return True
    mixed = all(re.search(c, value) for c in ("[a-z]", "[A-Z]", "[0-9]"))
    return mixed and max(map(len, runs)) >= 12 and _entropy(value) >= 4.3


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character of the text's own character frequencies."""
    counts, n = Counter(text), len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())
