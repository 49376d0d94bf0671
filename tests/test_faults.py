"""Fault injection over real sockets (issue 6): for each upstream fault, what the client sees in both
dialects, streamed and not, the audit row, and that the gateway keeps serving afterwards.

The upstream is tests/upstream.py (a real HTTP server) scripted per model: the route `m` goes to
primary/p then backup/b, so a fault scripted for `p` is served by `b`; the route `solo` has no fallback,
so the client sees the fault itself. Local engine faults are in test_faults_local.py.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from mlxgw.server import ServerConfig
from tests.fault_harness import DIALECTS, FAULT_TIMEOUT, ask, ask_async, cloud_config
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.anthropic_upstream import AReply, anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.upstream import Reply, upstream, upstream_server  # noqa: F401

MODES = [(d, s) for d in DIALECTS for s in (False, True)]
# An upstream this slow is a hang to the primary's timeouts (FAULT_TIMEOUT in fault_harness.py); healthy
# answers on a loaded machine stay well within them.
SLOW = 3 * FAULT_TIMEOUT


@pytest.fixture
def gw(home, cli, tmp_path, upstream):  # noqa: F811
    # `busy`: the same faults as primary's, with timeouts a loaded machine meets under 200 streams at once
    busy = {"name": "busy", "kind": "openai-compatible", "base_url": upstream.base_url,
            "timeouts": {"connect": "3s", "first_token": "5s", "idle": "5s"}}
    apply_config(cli, tmp_path, cloud_config(upstream.base_url, providers=[busy], routes=[
        {"name": "busy", "match": {"exact": "busy"}, "target": "busy/p2", "fallback": ["backup/b"]}]))
    with running_gateway(ServerConfig(reload_interval=0.2)) as g:
        yield g


def rows_by_id(gw, n: int) -> dict:
    rows = wait_for_rows(gw, n)
    assert len(rows) == n, f"{len(rows)} audit rows for {n} requests"
    return {r["id"]: r for r in rows}


def still_serving(gw) -> None:
    for dialect in DIALECTS:
        seen = ask(gw, dialect, "m")
        assert seen.status == 200 and "Echo: hello there" in seen.text()


BEFORE_FIRST_BYTE = {
    "500": (Reply.error(500), "http_500"),
    "502": (Reply.error(502), "http_502"),
    "503": (Reply.error(503), "http_503"),
    "429 with retry-after": (Reply.error(429, retry_after=1), "http_429"),
    "529": (Reply.error(529, "Overloaded", type="overloaded_error"), "http_529"),
    "accepts, never answers": (Reply(delay_headers=SLOW), "timeout_first_token"),
    "headers, then stalls": (Reply(delay_first=SLOW), "timeout_first_token"),
    "drops the connection": (Reply(drop_connection=True), "unreachable"),
    "cut right after the headers": (Reply(break_after=0), None),
    "malformed JSON or SSE": (Reply(raw_body="data: {not json at all\n\n", content_type="text/event-stream"),
                              "bad_response"),
}


@pytest.mark.parametrize("fault", list(BEFORE_FIRST_BYTE))
def test_a_fault_before_the_first_byte_fails_over(gw, upstream, fault):  # noqa: F811
    reply, outcome = BEFORE_FIRST_BYTE[fault]
    ids = []
    for dialect, stream in MODES:
        upstream.script(reply, model="p")
        seen = ask(gw, dialect, "m", stream)
        assert seen.status == 200, (dialect, stream, seen.body)
        assert "Echo: hello there" in seen.text()
        if stream:
            assert seen.complete and seen.stream_error is None
        ids.append(seen.request_id)
    rows = rows_by_id(gw, len(ids))
    for rid in ids:
        row = rows[rid]
        assert row["status"] == 200 and row["error"] is None
        assert row["provider"] == "backup" and row["backend_model"] == "b" and row["failovers"] == 1
        first, second = row["attempts_detail"]
        assert first["target"] == "primary/p" and second == {**second, "target": "backup/b", "outcome": "ok"}
        if outcome:
            assert first["outcome"] == outcome, first
        else:
            assert first["outcome"] in ("unreachable", "bad_response"), first
        assert first["error"] and first["ms"] >= 0
    still_serving(gw)


SOLO = {
    # fault: (reply, OpenAI status, Anthropic status, Anthropic error type)
    "500": (Reply.error(500), 500, 500, "api_error"),
    "502": (Reply.error(502), 502, 502, "api_error"),
    "503": (Reply.error(503), 503, 529, "overloaded_error"),
    "529": (Reply.error(529, "Overloaded"), 529, 529, "overloaded_error"),
    "429 with retry-after": (Reply.error(429, retry_after=7), 429, 429, "rate_limit_error"),
    "accepts, never answers": (Reply(delay_headers=SLOW), 504, 504, "timeout_error"),
    "headers, then stalls": (Reply(delay_first=SLOW), 504, 504, "timeout_error"),
    "malformed JSON": (Reply.non_json(200, "{not json", content_type="application/json"), 502, 502, "api_error"),
}


@pytest.mark.parametrize("fault", list(SOLO))
def test_a_fault_with_no_fallback_is_a_real_status_in_the_clients_dialect(gw, upstream, fault):  # noqa: F811
    reply, openai_status, anthropic_status, anthropic_type = SOLO[fault]
    ids = []
    for dialect, stream in MODES:
        upstream.script(reply, model="p")
        seen = ask(gw, dialect, "solo", stream)
        assert seen.status == (openai_status if dialect == "openai" else anthropic_status), (dialect, stream)
        if dialect == "anthropic":
            assert seen.body["error"]["type"] == anthropic_type
        if fault.startswith("429"):
            assert seen.headers["retry-after"] == "7"
        ids.append(seen.request_id)
    rows = rows_by_id(gw, len(ids))
    for rid in ids:
        row = rows[rid]
        assert row["status"] >= 500 or row["status"] == 429
        assert row["error"] and len(row["attempts_detail"]) == 1 and row["failovers"] == 0
        if openai_status == 504:  # the primary's first-token timeout ended it, not the upstream's delay
            assert row["attempts_detail"][0]["outcome"] == "timeout_first_token"
            assert f"first_token timeout of {FAULT_TIMEOUT:g}s" in row["error"]
    still_serving(gw)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_connection_refused_fails_over_or_is_502(gw, dialect):
    for stream in (False, True):
        seen = ask(gw, dialect, "refused", stream)
        assert seen.status == 200 and "Echo: hello there" in seen.text()
        seen = ask(gw, dialect, "refused-only", stream)
        assert seen.status == 502 and "cannot connect to provider 'dead'" in seen.error_message()
    rows = wait_for_rows(gw, 4)
    assert [r["failovers"] for r in rows] == [1, 0, 1, 0]
    assert rows[0]["attempts_detail"][0]["outcome"] == "unreachable"
    still_serving(gw)


@pytest.mark.parametrize("fault", ["dies", "error event", "stalls"])
def test_a_fault_after_the_first_byte_ends_the_stream_with_an_error_event(gw, upstream, fault):  # noqa: F811
    reply = {"dies": Reply(text="one two three four five six", break_after=3, delay_between=0.05),
             "error event": Reply(text="one two three four five six", error_after=3, delay_between=0.05),
             "stalls": Reply(text="one two three four five six", delay_between=SLOW)}[fault]
    ids = []
    for dialect in DIALECTS:
        upstream.script(reply, model="p")
        seen = ask(gw, dialect, "m", True)
        assert seen.status == 200 and not seen.complete and seen.stream_error, (dialect, seen.events)
        assert seen.events  # the client had bytes before the break: no failover past that line
        ids.append(seen.request_id)
    rows = rows_by_id(gw, 2)
    for rid in ids:
        row = rows[rid]
        assert row["status"] == 200 and row["provider"] == "primary" and row["failovers"] == 0
        assert row["error"].startswith("stream broke after ") and " bytes sent to the client: " in row["error"]
        (only,) = row["attempts_detail"]
        assert only["outcome"] == "broke_mid_stream" and only["at_byte"] > 0
    still_serving(gw)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_target_failing_is_one_clear_error_listing_the_attempts(gw, upstream, dialect):  # noqa: F811
    for stream in (False, True):
        upstream.script(Reply.error(500, "primary is on fire"), model="p")
        seen = ask(gw, dialect, "all", stream)
        assert seen.status == 500
        msg = seen.error_message()
        assert msg.startswith("every target of route 'all' failed (2 attempts): ")
        assert "dead/x: cannot connect to provider 'dead'" in msg
        assert "primary/p: provider 'primary' answered HTTP 500: primary is on fire" in msg
    for row in wait_for_rows(gw, 2):
        assert [a["target"] for a in row["attempts_detail"]] == ["dead/x", "primary/p"]
        assert row["failovers"] == 1 and row["attempts"] == 2 and row["status"] == 500
    still_serving(gw)


def test_200_concurrent_streams_while_the_primary_fails_half(gw, upstream):  # noqa: F811
    # Half of the primary's answers fail: 50 before the first byte (failover to the backup), 50 mid-stream
    # (a clear error event). The other half, and every failover, are full answers.
    faults = [Reply.error(500), Reply(text="a b c d e f", break_after=2, delay_between=0.02)] * 50
    ok = [Reply(text="a b c d e f", delay_between=0.01)] * 100
    upstream.script(*[x for pair in zip(faults, ok) for x in pair], model="p2")

    async def main():
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(base_url=gw.origin, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(ask_async(client, DIALECTS[i % 2], "busy", True) for i in range(200)))

    seen = asyncio.run(main())
    full = [s for s in seen if s.status == 200 and s.complete and s.stream_error is None]
    broken = [s for s in seen if s.status == 200 and not s.complete and s.stream_error]
    assert len(full) + len(broken) == 200
    for s in full:
        assert s.text() in ("a b c d e f", "Echo: hello there")
    for s in broken:
        # content came first (the break was past the stream line): a true prefix of the answer
        assert s.text() and "a b c d e f".startswith(s.text()) and s.text() != "a b c d e f"
    rows = rows_by_id(gw, 200)
    assert set(rows) == {s.request_id for s in seen}
    failovers = sum(1 for r in rows.values() if r["failovers"] == 1)
    cut = sum(1 for r in rows.values() if (r["error"] or "").startswith("stream broke"))
    # Every primary fault is either a failover (before the first byte) or a broken stream (after it).
    outcomes = sorted(str([a["outcome"] for a in r["attempts_detail"]]) for r in rows.values())
    assert (cut, len(broken), failovers) == (50, 50, 50), (cut, len(broken), failovers, outcomes)
    odd = [r for r in rows.values() if r["provider"] != ("backup" if r["failovers"] else "busy")]
    assert not odd, odd[:3]
    still_serving(gw)


# --- retries and cooldowns ------------------------------------------------------------------------------


@pytest.fixture
def gw_retry(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, cloud_config(
        upstream.base_url, defaults={"cooldown": "3s"},  # long enough for a CLI run on a loaded machine
        primary={"retry": {"attempts": 2, "backoff": "50ms", "max_backoff": "1s"}}))
    with running_gateway(ServerConfig(reload_interval=0.2)) as g:
        yield g


@pytest.mark.parametrize("dialect", DIALECTS)
def test_retries_the_same_target_with_backoff_then_honours_retry_after(gw_retry, upstream, dialect):  # noqa: F811
    gw = gw_retry
    upstream.script(Reply.error(503), Reply.error(429, retry_after=0.2), Reply(), model="p")
    t0 = time.monotonic()
    seen = ask(gw, dialect, "m")
    assert seen.status == 200 and time.monotonic() - t0 >= 0.2  # the retry-after was waited for
    row = wait_for_rows(gw, 1)[-1]
    assert row["provider"] == "primary" and row["failovers"] == 0 and row["attempts"] == 3
    assert [a["outcome"] for a in row["attempts_detail"]] == ["http_503", "http_429", "ok"]
    # A retry-after beyond max_backoff is not waited for: the backup answers at once.
    upstream.script(Reply.error(429, retry_after=300), model="p")
    seen = ask(gw, dialect, "m", timeout=60)  # waiting 300 s would time this out
    assert seen.status == 200
    row = wait_for_rows(gw, 2)[-1]
    assert row["provider"] == "backup" and [a["outcome"] for a in row["attempts_detail"]] == ["http_429", "ok"]
    # A client error is never retried nor failed over.
    upstream.script(Reply.error(400, "bad field"), model="p")
    seen = ask(gw, dialect, "m")
    assert seen.status == 400 and "bad field" in seen.error_message()
    assert wait_for_rows(gw, 3)[-1]["attempts"] == 1


def test_a_failing_provider_cools_down_then_a_probe_closes_it(gw_retry, upstream, cli):  # noqa: F811
    gw = gw_retry
    upstream.set_default(Reply.error(500), model="p")
    for _ in range(3):  # three requests, each trying the primary 3 times: the breaker opens
        assert ask(gw, "openai", "m").status == 200
    assert gw.app.gateway.breakers.is_open("primary")
    before = len([q for q in upstream.chat_requests() if q.body["model"] == "p"])
    seen = ask(gw, "anthropic", "m")
    assert seen.status == 200
    assert len([q for q in upstream.chat_requests() if q.body["model"] == "p"]) == before  # skipped
    row = wait_for_rows(gw, 4)[-1]
    assert row["attempts_detail"][0]["outcome"] == "skipped_cooldown" and row["provider"] == "backup"
    assert row["attempts"] == 1 and row["failovers"] == 1  # the backup was the only try
    admin = httpx.get(gw.origin + "/admin/cooldowns").json()["data"]
    assert admin[0]["provider"] == "primary" and admin[0]["state"] == "open" and admin[0]["seconds_left"] > 0
    assert "skipped by failover" in httpx.get(gw.origin + "/ui").text
    code, out, err = cli("models", "list", "--url", gw.origin)
    assert code == 0 and "provider primary: cooling down for " in out and "after 3 failures" in out
    # A route whose every target is cooling down still tries one rather than refusing outright.
    assert ask(gw, "openai", "solo").status == 500
    # Once the cooldown is over, one request probes the primary; its success closes the breaker.
    deadline = time.monotonic() + 10
    while httpx.get(gw.origin + "/admin/cooldowns").json()["data"][0]["state"] == "open":
        assert time.monotonic() < deadline, "the cooldown never ended"
        time.sleep(0.1)
    upstream.set_default(Reply(), model="p")
    assert ask(gw, "openai", "m").status == 200
    assert wait_for_rows(gw, 6)[-1]["provider"] == "primary"
    assert not gw.app.gateway.breakers.is_open("primary")
    assert httpx.get(gw.origin + "/admin/cooldowns").json()["data"] == []


# --- an Anthropic-native primary (passed through to Anthropic clients, translated for OpenAI's) -------------


@pytest.fixture
def gw_anthropic(home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    apply_config(cli, tmp_path, cloud_config(
        upstream.base_url,
        providers=[{"name": "claude", "kind": "anthropic", "base_url": anthropic_upstream.base_url,
                    "api_key": "${env:ANTHROPIC_API_KEY}", "timeouts": {"first_token": f"{FAULT_TIMEOUT:g}s"}}],
        routes=[{"name": "c", "match": {"exact": "c"}, "target": "claude/claude-x", "fallback": ["backup/b"]},
                {"name": "c-solo", "match": {"exact": "c-solo"}, "target": "claude/claude-x"}]))
    with running_gateway(ServerConfig(reload_interval=0.2)) as g:
        yield g


@pytest.mark.parametrize("fault,outcome", [
    (AReply.error(529, "Overloaded", type="overloaded_error"), "http_529"),
    (AReply.error(500, "Internal", type="api_error"), "http_500"),
    (AReply(error_after=0), "bad_response"),  # an error event before any content
    (AReply(break_after=0), "unreachable"),  # headers, then cut
    (AReply(delay_first=SLOW), "timeout_first_token"),
])
def test_anthropic_native_faults_before_content_fail_over(gw_anthropic, anthropic_upstream, fault, outcome):  # noqa: F811
    gw = gw_anthropic
    ids = []
    for dialect, stream in MODES:
        if not stream and (fault.error_after is not None or fault.break_after is not None):
            continue  # stream-only faults
        anthropic_upstream.script(fault)
        seen = ask(gw, dialect, "c", stream)
        assert seen.status == 200 and "Echo: hello there" in seen.text(), (dialect, stream, seen.body)
        ids.append(seen.request_id)
    rows = {r["id"]: r for r in wait_for_rows(gw, len(ids))}
    for rid in ids:
        assert [a["outcome"] for a in rows[rid]["attempts_detail"]] == [outcome, "ok"]
        assert rows[rid]["provider"] == "backup"
    anthropic_upstream.script(AReply.error(529, "Overloaded", type="overloaded_error"))
    seen = ask(gw, "anthropic", "c-solo")  # no fallback: the upstream's own error body, byte for byte
    assert seen.status == 529 and seen.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    anthropic_upstream.script(AReply.error(529, "Overloaded", type="overloaded_error"))
    seen = ask(gw, "openai", "c-solo")  # an OpenAI client sees Anthropic's 529 as 503
    assert seen.status == 503 and "Overloaded" in seen.error_message()
    assert ask(gw, "anthropic", "c").status == 200
