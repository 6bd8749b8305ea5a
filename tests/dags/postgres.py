"""A private PostgreSQL server for the tests that run Airflow's scheduler.

SQLite takes one writer at a time: a scheduler and an ``airflow backfill create`` beside
it failed with ``database is locked``. A deployment uses PostgreSQL, so these tests do
too. ``make test`` installs Debian's ``postgresql`` package; this starts a throw-away
cluster from its binaries in a temporary directory, on a free port, trusted on
127.0.0.1 only, and removes it afterwards. PostgreSQL refuses to run as root, so a root
test run starts it as the package's ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

INSTALL_HINT = "install PostgreSQL (`apt-get install postgresql`; `make test` does this)"


def bindir() -> Path:
    """The newest installed server's binaries ($R2REC_PG_BINDIR overrides)."""
    explicit = os.environ.get("R2REC_PG_BINDIR")
    found = [explicit] if explicit else glob.glob("/usr/lib/postgresql/*/bin")
    found = [d for d in found if Path(d, "initdb").is_file() and Path(d, "pg_ctl").is_file()]
    if not found:
        raise RuntimeError(f"no PostgreSQL server binaries found: {INSTALL_HINT}")
    return Path(
        max(found, key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(database: str = "airflow", keep: Path | None = None) -> Iterator[str]:
    """Yields a SQLAlchemy URL of a fresh database; the cluster is gone afterwards.

    With ``keep`` (a directory), the cluster lives there and outlives the call: the next
    call with the same directory starts it again with its databases (a long replay that
    resumes in a later session keeps Airflow's record of what already ran).
    """
    bins = bindir()
    run_as: dict = {}
    owner = None
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")  # created by the Debian package
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid}
    # Not under pytest's tmp_path: its root-owned 0700 parents are closed to 'postgres'.
    if keep is None:
        root = Path(tempfile.mkdtemp(prefix="r2rec-pg-"))
    else:
        root = Path(keep).resolve()
        root.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()
    fresh = not (data / "PG_VERSION").is_file()

    def run(*args: str) -> None:
        out = subprocess.run(args, capture_output=True, text=True, timeout=120, **run_as)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")

    try:
        if fresh:
            run(str(bins / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust",
                "-E", "UTF8", "--no-sync")  # fmt: skip
        # A test cluster: durability is not needed, speed is (fsync off).
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off"
        run(str(bins / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options,
            "-w", "-t", "60", "start")  # fmt: skip
        try:
            try:
                run(str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                    "airflow", database)  # fmt: skip
            except RuntimeError as exc:  # a kept cluster's database from an earlier call
                if fresh or "already exists" not in str(exc):
                    raise
            yield f"postgresql+psycopg2://airflow@127.0.0.1:{port}/{database}"
        finally:
            # A kept cluster stops cleanly: fsync is off, so an immediate stop could lose it.
            mode = "immediate" if keep is None else "fast"
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run(str(bins / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop")
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
