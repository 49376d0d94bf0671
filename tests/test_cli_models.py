"""`mlxgw models list|start|stop|logs` against a running gateway whose engine is the fake one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.engine_harness import local_config
from tests.gateway_harness import apply_config, running_gateway
from tests.supervisor_helpers import Lines, alive, write_fake_command


@pytest.fixture
def gateway(home, cli, tmp_path):
    fake = write_fake_command(tmp_path / "bin")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [
        {"name": "m", "path": str(model), "aliases": ["mine"]},
        {"name": "bad", "path": str(model), "args": ["--explode"]},
    ]))
    with running_gateway() as gw:
        yield gw


def test_list_start_logs_stop(cli, gateway):
    url = gateway.origin
    code, out, err = cli("models", "list", "--url", url)
    assert code == 0, err
    assert "MODEL" in out and "ESTIMATE" in out and "stopped" in out and "memory budget" in out
    code, out, err = cli("models", "start", "mine", "--url", url)
    assert code == 0, err
    assert out.startswith("m is ready on port")
    code, out, _ = cli("models", "list", "--json", "--url", url)
    data = json.loads(out)
    m = next(x for x in data["data"] if x["name"] == "m")
    assert m["state"] == "ready" and alive(m["pid"]) and m["memory"] > 0 and m["estimate"]["total"] > 0
    code, out, _ = cli("models", "list", "--url", url)
    assert "ready" in out and str(m["pid"]) in out
    code, out, _ = cli("models", "logs", "m", "-n", "3", "--url", url)
    assert code == 0 and "fake-engine" in out and len(out.splitlines()) == 3
    code, out, _ = cli("models", "stop", "m", "--url", url)
    assert code == 0 and out.strip() == "m is stopped"
    assert not alive(m["pid"])


def test_logs_follow(cli, gateway):
    url = gateway.origin
    assert cli("models", "start", "m", "--url", url)[0] == 0
    proc = subprocess.Popen([sys.executable, "-m", "mlxgw", "models", "logs", "m", "-f", "-n", "1", "--url", url,
                             "--interval", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    lines = Lines(proc.stdout)
    try:
        lines.next()  # the last line so far: it follows now
        assert cli("models", "stop", "m", "--url", url)[0] == 0
        lines.until(lambda line: "mlxgw stopped the engine (asked to)" in line)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_failed_start_shows_the_engine_log(cli, gateway):
    code, out, err = cli("models", "start", "bad", "--url", gateway.origin)
    assert code == 1
    assert "last lines of the engine log" in err and "fake-engine: starting" in err
    assert "bad did not start" in err and "mlxgw models logs bad" in err


def test_unknown_model(cli, gateway):
    code, out, err = cli("models", "stop", "nope", "--url", gateway.origin)
    assert code == 1 and "no local model named 'nope'" in err and "mlxgw models list" in err


def test_no_gateway_running(cli, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLXGW_URL", f"http://127.0.0.1:{port}")
    for args in (["list"], ["start", "m"], ["stop", "m"], ["logs", "m"]):
        code, out, err = cli("models", *args)
        assert code == 1 and "no gateway is running at" in err and "mlxgw serve" in err
