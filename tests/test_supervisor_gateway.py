"""Local models through the real gateway, with the fake engine (a real process): cold starts, request
defaults and aliases, start time outside the first-token timeout, disconnects, failures, reloads, the
admin API and its access rule."""

from __future__ import annotations

import json
import threading

import falcon.testing
import httpx
import pytest
import yaml

from mlxgw.server import ServerConfig, create_app
from tests.engine_harness import local_config
from tests.fake_engine import COUNT_TOKENS
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.supervisor_helpers import alive, wait_until, write_fake_command

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def fake(tmp_path):
    return write_fake_command(tmp_path / "bin")


@pytest.fixture
def model_path(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return str(d)


def sup_model(gw, name: str):
    return gw.app.gateway.supervisor.find(name)


def test_cold_request_starts_the_engine_with_defaults_and_aliases(home, cli, tmp_path, fake, model_path):
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [
        {"name": "small", "path": model_path, "aliases": ["default"],
         "defaults": {"temperature": 0.2, "max_tokens": 7}}]))
    with running_gateway() as gw, httpx.Client(base_url=gw.base_url, timeout=30) as c:
        r = c.post("/chat/completions", json={"model": "default", "messages": MESSAGES})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "small"
        echo = json.loads(body["choices"][0]["message"]["content"][5:])
        assert echo == {"max_completion_tokens": None, "max_tokens": 7, "temperature": 0.2, "top_p": None}
        # What the request sets wins over the defaults; max_completion_tokens counts as max_tokens.
        r = c.post("/chat/completions", json={"model": "small", "messages": MESSAGES, "temperature": 1.0,
                                              "max_completion_tokens": 3})
        echo = json.loads(r.json()["choices"][0]["message"]["content"][5:])
        assert echo["temperature"] == 1.0 and echo["max_tokens"] is None and echo["max_completion_tokens"] == 3
        with c.stream("POST", "/chat/completions", json={"model": "small", "messages": MESSAGES,
                                                          "stream": True}) as s:
            text = "".join(s.iter_text())
        assert s.status_code == 200 and text.endswith("data: [DONE]\n\n") and '"finish_reason":"length"' in text
        assert sup_model(gw, "small").starts == 1


def test_the_start_counts_in_ttfb_but_not_against_the_first_token_timeout(home, cli, tmp_path, fake, model_path):
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [{"name": "slow", "path": model_path}],
                                             env={"FAKE_START_DELAY": "1.5"}, timeouts={"first_token": "1s"}))
    with running_gateway() as gw, httpx.Client(base_url=gw.base_url, timeout=30) as c:
        for stream in (False, True):
            if stream:  # cold again
                assert httpx.post(gw.origin + "/admin/models/slow/stop", timeout=30).status_code == 200
            r = c.post("/chat/completions", json={"model": "slow", "messages": MESSAGES, "stream": stream})
            assert r.status_code == 200, r.text
            assert r.text.endswith("data: [DONE]\n\n") if stream else r.json()["choices"][0]["message"]["content"]
        rows = wait_for_rows(gw, 2)
    # Each answer waited for a 1.5 s start with a 1 s first-token timeout: the start is in the time to
    # first byte the audit log reports, and was not held against the timeout (both answered).
    assert [r["status"] for r in rows] == [200, 200]
    assert all(r["ttfb_ms"] >= 1500 and r["duration_ms"] >= r["ttfb_ms"] for r in rows), rows


def test_count_tokens_is_vllm_mlx_s_own_and_estimated_for_mlx_openai_server(home, cli, tmp_path, fake, model_path):
    config = yaml.safe_load(local_config("vllm-mlx", fake, [{"name": "q", "path": model_path}], provider="vl"))
    other = yaml.safe_load(local_config("mlx-openai-server", fake, [{"name": "r", "path": model_path}], provider="mo"))
    config["providers"] += other["providers"]
    config["routes"] += other["routes"]
    apply_config(cli, tmp_path, yaml.safe_dump(config))
    body = {"messages": [{"role": "user", "content": "how many tokens is this?"}]}
    with running_gateway() as gw:
        counts = {}
        for name in ("q", "r"):
            r = httpx.post(gw.base_url + "/messages/count_tokens", json={"model": name, **body}, timeout=30,
                           headers={"anthropic-version": "2023-06-01"})
            assert r.status_code == 200, r.text
            counts[name] = r.json()["input_tokens"]
        assert counts["q"] == COUNT_TOKENS and sup_model(gw, "q").starts == 1  # asked the engine
        assert 0 < counts["r"] < 100 and sup_model(gw, "r").starts == 0  # the gateway's estimate, no start


def test_a_client_that_gives_up_during_the_load_does_not_cancel_it(home, cli, tmp_path, fake, model_path):
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [{"name": "slow", "path": model_path}],
                                             env={"FAKE_START_DELAY": "1.0"}))
    with running_gateway() as gw:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gw.base_url + "/chat/completions", json={"model": "slow", "messages": MESSAGES}, timeout=0.3)
        m = sup_model(gw, "slow")
        assert wait_until(lambda: m.state == "ready", 10)
        r = httpx.post(gw.base_url + "/chat/completions", json={"model": "slow", "messages": MESSAGES}, timeout=10)
        assert r.status_code == 200 and m.starts == 1


