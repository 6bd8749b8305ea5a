"""SFT on an export of sft_examples (a node without Delta Lake), and the run imported back."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from r2rec.contracts import MODEL_REGISTRY, SFT_EXAMPLES
from r2rec.errors import R2RecError
from tests.trainer.test_training import DS, ROOT, command, make_train_lake
from trainer import offline


@pytest.fixture(scope="module")
def train_lake(tmp_path_factory):
    return make_train_lake(tmp_path_factory.mktemp("train") / "lakehouse")


@pytest.fixture(scope="module")
def export_file(train_lake, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "sft.json.gz"
    report = offline.export(train_lake.root, DS, "template", "chains", path)
    assert report["rows"] == 16 and report["table_version"] == train_lake.version(SFT_EXAMPLES)
    return path


@pytest.fixture(scope="module")
def node_run(train_lake, export_file, tiny_model_dir, tmp_path_factory):
    """A run trained as on a GPU node: Delta Lake and Spark cannot be imported there."""
    node = tmp_path_factory.mktemp("node")
    for blocked in ("deltalake", "pyspark"):
        (node / "site" / blocked).mkdir(parents=True)
        (node / "site" / blocked / "__init__.py").write_text(f"raise ImportError('no {blocked}')")
    cmd = command("sft", train_lake, tiny_model_dir, "--max_steps", "2", "--max_examples", "6",
                  "--examples", str(export_file), "--register", "false",
                  "--runs_dir", str(node / "runs"), "--save_strategy", "no")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{node / 'site'}{os.pathsep}{ROOT}",
           "R2REC_JOB_RUNS": "0", "R2REC_GIT_COMMIT": "c0ffee" * 6}  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return Path(report["run_dir"]), report


def test_the_export_holds_every_row_in_training_order_and_refuses_tampering(
    train_lake,
    export_file,
    tmp_path,
):
    from trainer.sft import load_examples

    rows, _ = load_examples(train_lake, DS, "template", 0, 0)
    data = offline.read(str(export_file))
    assert data["rows"] == rows
    assert data["sft_examples"]["rows_sha256"] == offline.rows_digest(rows)
    # The same seeded subsample as from the table, so a run trains the same examples.
    assert (
        offline.load(str(export_file), DS, "template", "chains", 5, 3)[0]
        == (load_examples(train_lake, DS, "template", 5, 3)[0])
    )
    with pytest.raises(R2RecError, match="not what the run asks for"):
        offline.load(str(export_file), DS, "template", "none", 0, 0)
    data["rows"][3]["completion"][0]["content"] += " (edited)"
    bad = tmp_path / "bad.json.gz"
    with gzip.open(bad, "wt") as fh:
        json.dump(data, fh)
    with pytest.raises(R2RecError, match="do not match their digest"):
        offline.read(str(bad))
    (tmp_path / "plain.json").write_text("{}")
    with pytest.raises(R2RecError, match="not an export"):
        offline.read(str(tmp_path / "plain.json"))


def test_examples_without_register_false_is_refused_before_training(
    train_lake,
    export_file,
    tiny_model_dir,
    capsys,
    tmp_path,
):
    from trainer import sft

    argv = command("sft", train_lake, tiny_model_dir, "--examples", str(export_file),
                   "--runs_dir", str(tmp_path / "runs"))[3:]  # fmt: skip
    assert sft.main(argv) == 1
    assert "--register false" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_run_trained_without_delta_is_registered_only_by_import(
    train_lake,
    node_run,
    tiny_model_dir,
):
    from trainer.sft import load_examples

    run_dir, report = node_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows, _ = load_examples(train_lake, DS, "template", 0, 0)
    assert manifest["inputs"]["sft_examples"]["rows_sha256"] == offline.rows_digest(rows)
    assert manifest["inputs"]["sft_examples"]["rows_used"] == 6
    assert manifest["git"]["commit"] == "c0ffee" * 6
    assert manifest["global_step"] == 2 and manifest["stopped_at_deadline"] is False

    def registered():
        if not train_lake.exists(MODEL_REGISTRY):
            return []
        rows = train_lake.read_arrow(MODEL_REGISTRY).to_pylist()
        return [r for r in rows if r["run_id"] == report["run_id"]]

    assert registered() == []
    before = time.time()
    for _ in range(2):  # importing again registers the same run once
        out = offline.import_run(train_lake.root, run_dir)
    (row,) = registered()
    home = Path(train_lake.root) / "runs" / "sft" / report["run_id"]
    assert out["run_dir"] == str(home) and row["run_dir"] == str(home)
    assert row["model_version"] == report["model_version"] == out["model_version"]
    assert row["model_path"] == tiny_model_dir
    assert row["adapter_path"] == str(home / "adapter")
    assert row["registered_at"].timestamp() >= before  # registered now, not when trained
    kept = json.loads(row["manifest"])
    assert kept["trained_at"]["run_dir"] == str(run_dir) and kept["imported"]["at"]


def test_import_refuses_other_examples_another_base_or_changed_weights(
    train_lake,
    node_run,
    tmp_path,
):
    from r2rec.lakehouse import Lakehouse

    run_dir, report = node_run
    # A lakehouse whose examples differ in one completion, at the same table version.
    other = Lakehouse(str(tmp_path / "other"))
    rows = train_lake.read_arrow(SFT_EXAMPLES).to_pylist()
    rows[0]["completion"] = [{"role": "assistant", "content": "something else"}]
    other.overwrite(SFT_EXAMPLES, rows, partition={"ds": DS, "evidence": "chains",
                                                   "teacher": "template"})  # fmt: skip
    with pytest.raises(R2RecError, match="does not hold the examples"):
        offline.import_run(other.root, run_dir)
    assert not other.exists(MODEL_REGISTRY)

    def copy_with(name: str, edit) -> Path:
        moved = tmp_path / name / report["run_id"]
        shutil.copytree(run_dir, moved)
        edit(moved)
        return moved

    def other_base(moved: Path):
        manifest = json.loads((moved / "manifest.json").read_text())
        manifest["base_model"]["version"] = "someone-else@0"
        (moved / "manifest.json").write_text(json.dumps(manifest))

    def changed_weights(moved: Path):
        config = json.loads((moved / "adapter" / "adapter_config.json").read_text())
        (moved / "adapter" / "adapter_config.json").write_text(json.dumps({**config, "r": 99}))

    fresh = Lakehouse(str(tmp_path / "fresh"))
    fresh.overwrite(SFT_EXAMPLES, train_lake.read_arrow(SFT_EXAMPLES).to_pylist(),
                    partition={"ds": DS, "evidence": "chains", "teacher": "template"})  # fmt: skip
    with pytest.raises(R2RecError, match="base model here is"):
        offline.import_run(fresh.root, copy_with("base", other_base))
    with pytest.raises(R2RecError, match="adapter's files"):
        offline.import_run(fresh.root, copy_with("weights", changed_weights))
    assert not fresh.exists(MODEL_REGISTRY)
    unfinished = copy_with("unfinished", lambda moved: (moved / "complete.json").unlink())
    with pytest.raises(R2RecError, match="not a finished run"):
        offline.import_run(fresh.root, unfinished)


def test_the_deadline_stops_training_once_its_time_is_spent():
    from transformers import TrainerControl

    from trainer.common import deadline_callback

    never, soon, last = deadline_callback(0), deadline_callback(0.05), deadline_callback(0.05)
    for cb in (never, soon, last):
        cb.on_train_begin(None, None, TrainerControl())
    step = SimpleNamespace(global_step=3, max_steps=10)
    control = TrainerControl()
    soon.on_step_end(None, step, control)
    assert not control.should_training_stop and not soon.stopped
    time.sleep(0.06)
    for cb in (never, soon):
        cb.on_step_end(None, step, control := TrainerControl())
        assert control.should_training_stop is (cb is soon) and cb.stopped is (cb is soon)
    # Late on the last step: training ends anyway, and nothing was cut short.
    last.on_step_end(None, SimpleNamespace(global_step=10, max_steps=10), TrainerControl())
    assert not last.stopped


def test_grpo_refuses_examples():
    from trainer.common import RunArgs
    from trainer.grpo import train

    with pytest.raises(R2RecError, match="SFT's"):
        train(RunArgs(ds=DS, examples="x.json.gz"), None)
