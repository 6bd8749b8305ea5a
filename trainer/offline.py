"""SFT on a node without Delta Lake (a leased GPU node), and its run brought home.

    python -m trainer.offline export --ds D [--lakehouse L] [--teacher T] [--evidence E] \\
        --out F.json.gz
    python -m trainer.sft --config trainer/configs/sft.yaml --ds D --examples F.json.gz \\
        --register false --runs_dir R                                  # on the node
    python -m trainer.offline import R/sft/<run id> [--lakehouse L]    # back here

A GPU node has PyTorch but neither Delta Lake nor network, and what travels to it is
small. ``export`` writes one date's ``sft_examples`` partition (every row, in
``load_examples``' order) to a gzipped JSON file with its provenance and a digest of the
rows. ``trainer.sft --examples`` trains on it as on the table (same seeded subsample,
same config) and saves a normal run directory, unregistered. ``import`` copies that
directory under ``<lakehouse>/runs``, and registers it only after checking that

- the base model here is the one the node trained (same version), and the adapter's
  files give the version the node recorded;
- this lakehouse still holds those exact examples (the digest, recomputed from
  ``sft_examples`` at the table version the export read).

Then ``r2rec evaluate --llm-model registry:<run id>`` and promotion treat it as any run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from r2rec.errors import R2RecError

FORMAT = "r2rec-sft-examples/1"


def rows_digest(rows: list[dict[str, Any]]) -> str:
    """sha256 of the rows as canonical JSON: equal rows, equal digest, wherever read."""
    blob = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def export(lakehouse: str | None, ds: str, teacher: str, evidence: str, out: Path) -> dict:
    from r2rec.lakehouse import Lakehouse
    from trainer.sft import load_examples

    rows, inputs = load_examples(Lakehouse(lakehouse), ds, teacher, 0, 0, evidence)
    meta = dict(inputs["sft_examples"], rows_sha256=rows_digest(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump({"format": FORMAT, "sft_examples": meta, "rows": rows}, fh)
    tmp.replace(out)
    return {"path": str(out), "rows": len(rows), "bytes": out.stat().st_size, **meta}


def read(path: str) -> dict[str, Any]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as err:
        raise R2RecError(f"--examples {path}: not an export of trainer.offline ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise R2RecError(f"--examples {path}: not a {FORMAT} file")
    meta, rows = data["sft_examples"], data["rows"]
    if rows_digest(rows) != meta["rows_sha256"]:
        raise R2RecError(f"--examples {path}: its rows do not match their digest (corrupt?)")
    return data


def load(
    path: str, ds: str, teacher: str, evidence: str, max_examples: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What ``load_examples`` returns, from an export; refuses one of another partition."""
    from trainer.sft import subsample

    data = read(path)
    meta = data["sft_examples"]
    asked = {"ds": ds, "teacher": teacher, "evidence": evidence}
    wrong = {k: meta[k] for k, v in asked.items() if meta[k] != v}
    if wrong:
        raise R2RecError(f"--examples {path} holds {wrong}, not what the run asks for {asked}")
    rows = subsample(data["rows"], max_examples, seed)
    return rows, {"sft_examples": dict(meta, rows_used=len(rows), file=Path(path).name)}


def import_run(lakehouse: str | None, run_dir: Path) -> dict[str, Any]:
    from r2rec import registry
    from r2rec.lakehouse import Lakehouse
    from r2rec.models import resolve_model
    from trainer.common import DONE, git_state, registry_row, write_atomic
    from trainer.sft import load_examples

    run_dir = run_dir.resolve()
    if not (run_dir / DONE).is_file():
        raise R2RecError(f"{run_dir}: not a finished run (no {DONE})")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if manifest["stage"] != "sft" or not (run_dir / "adapter").is_dir():
        raise R2RecError(f"{run_dir}: only LoRA SFT runs are imported (this is not one)")
    base = resolve_model(manifest["base_model"]["spec"])
    if base.version != manifest["base_model"]["version"]:
        raise R2RecError(
            f"the base model here is {base.version}, the run trained "
            f"{manifest['base_model']['version']}"
        )
    lake = Lakehouse(lakehouse)
    meta = manifest["inputs"]["sft_examples"]
    if "rows_sha256" not in meta:
        raise R2RecError(f"{run_dir}: trained on the lakehouse, not an export; nothing to import")
    rows, _ = load_examples(lake, meta["ds"], meta["teacher"], 0, 0, meta["evidence"],
                            version=meta["table_version"])  # fmt: skip
    if rows_digest(rows) != meta["rows_sha256"]:
        raise R2RecError(
            f"{lake.root} does not hold the examples the run trained on (sft_examples "
            f"version {meta['table_version']}, {meta['ds']}/{meta['teacher']}/{meta['evidence']})"
        )
    target = Path(lake.root) / "runs" / "sft" / manifest["run_id"]
    # An import again (of the same files) registers again; other files under the id are
    # another run's, and are left alone.
    if target.resolve() != run_dir and not target.exists():
        shutil.copytree(run_dir, target)
    adapter = resolve_model(base.path, str(target / "adapter"))
    if adapter.version != manifest["model_version"]:
        raise R2RecError(
            f"the adapter's files at {target} give {adapter.version}, the run recorded "
            f"{manifest['model_version']}"
        )
    manifest["trained_at"] = {"base_path": manifest["base_model"]["path"], "run_dir": str(run_dir)}
    manifest["base_model"]["path"] = base.path
    manifest["imported"] = {"at": dt.datetime.now(dt.UTC).isoformat(), "git": git_state()}
    write_atomic(target / "manifest.json", json.dumps(manifest, indent=2, default=str))
    row = registry_row(manifest, target, base.path, str(target / "adapter"))
    row["registered_at"] = dt.datetime.now(dt.UTC)  # registered now, trained before
    registry.register(lake, row)
    return {"run_id": manifest["run_id"], "model_version": manifest["model_version"],
            "run_dir": str(target), "rows_used": meta["rows_used"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from r2rec.config import parse_ds
    from r2rec.jobs import run_main

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="one date's sft_examples to a gzipped JSON file")
    ex.add_argument("--ds", required=True)
    ex.add_argument("--lakehouse")
    ex.add_argument("--teacher", default="template")
    ex.add_argument("--evidence", default="chains")
    ex.add_argument("--out", required=True)
    im = sub.add_parser("import", help="register a run trained on an export")
    im.add_argument("run_dir")
    im.add_argument("--lakehouse")
    args = p.parse_args(argv)

    def body():
        if args.command == "export":
            parse_ds(args.ds)
            return export(args.lakehouse, args.ds, args.teacher, args.evidence, Path(args.out))
        return import_run(args.lakehouse, Path(args.run_dir))

    return run_main(body, job=f"offline-{args.command}", argv=argv,
                    lakehouse=args.lakehouse)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
