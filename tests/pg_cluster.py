"""A throwaway PostgreSQL cluster for the tests, from Debian's `postgresql` package.

    python tests/pg_cluster.py start DIR    # prints the admin URL (postgresql+psycopg://...)
    python tests/pg_cluster.py stop DIR

`initdb` in DIR (trust auth, loopback only, a free port), `pg_ctl start`, and the URL of its `postgres`
database. PostgreSQL refuses to run as root, so as root DIR is handed to the `postgres` user (which the
package creates) and the commands run through `runuser`. `.ci/run` starts one and exports
MLXGW_TEST_PG_URL; without that variable, tests/conftest.py starts one itself for the session when the
binaries are installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _run(cmd: list[str], as_postgres: bool) -> None:
    if as_postgres:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")


def start(folder: str | Path) -> str:
    """Create and start a cluster in `folder`; return its admin URL."""
    bins = bin_dir()
    if bins is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(folder)
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    as_postgres = os.geteuid() == 0
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
        folder.chmod(0o700)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _run([str(bins / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
         as_postgres)
    opts = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections=200")
    _run([str(bins / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(folder / "server.log"), "-w", "start"],
         as_postgres)
    (folder / "port").write_text(str(port))
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def stop(folder: str | Path) -> None:
    bins = bin_dir()
    data = Path(folder) / "data"
    if bins is not None and data.exists():
        _run([str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], os.geteuid() == 0)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        raise SystemExit("usage: pg_cluster.py start|stop DIR")
    if sys.argv[1] == "start":
        print(start(sys.argv[2]))
    else:
        stop(sys.argv[2])
