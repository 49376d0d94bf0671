"""GET /metrics (issue 14): traffic of both dialects, streamed and not, with failovers and errors, through
the real gateway; the Prometheus text is parsed with prometheus_client's own parser and every count is
compared with the traffic sent and with the audit rows the same requests wrote."""

from __future__ import annotations

import os
import signal
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mlxgw.server import ServerConfig
from tests.engine_harness import local_config
from tests.fault_harness import ask, cloud_config
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.anthropic_upstream import AReply, anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.supervisor_helpers import wait_until, write_fake_command
from tests.upstream import Reply, upstream, upstream_server  # noqa: F401


def scrape(gw, **headers) -> dict[str, list]:
    """name -> [(labels, value)] of every sample, from the gateway's /metrics."""
    r = httpx.get(gw.origin + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples, **match) -> float:
    return sum(v for labels, v in samples if all(labels.get(k) == w for k, w in match.items()))


def test_metrics_count_the_traffic_sent(home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    apply_config(cli, tmp_path, cloud_config(
        upstream.base_url,
        providers=[{"name": "claude", "kind": "anthropic", "base_url": anthropic_upstream.base_url,
                    "api_key": "${env:ANTHROPIC_API_KEY}"}],
        routes=[{"name": "c", "match": {"exact": "c"}, "target": "claude/claude-x"}]))
    sent = []  # (route, provider, client_api, backend_api, status, stream)
    with running_gateway(ServerConfig()) as gw:
        for stream in (False, True, False):
            assert ask(gw, "openai", "m", stream).status == 200
            sent.append(("main", "primary", "openai", "openai", "200", stream))
        for stream in (True, False):
            assert ask(gw, "anthropic", "m", stream).status == 200
            sent.append(("main", "primary", "anthropic", "openai", "200", stream))
        for _ in range(2):  # the primary fails with a 503 before its first byte: the backup answers
            upstream.script(Reply.error(503), model="p")
            assert ask(gw, "openai", "m").status == 200
            sent.append(("main", "backup", "openai", "openai", "200", False))
        for stream in (False, True):  # nobody listens on dead/x: the backup answers
            assert ask(gw, "anthropic", "refused", stream).status == 200
            sent.append(("refused", "backup", "anthropic", "openai", "200", stream))
        upstream.script(Reply.error(400), model="p")
        assert ask(gw, "openai", "solo").status == 400
        sent.append(("solo", "primary", "openai", "openai", "400", False))
        for dialect, stream in (("anthropic", False), ("anthropic", True), ("openai", False)):
            assert ask(gw, dialect, "c", stream).status == 200
            sent.append(("c", "claude", dialect, "anthropic", "200", stream))
        rows = wait_for_rows(gw, len(sent))
        assert len(rows) == len(sent)
        assert wait_until(lambda: gw.app.gateway.audit.written == len(sent))
        m = scrape(gw)

    want = Counter(sent)
    got = Counter()
    for labels, v in m["mlxgw_requests_total"]:
        key = (labels["route"], labels["provider"], labels["client_api"], labels["backend_api"], labels["status"],
               labels["stream"] == "true")
        got[key] += int(v)
    assert got == want

    n = len(sent)
    assert total(m["gen_ai_server_request_duration_seconds_count"]) == n
    assert total(m["gen_ai_server_request_duration_seconds_count"], error_type="400") == 1
    assert total(m["gen_ai_server_request_duration_seconds_bucket"], le="+Inf") == n
    duration_sum = sum(r["duration_ms"] for r in rows) / 1000
    assert abs(total(m["gen_ai_server_request_duration_seconds_sum"]) - duration_sum) < 1e-6
    answered = [r for r in rows if r["ttfb_ms"] is not None]
    assert len(answered) >= n - 1 and total(m["gen_ai_server_time_to_first_token_seconds_count"]) == len(answered)

    tokens = m["gen_ai_client_token_usage_sum"]
    for provider in ("primary", "backup", "claude"):
        ok = [r for r in rows if r["provider"] == provider and r["status"] < 400]
        assert ok
        for kind, col in (("input", "input_tokens"), ("output", "output_tokens")):
            expected = sum(r[col] or 0 for r in ok)
            assert expected > 0
            assert total(tokens, gen_ai_provider_name=provider, gen_ai_token_type=kind) == expected, (provider, kind)
    assert total(tokens, gen_ai_response_model="claude-x", gen_ai_token_type="output") == sum(
        r["output_tokens"] for r in rows if r["provider"] == "claude")

    failovers = {(lb["target"], lb["reason"]): v for lb, v in m["mlxgw_failovers_total"]}
    assert failovers == {("primary/p", "http_5xx"): 2, ("dead/x", "unreachable"): 2}
    assert sum(failovers.values()) == sum(r["failovers"] for r in rows)

    assert m["mlxgw_audit_rows_written_total"][0][1] == n
    assert m["mlxgw_audit_rows_dropped_total"][0][1] == 0
    assert m["mlxgw_audit_queue_depth"][0][1] == 0
    assert m["mlxgw_requests_in_flight"][0][1] == 1  # the scrape itself
    breakers = {(lb["provider"], lb["state"]): v for lb, v in m["mlxgw_circuit_breaker_state"]}
    assert breakers[("primary", "closed")] == 1 and breakers[("dead", "open")] == 0  # cooldowns are off here


def test_breaker_state_and_in_flight_streams(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, cloud_config(upstream.base_url, defaults={"cooldown": "30s"}))
    with running_gateway(ServerConfig()) as gw:
        for _ in range(3):  # three failures in a row open dead's breaker
            assert ask(gw, "openai", "refused").status == 200
        upstream.script(Reply(delay_between=0.3, chunk_tokens=1, text="one two three four"), model="p")
        with httpx.stream("POST", gw.origin + "/v1/chat/completions", timeout=20,
                          json={"model": "solo", "messages": [{"role": "user", "content": "x"}], "stream": True}) as s:
            chunks = s.iter_raw()
            next(chunks)  # the stream has started and is still running
            m = scrape(gw)
            assert m["mlxgw_requests_in_flight"][0][1] == 2  # the stream and the scrape
            assert b"[DONE]" in b"".join(chunks)
    breakers = {(lb["provider"], lb["state"]): v for lb, v in m["mlxgw_circuit_breaker_state"]}
    assert breakers[("dead", "open")] == 1 and breakers[("dead", "closed")] == 0
    assert breakers[("backup", "closed")] == 1


def test_metrics_need_a_key_where_keys_are_required(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, cloud_config(upstream.base_url))
    code, out, _ = cli("tokens", "create", "scraper")
    assert code == 0
    token = next(w for w in out.split() if w.startswith("mlxgw-"))
    with running_gateway(ServerConfig(require_keys=True)) as gw:
        r = httpx.get(gw.origin + "/metrics")
        assert r.status_code == 401
        assert httpx.get(gw.origin + "/metrics", headers={"authorization": "Bearer mlxgw-wrong"}).status_code == 401
        m = scrape(gw, authorization=f"Bearer {token}")
        assert "mlxgw_requests_in_flight" in m
    with running_gateway(ServerConfig()) as gw:  # loopback, no keys required: open
        assert "mlxgw_audit_queue_depth" in scrape(gw)


def test_local_model_loads_crashes_and_evictions(home, cli, tmp_path):
    fake = write_fake_command(tmp_path / "bin")
    paths = []
    for name in ("a", "b"):
        d = tmp_path / f"model-{name}"
        d.mkdir()
        (d / "config.json").write_text("{}")
        paths.append(str(d))
    apply_config(cli, tmp_path, local_config("vllm-mlx", fake, [{"name": "a", "path": paths[0]},
                                                                {"name": "b", "path": paths[1]}], max_loaded=1))
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with running_gateway() as gw, httpx.Client(base_url=gw.base_url, timeout=60) as c:
        assert c.post("/chat/completions", json={**body, "model": "a"}).status_code == 200
        assert c.post("/chat/completions", json={**body, "model": "b"}).status_code == 200  # evicts a
        sup = gw.app.gateway.supervisor
        m = scrape(gw)
        state = {(lb["model"], lb["state"]): v for lb, v in m["mlxgw_local_model_state"]}
        assert state[("b", "ready")] == 1 and state[("a", "ready")] == 0
        assert wait_until(lambda: sup.find("a").state == "stopped")
        os.kill(sup.find("b").proc.pid, signal.SIGKILL)  # b crashes; the reaper notices
        assert wait_until(lambda: sup.find("b").state == "stopped", 10)
        m = scrape(gw)
    loads = {lb["model"]: v for lb, v in m["mlxgw_local_model_loads_total"]}
    assert loads == {"a": 1, "b": 1}
    assert {lb["model"]: v for lb, v in m["mlxgw_local_model_load_seconds_count"]} == {"a": 1, "b": 1}
    assert all(v > 0 for _, v in m["mlxgw_local_model_load_seconds_sum"])
    assert {lb["model"]: v for lb, v in m["mlxgw_local_model_evictions_total"]} == {"a": 1}
    assert {lb["model"]: v for lb, v in m["mlxgw_local_model_crashes_total"]} == {"b": 1}
    state = {(lb["model"], lb["state"]): v for lb, v in m["mlxgw_local_model_state"]}
    assert state[("b", "stopped")] == 1
