"""A locked, read-only, foreign or newer database: one clear message, non-zero exit, store unchanged."""

from __future__ import annotations

import sqlite3
import threading

from mlxgw.store.db import SCHEMA_VERSION
from tests.conftest import EXAMPLES, run_process

FILE = str(EXAMPLES / "local-only.yaml")
OTHER = str(EXAMPLES / "cloud-only.yaml")


def test_locked_database(home, cli):
    assert cli("apply", "-f", FILE, "--yes")[0] == 0
    before = cli("export")[1]
    db = sqlite3.connect(home / "mlxgw.db", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        code, out, err = cli("apply", "-f", OTHER, "--yes")
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert code == 1
    assert f"the database {home / 'mlxgw.db'} is locked by another process" in err
    assert "Traceback" not in err
    assert cli("export")[1] == before


def test_read_only_database(home, cli, tmp_path):
    assert cli("apply", "-f", FILE, "--yes")[0] == 0
    before = cli("export")[1]
    url = f"sqlite:///file:{home / 'mlxgw.db'}?mode=ro&uri=true"
    code, out, err = cli("apply", "-f", OTHER, "--yes", "--db", url)
    assert code == 1
    assert "it is read-only" in err and "writable" in err
    assert cli("export")[1] == before
    # Reading still works.
    assert cli("export", "--db", url)[1] == before


def test_newer_schema_version(home, cli):
    assert cli("apply", "-f", FILE, "--yes")[0] == 0
    with sqlite3.connect(home / "mlxgw.db") as db:
        db.execute("update meta set value = '99' where key = 'schema_version'")
    code, out, err = cli("apply", "-f", OTHER, "--yes")
    assert code == 1
    assert f"has schema version 99, newer than this mlxgw understands ({SCHEMA_VERSION})" in err
    assert "upgrade mlxgw" in err
    with sqlite3.connect(home / "mlxgw.db") as db:
        assert db.execute("select count(*) from revisions").fetchone()[0] == 1


def test_not_a_database(home, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    r = run_process("export", "--db", f"sqlite:///{junk}")
    assert r.returncode == 1
    assert f"{junk} is not a usable mlxgw database" in r.stderr
    assert "Traceback" not in r.stderr
    assert junk.read_bytes().startswith(b"this is not sqlite")


def test_fresh_store_is_wal_and_migrated(home, cli):
    assert cli("export")[0] == 0
    with sqlite3.connect(home / "mlxgw.db") as db:
        assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert db.execute("select value from meta where key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_concurrent_applies_do_not_interleave(home, cli, tmp_path):
    """Two applies racing (with --prune, so each file is the whole config): each either lands whole or
    fails cleanly; the result is one of the two files, never a mix."""
    from mlxgw.cli import app  # noqa: F401  (imported before threads start)

    results = []

    def go(path):
        r = run_process("apply", "-f", path, "--yes", "--prune")  # --prune: the file is the whole config
        results.append(r.returncode)

    threads = [threading.Thread(target=go, args=(p,)) for p in (FILE, OTHER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(code in (0, 1) for code in results)
    exported = cli("export")[1]
    # What each file alone leaves in a store of its own: the raced store holds exactly one of them.
    alone = []
    for i, path in enumerate((FILE, OTHER)):
        env = {"MLXGW_HOME": str(tmp_path / f"alone{i}")}
        assert run_process("apply", "-f", path, "--yes", env=env).returncode == 0
        alone.append(run_process("export", env=env).stdout)
    assert alone[0] != alone[1] and exported in alone


def test_serve_migrates_a_fresh_store_and_refuses_a_newer_one(home):
    """`mlxgw serve` opens the store without SQLAlchemy (mlxgw.store.sql), yet behaves as before: a missing
    store is created and migrated, a newer one refused with the same message as every other command."""
    import signal

    from tests.test_cli_serve import start

    proc, _port, _ = start()  # a fresh MLXGW_HOME: no database yet
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    with sqlite3.connect(home / "mlxgw.db") as db:
        assert db.execute("select value from meta where key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        db.execute("update meta set value = '99' where key = 'schema_version'")
    r = run_process("serve", "--port", "9")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"has schema version 99, newer than this mlxgw understands ({SCHEMA_VERSION})" in r.stderr
    assert "upgrade mlxgw" in r.stderr
