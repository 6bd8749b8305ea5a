"""Where ingest may read from: the allowed roots and the check of a user-given path.

A run's ``path`` param reaches ``r2rec ingest --path``, and ingest copies whatever it
reads into bronze and quarantine, where ``r2rec sql`` shows it: without a check, a
trigger conf of ``{"path": "/etc/passwd"}`` publishes that file. Ingest paths must lie
under a configured root: ``$R2REC_INGEST_ROOTS`` (colon-separated; object-store URIs
such as ``s3://bucket/raw`` keep their ``://``), by default the datasets bundled in the
``recbole`` wheel and the ``data/`` directories of the repository and of the working
directory.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path

from r2rec.errors import R2RecError

ENV = "R2REC_INGEST_ROOTS"
REPOSITORY = Path(__file__).resolve().parents[1]
# Spark expands globs in the paths it reads ("data/{x,../../etc}/passwd"), which would
# name files the check below never saw; no dataset of ours needs one.
_GLOB = re.compile(r"[*?\[\]{}\\]")


def ingest_roots() -> list[str]:
    """The allowed roots: ``$R2REC_INGEST_ROOTS``, else the bundled data and ``data/``."""
    configured = os.environ.get(ENV, "").strip()
    if configured:
        # A colon splits roots unless it starts a URI's "://".
        roots = [r.strip() for r in re.split(r":(?!//)", configured) if r.strip()]
    else:
        roots = [str(Path.cwd() / "data")]
        if (REPOSITORY / "pyproject.toml").is_file():  # a checkout, not site-packages
            roots.insert(0, str(REPOSITORY / "data"))
        spec = importlib.util.find_spec("recbole")  # found, not imported (the wheel is heavy)
        if spec is not None and spec.submodule_search_locations:
            package = Path(next(iter(spec.submodule_search_locations)))
            roots.insert(0, str(package / "dataset_example"))
    return list(dict.fromkeys(_normalise_root(r) for r in roots))


def check_ingest_path(path: str, what: str = "--path", roots: Sequence[str] | None = None) -> None:
    """Raise an R2RecError unless ``path`` and everything Spark would read through it lie
    under an allowed root.

    Local paths are resolved first (symlinks and ``..``), so ``data/../../etc/passwd`` and
    a symlink out of a root are refused; a directory's entries are checked the same way,
    as Spark reads them all. An object-store URI is allowed only under a root URI.
    """
    roots = list(ingest_roots() if roots is None else (_normalise_root(r) for r in roots))
    if _GLOB.search(path):
        raise R2RecError(f"ingest {what} '{path}' may not hold glob characters (*?[]{{}}\\)")
    if "://" in path and not path.startswith("file://"):
        if ".." in path.split("/") or not any(_under_uri(path, r) for r in roots):
            raise _outside(what, path, roots)
        return
    given = Path(path.removeprefix("file://"))
    target = given.resolve()
    if not _under_any(target, roots):
        via = "" if target == given.absolute() else f" (it resolves to '{target}')"
        raise _outside(what, path, roots, via)
    if target.is_dir():
        escape = _escape_below(target, roots)
        if escape is not None:
            raise _outside(what, path, roots, f" (it holds '{escape}', a link out of it)")


def _normalise_root(root: str) -> str:
    if "://" in root and not root.startswith("file://"):
        return root.rstrip("/")
    return str(Path(root.removeprefix("file://")).expanduser().resolve())


def _under_uri(uri: str, root: str) -> bool:
    return "://" in root and (uri == root or uri.startswith(root + "/"))


def _under_any(target: Path, roots: Sequence[str]) -> bool:
    return any("://" not in r and target.is_relative_to(r) for r in roots)


def _escape_below(directory: Path, roots: Sequence[str]) -> Path | None:
    """The first entry below ``directory`` that resolves outside every root, if any."""
    seen: set[Path] = set()
    pending = [directory]
    while pending:
        current = pending.pop()
        if current in seen:  # a symlink loop
            continue
        seen.add(current)
        for entry in os.scandir(current):
            target = Path(entry.path).resolve()
            if not _under_any(target, roots):
                return Path(entry.path)
            if target.is_dir():
                pending.append(target)
    return None


def _outside(what: str, path: str, roots: Sequence[str], via: str = "") -> R2RecError:
    allowed = ", ".join(roots) or "none"
    return R2RecError(
        f"ingest {what} '{path}'{via} is outside the allowed ingest roots ({allowed}); "
        f"set {ENV} (colon-separated) to allow another directory"
    )