def test_a_client_that_disconnects_mid_stream_cancels_the_upstream_request(home, cli, tmp_path, fake, model_path):
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [{"name": "m", "path": model_path}],
                                             env={"FAKE_TOKEN_DELAY": "0.1"}))
    with running_gateway() as gw:
        with httpx.Client(base_url=gw.base_url, timeout=30) as c:
            with c.stream("POST", "/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True,
                                                              "max_tokens": 200}) as s:
                next(s.iter_bytes())
        m = sup_model(gw, "m")
        assert wait_until(lambda: "client disconnected mid-stream" in m.log_path.read_text(), 10)
        assert "stream complete" not in m.log_path.read_text()
        assert wait_until(lambda: m.inflight == 0, 20)


def test_ten_concurrent_cold_requests_share_one_start(home, cli, tmp_path, fake, model_path):
    starts = tmp_path / "starts"
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [{"name": "m", "path": model_path}],
                                             env={"FAKE_START_DELAY": "0.5", "FAKE_STARTS": str(starts)}))
    with running_gateway() as gw:
        codes = []

        def one():
            r = httpx.post(gw.base_url + "/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=30)
            codes.append(r.status_code)

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200] * 10
        assert len(starts.read_text().splitlines()) == 1


def test_a_failed_start_is_a_quick_502_with_the_engine_log(home, cli, tmp_path, fake, model_path):
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [{"name": "m", "path": model_path}],
                                             env={"FAKE_MODE": "exit"}))
    with running_gateway() as gw:
        r = httpx.post(gw.base_url + "/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=30)
        assert r.status_code == 502  # quick: the exit is reported, the start timeout is not waited out
        err = r.json()["error"]
        assert err["code"] == "upstream_unavailable"
        assert "exited with code 3 while starting" in err["message"] and "boom: cannot load" in err["message"]


def test_a_failed_local_start_fails_over(home, cli, tmp_path, fake, model_path):
    good = tmp_path / "good"
    good.mkdir()
    text = local_config("vllm-mlx", fake, [{"name": "m", "path": model_path}], env={"FAKE_MODE": "exit"},
                        routes=[{"match": {"exact": "m"}, "target": "eng/m", "fallback": ["eng2/m2"]}])
    import yaml

    doc = yaml.safe_load(text)
    doc["providers"].append({"name": "eng2", "kind": "mlx-openai-server", "command": fake,
                             "models": [{"name": "m2", "path": str(good)}]})
    apply_config(cli, tmp_path, yaml.safe_dump(doc))
    with running_gateway() as gw:
        r = httpx.post(gw.base_url + "/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=30)
        assert r.status_code == 200 and r.json()["model"] == "m2"


def test_reload_keeps_an_unchanged_engine_and_serve_shutdown_stops_engines(home, cli, tmp_path, fake, model_path):
    models = [{"name": "a", "path": model_path}, {"name": "b", "path": model_path}]
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, models))
    with running_gateway(reload_interval=0.1) as gw:
        for name in "ab":
            assert httpx.post(gw.base_url + "/chat/completions", json={"model": name, "messages": MESSAGES},
                              timeout=30).status_code == 200
        a, b = sup_model(gw, "a"), sup_model(gw, "b")
        pa, pb = a.proc.pid, b.proc.pid
        models[1]["args"] = ["--changed"]
        models[0]["idle_ttl"] = "1h"
        apply_config(cli, tmp_path, local_config("vllm-mlx", fake, models))
        assert wait_until(lambda: not alive(pb), 10)  # b's launch spec changed: restarted when idle
        assert alive(pa) and a.proc.pid == pa and a.settings.idle_ttl == 3600
        r = httpx.post(gw.base_url + "/chat/completions", json={"model": "b", "messages": MESSAGES}, timeout=30)
        assert r.status_code == 200 and sup_model(gw, "b").proc.pid != pb
        pb2 = sup_model(gw, "b").proc.pid
    assert not alive(pa) and not alive(pb2)


def test_admin_api(home, cli, tmp_path, fake, model_path):
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [
        {"name": "m", "path": model_path, "aliases": ["mm"], "context_length": 4096}]))
    with running_gateway() as gw, httpx.Client(base_url=gw.origin, timeout=30) as c:
        listed = c.get("/admin/models").json()
        (m,) = listed["data"]
        assert (m["name"], m["provider"], m["kind"], m["state"], m["aliases"]) == ("m", "eng", "vllm-mlx", "stopped", ["mm"])
        assert m["estimate"]["context_length"] == 4096 and listed["budget"] > 0
        r = c.post("/admin/models/mm/start")
        assert r.status_code == 200 and r.json()["state"] == "ready" and r.json()["pid"]
        m = c.get("/admin/models").json()["data"][0]
        assert m["memory"] > 0 and m["uptime"] >= 0 and m["last_used"] and m["port"]
        logs = c.get("/admin/models/m/logs", params={"lines": 5})
        assert "fake-engine: listening" in logs.text and int(logs.headers["x-log-offset"]) > 0
        more = c.get("/admin/models/m/logs", params={"offset": logs.headers["x-log-offset"]})
        assert more.text == ""
        r = c.post("/admin/models/m/stop")
        assert r.json()["state"] == "stopped"
        assert "mlxgw stopped the engine (asked to)" in c.get("/admin/models/m/logs").text
        r = c.post("/admin/models/nope/start")
        assert r.status_code == 404 and "no local model named 'nope'" in r.json()["error"]["message"]


def test_admin_api_refuses_other_hosts_without_a_key(home):
    app = create_app(ServerConfig(require_keys=False))
    r = falcon.testing.simulate_get(app, "/admin/models", remote_addr="192.0.2.7", host="localhost")
    assert r.status_code == 403 and "loopback" in r.json["error"]["message"]
