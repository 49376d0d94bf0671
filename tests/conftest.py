"""Shared fixtures: every test gets its own MLXGW_HOME (a real SQLite file) and master key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SENTINEL_OPENAI = "sk-SENTINEL-openai-7f3a9c1e5b"
SENTINEL_ANTHROPIC = "sk-ant-SENTINEL-2d8e4f6a0c"


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
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MLXGW_HOME", str(h))
    monkeypatch.delenv("MLXGW_DB", raising=False)
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
