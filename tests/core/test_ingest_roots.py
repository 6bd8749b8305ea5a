"""r2rec.ingest_roots: ingest reads only under the configured roots, whatever the path says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from r2rec.errors import R2RecError
from r2rec.ingest_roots import ENV, REPOSITORY, check_ingest_path, ingest_roots


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """An allowed root holding a small dataset directory; $R2REC_INGEST_ROOTS names it."""
    allowed = tmp_path / "allowed"
    (allowed / "ml-1m").mkdir(parents=True)
    (allowed / "ml-1m" / "ratings.dat").write_text("1::1::5::0\n")
    (tmp_path / "secret.txt").write_text("root:x:0:0\n")
    monkeypatch.setenv(ENV, str(allowed))
    monkeypatch.chdir(tmp_path)
    return allowed


def test_paths_inside_a_root_are_accepted(root):
    check_ingest_path(str(root / "ml-1m"))
    check_ingest_path(str(root / "ml-1m" / "ratings.dat"))
    check_ingest_path("allowed/ml-1m")  # relative to the working directory
    check_ingest_path(f"file://{root}/ml-1m")
    check_ingest_path(str(root / "not-there-yet"))  # existence is the source's business


def test_a_path_outside_the_roots_is_refused_naming_the_roots(root):
    with pytest.raises(R2RecError) as err:
        check_ingest_path("/etc/passwd")

    assert str(err.value) == (
        f"ingest --path '/etc/passwd' is outside the allowed ingest roots ({root}); "
        f"set {ENV} (colon-separated) to allow another directory"
    )


@pytest.mark.parametrize(
    "path", ["allowed/../secret.txt", "allowed/ml-1m/../../secret.txt", "{root}/../secret.txt"]
)
def test_dot_dot_escapes_are_refused(root, path):
    path = path.format(root=root)

    with pytest.raises(R2RecError, match=r"resolves to '.*/secret\.txt'\) is outside"):
        check_ingest_path(path)


def test_a_symlink_out_of_a_root_is_refused(root, tmp_path):
    (root / "passwd").symlink_to(tmp_path / "secret.txt")
    (root / "etc").symlink_to("/etc", target_is_directory=True)

    with pytest.raises(R2RecError, match=r"allowed/passwd' \(it resolves to '.*/secret\.txt'\)"):
        check_ingest_path(str(root / "passwd"))
    with pytest.raises(R2RecError, match=r"resolves to '/etc/passwd'"):
        check_ingest_path(str(root / "etc" / "passwd"))


def test_a_directory_holding_a_link_out_is_refused(root, tmp_path):
    # Spark reads every file of a directory, following links; each entry is checked.
    (root / "ml-1m" / "movies.dat").symlink_to(tmp_path / "secret.txt")
    (root / "ml-1m" / "nested").mkdir()
    (root / "ml-1m" / "nested" / "loop").symlink_to(root / "ml-1m", target_is_directory=True)

    with pytest.raises(R2RecError, match=r"holds '.*/ml-1m/movies\.dat', a link out of it"):
        check_ingest_path(str(root / "ml-1m"))
    os.remove(root / "ml-1m" / "movies.dat")
    check_ingest_path(str(root / "ml-1m"))  # a link loop inside the root is fine, and ends


@pytest.mark.parametrize("path", ["allowed/*", "allowed/{ml-1m,../etc}/passwd", "allowed/[a]"])
def test_glob_characters_are_refused(root, path):
    # Spark would expand them into files the check never saw.
    with pytest.raises(R2RecError, match="may not hold glob characters"):
        check_ingest_path(path)


def test_a_sibling_directory_sharing_the_prefix_is_not_inside(root, tmp_path):
    (tmp_path / "allowed-not").mkdir()

    with pytest.raises(R2RecError, match="is outside the allowed ingest roots"):
        check_ingest_path(str(tmp_path / "allowed-not"))


def test_object_store_uris_need_a_root_uri(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, f"{tmp_path}:s3://bucket/raw/:gs://other")

    assert ingest_roots() == [str(tmp_path), "s3://bucket/raw", "gs://other"]
    check_ingest_path("s3://bucket/raw/events.parquet")
    check_ingest_path("gs://other/x/y.jsonl")
    for uri in ["s3://bucket/private/x", "s3://bucket/rawer/x", "s3://bucket/raw/../private/x",
                "abfss://c@acct.dfs.core.windows.net/raw/x"]:  # fmt: skip
        with pytest.raises(R2RecError, match="is outside the allowed ingest roots"):
            check_ingest_path(uri)


def test_default_roots_are_the_bundled_data_and_data_directories(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.chdir(tmp_path)

    roots = ingest_roots()

    assert roots[0].endswith("/recbole/dataset_example")
    assert roots[1:] == [str(REPOSITORY / "data"), str(tmp_path / "data")]
    check_ingest_path(f"{roots[0]}/ml-100k")
    check_ingest_path("data/ml-1m")
    with pytest.raises(R2RecError, match="outside"):
        check_ingest_path(str(REPOSITORY / "pyproject.toml"))


def test_the_option_name_is_in_the_message(root):
    with pytest.raises(R2RecError, match=r"^ingest --items-path '/etc/hosts' is outside"):
        check_ingest_path("/etc/hosts", "--items-path")
