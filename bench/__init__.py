"""Benchmarks; each records its table in bench/RESULTS.md with the machine it ran on."""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` is empty on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    """CPU, cores, RAM, whether bfloat16 is native (the numeric path), Python."""
    import psutil

    from r2rec.assets import cpu_has_native_bf16

    return (
        f"{cpu_model()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, native bfloat16 "
        f"{'yes' if cpu_has_native_bf16() else 'no'}, Python {platform.python_version()}"
    )


def record_section(path: str, title: str, body: str) -> None:
    """Append ``### <title> (<today>)``, the machine and ``body`` to a Markdown file."""
    with open(path, "a") as f:
        f.write(f"\n### {title} ({date.today().isoformat()})\n\nMachine: {machine()}.\n\n"
                f"{body}\n")  # fmt: skip
