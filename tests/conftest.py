"""Shared fixtures: every test gets its own MLXGW_HOME (a real SQLite file) and master key.

Tests (or modules) marked `both_stores` run twice: on SQLite, and on a fresh PostgreSQL database of their
own (MLXGW_DB points at it, so the CLI, the server and Store() all use it). The PostgreSQL server is
MLXGW_TEST_PG_URL (what .ci/run exports), else a throwaway cluster started here for the session
(tests/pg_cluster.py) when Debian's postgresql is installed. Under CI=true a missing PostgreSQL fails
these tests; elsewhere it skips them, saying how to get it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SENTINEL_OPENAI = "sk-SENTINEL-openai-7f3a9c1e5b"
SENTINEL_ANTHROPIC = "sk-ant-SENTINEL-2d8e4f6a0c"


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_stores") and "store_kind" in metafunc.fixturenames:
        if any("store_kind" in m.args[0] for m in metafunc.definition.iter_markers("parametrize")):
            return  # the test picks its store itself
        metafunc.parametrize("store_kind", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session", autouse=True)
def _no_real_home(tmp_path_factory):
    """No test ever reads or writes the user's own store (~/.local/share/mlxgw): a test that forgets
    `home` gets an empty session-wide one instead (test_server_app did, and failed once another
    checkout's newer schema sat in the real one)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLXGW_HOME", str(tmp_path_factory.mktemp("session-home")))
    mp.delenv("MLXGW_DB", raising=False)
    yield
    mp.undo()


@pytest.fixture
def store_kind(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_server():
    """The admin URL of a PostgreSQL server the tests may create databases on."""
    url = os.environ.get("MLXGW_TEST_PG_URL")
    if url:
        yield url
        return
    from tests import pg_cluster

    if pg_cluster.bin_dir() is None:
        why = "PostgreSQL is not installed: apt-get install postgresql, or set MLXGW_TEST_PG_URL"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    folder = Path(tempfile.mkdtemp(prefix="mlxgw-pg-"))
    url = pg_cluster.start(folder)
    try:
        yield url
    finally:
        pg_cluster.stop(folder)


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    import sqlalchemy as sa

    name = "t_" + uuid.uuid4().hex[:16]
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def home(tmp_path, monkeypatch, request, store_kind) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MLXGW_HOME", str(h))
    monkeypatch.delenv("MLXGW_DB", raising=False)
    if store_kind == "postgresql":
        monkeypatch.setenv("MLXGW_DB", request.getfixturevalue("pg_url"))
    monkeypatch.setenv("MLXGW_MASTER_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_OPENAI)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL_ANTHROPIC)
    return h


@pytest.fixture
def cli():
    """Run the real CLI in-process; returns (exit_code, stdout, stderr)."""
    from mlxgw.cli import app

    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        result = runner.invoke(app, list(args), input=input, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


def run_process(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 60):
    """Run `python -m mlxgw ...` as a real subprocess with the current environment plus `env`."""
    full = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "mlxgw", *args], env=full, input=input, capture_output=True,
                          text=True, timeout=timeout)
