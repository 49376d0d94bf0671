"""`mlxgw logs tail [-n N] [-f] [--json]` and `mlxgw logs stats [--json]` over a real store."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys

from mlxgw.audit.writer import AuditWriter
from mlxgw.store.db import Store
from tests.supervisor_helpers import Lines
from tests.test_audit import row

pytestmark = pytest.mark.both_stores  # SQLite and PostgreSQL (tests/conftest.py)


def write(*rows: dict) -> None:
    w = AuditWriter(Store())
    for r in rows:
        w.record(r)
    w.flush_sync()


def test_tail_json_and_text(home, cli):
    write(*(row(i) for i in range(5)), row(5, status=504, error="provider 'up' timed out"))
    code, out, err = cli("logs", "tail", "-n", "2", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in lines] == ["req_000004", "req_000005"]
    assert lines[1]["status"] == 504 and lines[1]["input_tokens"] == 2
    code, out, _ = cli("logs", "tail")
    assert code == 0 and len(out.splitlines()) == 6
    assert "req_000005 504 gpt-4o -> up/gpt-4o" in out and "error=provider 'up' timed out" in out


def test_tail_on_an_empty_log(home, cli):
    code, out, _ = cli("logs", "tail", "--json")
    assert code == 0 and out == ""


def test_tail_follow_prints_new_rows(home):
    write(row(0))
    proc = subprocess.Popen([sys.executable, "-m", "mlxgw", "logs", "tail", "-f", "--json", "--interval", "0.05"],
                            env=dict(os.environ), stdout=subprocess.PIPE, text=True)
    lines = Lines(proc.stdout)
    try:
        assert json.loads(lines.next())["id"] == "req_000000"
        write(row(1), row(2))
        assert json.loads(lines.next())["id"] == "req_000001"
        assert json.loads(lines.next())["id"] == "req_000002"
    finally:
        proc.terminate()
        proc.wait(5)


def test_stats(home, cli):
    write(row(1, duration_ms=10.0), row(2, duration_ms=30.0, status=500, error="boom"),
          row(3, provider="other", route="exact:x", duration_ms=20.0, failovers=1, attempts=2))
    code, out, err = cli("logs", "stats", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["total"] == {"requests": 3, "errors": 1, "p50_ms": 20.0, "p95_ms": 30.0, "input_tokens": 6,
                          "output_tokens": 9, "failovers": 1}
    assert s["routes"]["exact:x"]["failovers"] == 1 and s["providers"]["up"]["failovers"] == 0
    assert s["providers"]["up"]["requests"] == 2 and s["routes"]["exact:x"]["requests"] == 1
    assert s["client_apis"] == {"openai": {**s["total"]}}
    code, out, _ = cli("logs", "stats")
    assert code == 0 and "total" in out and "requests=3 errors=1" in out and "per provider:" in out
    assert "failovers=1" in out
