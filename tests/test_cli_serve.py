"""`mlxgw serve` as a real process: starts, serves, and on SIGTERM drains the audit log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.gateway_harness import apply_config, openai_config
from tests.supervisor_helpers import wait_until
from tests.upstream import upstream, upstream_server  # noqa: F401


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "mlxgw", "serve", "--port", str(port), *args],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return proc, port, time.monotonic() - t0
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() - t0 > 60:  # a deadline, not a timing check: a loaded 2-core box took over 10 s
            proc.kill()
            raise AssertionError("serve did not answer within 60 s")
        time.sleep(0.02)


def test_serve_starts_and_sigterm_loses_no_audit_row(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    proc, port, started = start()
    try:
        # Start-up time is measured by bench/run.py, not asserted here: a timed test flakes on a busy CI box.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1") as c:
            for i in range(40):
                r = c.post("/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
                                                      "stream": i % 2 == 1})
                assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    code, out, _ = cli("logs", "stats", "--json")
    import json
    assert json.loads(out)["total"]["requests"] == 40


def test_serve_beyond_loopback_requires_a_key(home, cli):
    code, out, err = cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert code == 1 and "gateway keys" in err and "mlxgw tokens create" in err


@pytest.mark.parametrize("flag", ["--help"])
def test_serve_help(cli, flag):
    code, out, _ = cli("serve", flag)
    assert code == 0 and "--host" in out and "--port" in out and "--db" in out


def test_serve_with_the_wrong_master_key_is_a_plain_error(home, cli, tmp_path, upstream, monkeypatch):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    from cryptography.fernet import Fernet

    env = dict(os.environ, MLXGW_MASTER_KEY=Fernet.generate_key().decode())
    r = subprocess.run([sys.executable, "-m", "mlxgw", "serve", "--port", str(free_port())], env=env,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "cannot decrypt" in r.stderr and "Traceback" not in r.stderr


def test_sighup_reloads_at_once(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    proc, port, _ = start("--reload-interval", "60")
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "brand-new", "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(url, json=body).status_code == 404
        apply_config(cli, tmp_path, openai_config(upstream.base_url, routes="- match: {exact: brand-new}\n  target: up\n"),
                     name="new.yaml")
        proc.send_signal(signal.SIGHUP)
        # At once: the reload interval is 60 s, so only the signal can have made it (15 s tells a hang).
        assert wait_until(lambda: httpx.post(url, json=body).status_code == 200, 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0
