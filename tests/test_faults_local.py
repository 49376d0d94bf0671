"""Fault injection for local engines (issue 6), with the tests' own fake engine (tests/fake_engine.py, a
real process and a real HTTP server): an engine that crashes while loading, exits at once, or is killed
while serving; a cold model slower than the route's max_wait (served by the fallback while it loads,
ready for the next request; or, with on_cold: retry_later, a 503 / 529 with retry-after); and a graceful
shutdown of `mlxgw serve` with a request in flight.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml

from mlxgw.server import ServerConfig
from tests.fault_harness import DIALECTS, ask, cloud_config
from tests.gateway_harness import answers_health, apply_config, free_port, refuses, running_gateway, wait_for_rows
from tests.supervisor_helpers import alive, wait_until, write_fake_command
from tests.upstream import Reply, upstream, upstream_server  # noqa: F401


@pytest.fixture
def fake(tmp_path):
    return write_fake_command(tmp_path / "bin")


@pytest.fixture
def model_path(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return str(d)


def local(name: str, command: str, path: str, env: dict | None = None, kind: str = "vllm-mlx", **model_extra) -> dict:
    return {"name": name, "kind": kind, "command": command, "env": env or {},
            "models": [{"name": "m", "path": path, "idle_ttl": "10m", **model_extra}]}


def config(up_url: str, fake: str, path: str, loads: Path) -> str:
    """`slow` and `slow2` load until the test creates loads/slow or loads/slow2."""
    providers = [
        local("crashy", fake, path, {"FAKE_START_DELAY": "0.3", "FAKE_MODE": "exit"}),
        local("quitter", fake, path, {"FAKE_MODE": "exit"}),
        # OpenAI's wire for both dialects: the fake engine streams chat completions only
        local("steady", fake, path, {"FAKE_TOKEN_DELAY": "0.1"}, kind="mlx-openai-server"),
        local("slow", fake, path, {"FAKE_READY_FILE": str(loads / "slow")}),
        local("slow2", fake, path, {"FAKE_READY_FILE": str(loads / "slow2")}),
    ]
    routes = [
        {"name": "crash-load", "match": {"exact": "crash-load"}, "target": "crashy/m", "fallback": ["backup/b"]},
        {"name": "exit-now", "match": {"exact": "exit-now"}, "target": "quitter/m", "fallback": ["backup/b"]},
        {"name": "exit-solo", "match": {"exact": "exit-solo"}, "target": "quitter/m"},
        {"name": "killed", "match": {"exact": "killed"}, "target": "steady/m", "fallback": ["backup/b"]},
        {"name": "cold", "match": {"exact": "cold"}, "target": "slow/m", "fallback": ["backup/b"],
         "max_wait": "300ms"},
        {"name": "cold-later", "match": {"exact": "cold-later"}, "target": "slow2/m", "fallback": ["backup/b"],
         "max_wait": "300ms", "on_cold": "retry_later"},
    ]
    return cloud_config(up_url, providers=providers, routes=routes)


@pytest.fixture
def gw(home, cli, tmp_path, upstream, fake, model_path):  # noqa: F811
    apply_config(cli, tmp_path, config(upstream.base_url, fake, model_path, tmp_path))
    with running_gateway(ServerConfig(reload_interval=0.2)) as g:
        yield g


def engine(gw, provider: str):
    return gw.app.gateway.supervisor.get(provider, "m")


@pytest.mark.parametrize("route,provider", [("crash-load", "crashy"), ("exit-now", "quitter")])
def test_an_engine_that_fails_to_start_fails_over(gw, route, provider):
    ids = []
    for dialect in DIALECTS:
        for stream in (False, True):
            seen = ask(gw, dialect, route, stream)
            assert seen.status == 200 and "Echo: hello there" in seen.text(), (dialect, stream, seen.body)
            if stream:
                assert seen.complete
            ids.append(seen.request_id)
    rows = {r["id"]: r for r in wait_for_rows(gw, 4)}
    for rid in ids:
        row = rows[rid]
        first = row["attempts_detail"][0]
        assert first["target"] == f"{provider}/m" and first["outcome"] == "engine_failed"
        assert "exited with code 3 while starting" in first["error"]
        assert row["provider"] == "backup" and row["failovers"] == 1
    assert engine(gw, provider).state == "failed"
    # Without a fallback the engine's failure and its last log lines reach the client.
    for dialect in DIALECTS:
        seen = ask(gw, dialect, "exit-solo")
        assert seen.status == 502, (dialect, seen.body)
        msg = seen.error_message()
        assert "exited with code 3 while starting" in msg and "boom: cannot load the model weights" in msg, msg
    assert ask(gw, "openai", "m").status == 200  # and the gateway keeps serving


def test_an_engine_killed_while_serving(gw):
    m = engine(gw, "steady")
    for dialect in DIALECTS:
        path = "/v1/chat/completions" if dialect == "openai" else "/v1/messages"
        body = {"model": "killed", "stream": True, "max_tokens": 40, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", gw.origin + path, json=body, timeout=30,
                          headers={"anthropic-version": "2023-06-01"}) as r:
            assert r.status_code == 200
            chunks = r.iter_text()
            got = next(chunks)
            assert wait_until(lambda: m.state == "ready" and m.proc is not None, 20)
            os.killpg(m.proc.pid, signal.SIGKILL)
            got += "".join(chunks)
        if dialect == "openai":
            assert '"error"' in got and "[DONE]" not in got
        else:
            assert "event: error" in got and "message_stop" not in got
    rows = wait_for_rows(gw, 2)
    for row in rows:
        assert row["status"] == 200 and row["error"].startswith("stream broke after ")
        assert row["attempts_detail"][-1]["outcome"] == "broke_mid_stream"
    # The crash is noticed; the next request starts the engine again and is served by it.
    seen = ask(gw, "openai", "killed")
    assert seen.status == 200 and wait_for_rows(gw, 3)[-1]["provider"] == "steady"
    assert m.starts == 3  # one per dialect above, then this one


def test_a_cold_model_slower_than_max_wait_is_served_by_the_fallback_while_it_loads(gw, tmp_path):
    m = engine(gw, "slow")
    seen = ask(gw, "anthropic", "cold")
    assert seen.status == 200 and m.state == "starting"  # answered while the engine still loads
    row = wait_for_rows(gw, 1)[-1]
    assert row["provider"] == "backup" and row["attempts_detail"][0]["outcome"] == "cold"
    assert "keeps loading in the background" in row["attempts_detail"][0]["error"]
    # A load that lasts at least 1 s, so the start time the gateway learns is over the 300 ms max_wait.
    time.sleep(max(0.0, 1.0 - (time.time() - m.started_at)))
    (tmp_path / "slow").touch()
    assert wait_until(lambda: m.state == "ready", 20)  # loaded in the background
    seen = ask(gw, "openai", "cold", True)
    assert seen.status == 200 and seen.complete and wait_for_rows(gw, 2)[-1]["provider"] == "slow"
    assert m.starts == 1
    # Stopped again: its expected start (learned) is over max_wait, so the request fails over at once,
    # without waiting max_wait for it: the attempt names the expected start rather than having waited.
    r = httpx.post(gw.origin + "/admin/models/m/stop", params={"provider": "slow"}, timeout=30)
    assert r.status_code == 200 and m.state == "stopped"
    listed = {d["provider"]: d for d in httpx.get(gw.origin + "/admin/models", timeout=10).json()["data"]}
    assert listed["slow"]["expected_start"] >= 1.0
    seen = ask(gw, "openai", "cold")
    assert seen.status == 200
    row = wait_for_rows(gw, 3)[-1]
    assert row["provider"] == "backup" and row["attempts_detail"][0]["outcome"] == "cold"
    assert re.search(r"is loading \(about \d+\.\ds to go, the route's max_wait is 0\.3s\)",
                     row["attempts_detail"][0]["error"]), row["attempts_detail"][0]
    assert wait_until(lambda: m.state == "ready", 20)  # the ready file is there: this load ends by itself


def test_a_cold_model_with_retry_later_tells_the_client_when_to_come_back(gw, tmp_path):
    m = engine(gw, "slow2")
    seen = ask(gw, "openai", "cold-later")
    assert seen.status == 503 and seen.body["error"]["code"] == "model_loading"
    assert int(seen.headers["retry-after"]) >= 1
    seen = ask(gw, "anthropic", "cold-later", True)
    assert seen.status == 529 and seen.body["error"]["type"] == "overloaded_error"
    assert int(seen.headers["retry-after"]) >= 1
    rows = wait_for_rows(gw, 2)
    assert [r["attempts_detail"][0]["outcome"] for r in rows] == ["loading", "loading"]
    (tmp_path / "slow2").touch()
    assert wait_until(lambda: m.state == "ready", 20)
    assert m.starts == 1
    for dialect in DIALECTS:
        seen = ask(gw, dialect, "cold-later")
        assert seen.status == 200
    assert wait_for_rows(gw, 4)[-1]["provider"] == "slow2"


def test_sigterm_lets_the_request_in_flight_finish_then_flushes_the_audit_and_stops_engines(
        home, cli, tmp_path, upstream, fake, model_path):  # noqa: F811
    data = yaml.safe_load(config(upstream.base_url, fake, model_path, tmp_path))
    apply_config(cli, tmp_path, yaml.safe_dump(data))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlxgw", "serve", "--port", str(port), "--shutdown-timeout", "10",
                             "--log-level", "warning"], env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    origin = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: answers_health(origin), 20)
        # An engine the gateway started, and a slow stream in flight when SIGTERM arrives.
        assert httpx.post(origin + "/admin/models/m/start", params={"provider": "steady"}, timeout=30).status_code == 200
        listed = httpx.get(origin + "/admin/models", timeout=10).json()["data"]
        pid = next(d["pid"] for d in listed if d["provider"] == "steady")
        assert alive(pid)
        upstream.script(Reply(text=" ".join(["word"] * 15), delay_between=0.1), model="p")
        with httpx.stream("POST", origin + "/v1/chat/completions", timeout=30,
                          json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
            chunks = r.iter_text()
            text = next(chunks)
            proc.send_signal(signal.SIGTERM)
            assert wait_until(lambda: refuses(origin), 20)  # no longer accepting
            text += "".join(chunks)
        assert text.endswith("data: [DONE]\n\n") and text.count("word") == 15
        assert proc.wait(20) == 0
        assert not alive(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    from mlxgw.audit import queries
    from mlxgw.store.db import Store

    rows = queries.tail(Store(), 10)
    assert rows[-1]["requested_model"] == "m" and rows[-1]["status"] == 200 and rows[-1]["error"] is None
