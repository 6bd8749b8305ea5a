"""Benchmarks; each records its table in bench/RESULTS.md with the machine it ran on."""

from __future__ import annotations

import platform
from datetime import date


def record_section(path: str, title: str, body: str) -> None:
    """Append ``### <title> (<today>, <host>, <cpu>)`` and ``body`` to a Markdown file."""
    cpu = platform.processor() or platform.machine()
    with open(path, "a") as f:
        f.write(f"\n### {title} ({date.today().isoformat()}, {platform.node()}, {cpu})\n\n"
                f"{body}\n")  # fmt: skip
