"""The shared core stays cheap and stage-free: arrows point down only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "r2rec"
STAGES = {"spark_jobs", "trainer", "inference", "dags"}
HEAVY = (
    "pyspark",
    "torch",
    "vllm",
    "transformers",
    "trl",
    "deltalake",
    "pyarrow",
    "duckdb",
    "airflow",
)
# The CLI is the composition root: it may reach the stages, lazily, inside commands.
WIRING = {"cli.py"}


def top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else ():
            if isinstance(sub, ast.Import):
                found |= {a.name.split(".")[0] for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module:
                found.add(sub.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_modules_import_no_stage_and_nothing_heavy_at_top_level(path):
    imports = top_level_imports(path)
    if path.name not in WIRING:
        assert not imports & STAGES, f"{path.name} imports a stage: {imports & STAGES}"
    assert not imports & set(HEAVY), f"{path.name} imports heavy modules: {imports & set(HEAVY)}"


def test_importing_the_core_loads_no_heavy_module():
    code = (
        "import sys, r2rec.config, r2rec.contracts, r2rec.lakehouse, r2rec.errors, r2rec.cli;"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def all_imports(path: Path) -> set[str]:
    """Every module imported anywhere in a file, inside functions too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


# What each stage may import of the others: nothing. When two stages need a thing, it
# belongs in the core (r2rec); the wiring (dags/, r2rec/cli.py) composes the stages.
PIPELINE_STAGES = ("spark_jobs", "trainer", "inference")


@pytest.mark.parametrize(
    "path",
    sorted(p for stage in PIPELINE_STAGES for p in (ROOT / stage).rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_a_stage_imports_no_other_stage_at_any_depth(path):
    own = path.relative_to(ROOT).parts[0]
    others = (set(STAGES) - {own}) | {"bench", "tests"}
    assert not all_imports(path) & others, f"{path.relative_to(ROOT)} imports another stage"


def test_the_layering_check_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from inference.models import x\n    import trainer.sft\n")
    assert all_imports(probe) == {"inference", "trainer"}
