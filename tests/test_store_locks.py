"""Opening the store never drops the locks this process holds on it.

POSIX drops every lock a process holds on a file when it closes any descriptor of that file. SQLite's
connections rely on theirs: once they are gone, another process takes itself for the database's only user,
and on closing it checkpoints and deletes the WAL while this process still writes to it, so this process's
later commits stay invisible to everyone until it closes (a running `mlxgw serve` whose audit rows `mlxgw
logs` did not see). Making sure the file exists (`private_file`, on every Store and Database open) must
therefore not open an existing file.
"""

from __future__ import annotations

import subprocess
import sys

from mlxgw.store.sql import Database, private_file


def test_opening_the_store_again_keeps_the_locks_of_open_connections(tmp_path):
    path = tmp_path / "mlxgw.db"
    conn = Database(f"sqlite:///{path}").connect()  # WAL mode: it holds its locks on the file while open
    conn.execute("create table t (x)")
    conn.execute("insert into t values (1)")
    wal = tmp_path / "mlxgw.db-wal"
    assert wal.exists()
    private_file(path)  # what each Store or Database over this file does first
    Database(f"sqlite:///{path}")
    other = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
             "assert c.execute('select x from t').fetchall() == [(1,)]; c.close()")
    subprocess.run([sys.executable, "-c", other, str(path)], check=True, timeout=60)
    # The other process saw this one's connection, so it left the WAL in place on closing.
    assert wal.exists()
    conn.execute("insert into t values (2)")
    seen = subprocess.run([sys.executable, "-c", other.replace("== [(1,)]", "== [(1,), (2,)]"), str(path)],
                          timeout=60)
    assert seen.returncode == 0  # a commit made after the reopen is visible to other processes
    conn.close()
