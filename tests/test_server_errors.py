"""Every failure answers in OpenAI's error shape with a fitting status (RELI-01), timeouts per backend
(RELI-02), and failover to the next target before the first byte."""

from __future__ import annotations

import textwrap
import time

import httpx
import openai
import pytest

from mlxgw.server import ServerConfig
from tests import conformance
from tests.gateway_harness import apply_config, blackhole_port, running_gateway, wait_for_rows
from tests.upstream import Reply, closed_port, upstream, upstream_server  # noqa: F401

MESSAGES = [{"role": "user", "content": "hello there"}]
_blackholes: list = []  # sockets kept open so the black-hole ports stay black holes


def config(up_url: str) -> str:
    refused = f"http://127.0.0.1:{closed_port()}/v1"
    hole_port, keep = blackhole_port()
    _blackholes.extend(keep)
    return textwrap.dedent(f"""\
        version: 1
        providers:
          - name: up
            kind: openai-compatible
            base_url: '{up_url}'
            api_key: ${{env:OPENAI_API_KEY}}
          - name: dead
            kind: openai-compatible
            base_url: '{refused}'
          - name: hole
            kind: openai-compatible
            base_url: 'http://127.0.0.1:{hole_port}/v1'
            timeouts: {{connect: 200ms}}
        routes:
          - match: {{prefix: "gpt-"}}
            target: up
          - match: {{exact: slow}}
            target: up
            timeouts: {{first_token: 1500ms, idle: 1500ms}}
          - match: {{exact: refused}}
            target: dead
          - match: {{exact: failover}}
            target: dead
            fallback: [up/up-model]
          - match: {{exact: hole}}
            target: hole
          - match: {{exact: hole-failover}}
            target: hole
            fallback: [up/up-model]
          - name: five
            match: {{exact: five}}
            target: up/first
            fallback: [up/second]
    """)


@pytest.fixture
def gw(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, config(upstream.base_url))
    with running_gateway(ServerConfig(reload_interval=0.2, max_body_bytes=4096)) as g:
        yield g


def post(gw, body=None, *, content=None, headers=None) -> httpx.Response:
    r = httpx.post(gw.base_url + "/chat/completions", json=body, content=content, headers=headers, timeout=10)
    conformance.validate("ErrorResponse", r.json()) if r.status_code >= 400 else None
    assert r.headers["x-request-id"].startswith("req_")
    assert "Traceback" not in r.text
    return r


def err(r: httpx.Response) -> dict:
    return r.json()["error"]


def test_unknown_model_is_404_naming_it(gw):
    r = post(gw, {"model": "no-such-model", "messages": MESSAGES})
    assert r.status_code == 404 and "no-such-model" in err(r)["message"]
    assert err(r)["code"] == "model_not_found" and err(r)["param"] == "model"
    with openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as c:
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="no-such-model", messages=MESSAGES)
    for row in wait_for_rows(gw, 2):  # the request by hand, then the SDK's
        assert row["status"] == 404 and row["requested_model"] == "no-such-model" and "no-such-model" in row["error"]


def test_bad_json_is_400(gw):
    r = post(gw, content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and err(r)["type"] == "invalid_request_error"


@pytest.mark.parametrize("body,param", [
    ({"messages": MESSAGES}, "model"),
    ({"model": 5, "messages": MESSAGES}, "model"),
    ({"model": "gpt-4o"}, "messages"),
    ({"model": "gpt-4o", "messages": []}, "messages"),
    ({"model": "gpt-4o", "messages": [{"content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o", "messages": MESSAGES, "stream": "yes"}, "stream"),
])
def test_invalid_fields_are_400_naming_the_param(gw, body, param):
    r = post(gw, body)
    assert r.status_code == 400 and err(r)["param"] == param


def test_body_over_the_limit_is_413(gw):
    r = post(gw, {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 5000}]})
    assert r.status_code == 413 and "4096" in err(r)["message"]

    def chunked():
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    r = post(gw, content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_upstream_errors_keep_status_and_message(gw, upstream, status):  # noqa: F811
    upstream.script(Reply.error(status, f"upstream says no ({status})", retry_after=2 if status == 429 else None))
    r = post(gw, {"model": "gpt-4o", "messages": MESSAGES})
    assert r.status_code == status and f"upstream says no ({status})" in err(r)["message"]
    if status == 429:
        assert r.headers["retry-after"] == "2"
    row = wait_for_rows(gw, 1)[-1]
    assert row["status"] == status and "upstream says no" in row["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_non_json_error_page_is_passed_on(gw, upstream, stream):  # noqa: F811
    upstream.script(Reply.non_json(502, "<html>bad gateway upstairs</html>"))
    r = post(gw, {"model": "gpt-4o", "messages": MESSAGES, "stream": stream})
    assert r.status_code == 502 and "bad gateway upstairs" in err(r)["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_timeout_before_first_byte_is_504(gw, upstream, stream):  # noqa: F811
    upstream.script(Reply(delay_first=4.5))  # three times the route's 1.5 s timeouts
    r = post(gw, {"model": "slow", "messages": MESSAGES, "stream": stream})
    assert r.status_code == 504 and "first_token" in err(r)["message"]
    upstream.script(Reply(delay_headers=4.5))
    r = post(gw, {"model": "slow", "messages": MESSAGES, "stream": stream})
    assert r.status_code == 504


@pytest.mark.parametrize("stream", [False, True])
def test_connection_refused_is_502(gw, stream):
    r = post(gw, {"model": "refused", "messages": MESSAGES, "stream": stream})
    assert r.status_code == 502 and "dead" in err(r)["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_fails_over_on_refused_connection(gw, upstream, stream):  # noqa: F811
    r = httpx.post(gw.base_url + "/chat/completions", json={"model": "failover", "messages": MESSAGES,
                                                             "stream": stream}, timeout=10)
    assert r.status_code == 200
    assert upstream.last.body["model"] == "up-model"
    row = wait_for_rows(gw, 1)[-1]
    assert row["attempts"] == 2 and row["provider"] == "up" and row["backend_model"] == "up-model"


def test_fails_over_on_5xx_but_not_on_4xx(gw, upstream):  # noqa: F811
    upstream.script(Reply.error(503), model="first")
    r = httpx.post(gw.base_url + "/chat/completions", json={"model": "five", "messages": MESSAGES}, timeout=10)
    assert r.status_code == 200 and r.json()["model"] == "second"
    upstream.script(Reply.error(400, "bad request for first"), model="first")
    r = post(gw, {"model": "five", "messages": MESSAGES})
    assert r.status_code == 400 and "bad request for first" in err(r)["message"]
    assert [q.body["model"] for q in upstream.chat_requests()] == ["first", "second", "first"]


def sse_tail(r: httpx.Response) -> tuple[list, bool]:
    return conformance.parse_sse(r.text)


@pytest.mark.parametrize("reply,expect", [
    (Reply(break_after=2), "dropped the connection"),
    (Reply(delay_between=4.5), "idle timeout"),
    (Reply(error_after=2, delay_between=0.05, error_object={"message": "overloaded mid-way", "type": "server_error",
                                                             "param": None, "code": None}), "overloaded mid-way"),
])
def test_failure_after_first_byte_ends_with_an_error_event_and_no_done(gw, upstream, reply, expect):  # noqa: F811
    upstream.script(reply)
    r = httpx.post(gw.base_url + "/chat/completions", timeout=10,
                   json={"model": "slow", "messages": MESSAGES, "stream": True})
    assert r.status_code == 200
    payloads, done = sse_tail(r)
    assert not done
    *chunks, last = payloads
    conformance.validate_chunks(chunks)
    conformance.validate("ErrorResponse", last)
    assert expect in last["error"]["message"]
    row = wait_for_rows(gw, 1)[-1]
    assert row["status"] == 200 and row["stream"] and expect.split()[0] in row["error"]
    with openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as c:
        upstream.script(reply)
        with pytest.raises(openai.APIError):
            for _ in c.chat.completions.create(model="slow", messages=MESSAGES, stream=True):
                pass


def test_unknown_path_and_method_answer_in_openai_shape(gw):
    r = httpx.get(gw.base_url + "/nope")
    assert r.status_code == 404 and r.headers["x-request-id"]
    conformance.validate("ErrorResponse", r.json())
    r = httpx.get(gw.base_url + "/chat/completions")
    assert r.status_code == 405
    conformance.validate("ErrorResponse", r.json())


def test_client_disconnect_stops_the_upstream_stream(gw, upstream):  # noqa: F811
    upstream.script(Reply(text=" ".join(["word"] * 40), delay_between=0.5))  # 20 s: cut long before the end
    with httpx.stream("POST", gw.base_url + "/chat/completions", timeout=10,
                      json={"model": "gpt-4o", "messages": MESSAGES, "stream": True}) as r:
        next(r.iter_raw())
    row = wait_for_rows(gw, 1)[-1]
    assert row["status"] == 499 and row["error"] == "client disconnected"
    deadline = time.monotonic() + 15
    while upstream.last.outcome != "client_disconnected":
        assert time.monotonic() < deadline, upstream.last.outcome
        time.sleep(0.02)


@pytest.mark.parametrize("stream", [False, True])
def test_connect_timeout_is_504_and_fails_over(gw, upstream, stream):  # noqa: F811
    r = post(gw, {"model": "hole", "messages": MESSAGES, "stream": stream})
    assert r.status_code == 504 and "connect timeout" in err(r)["message"]
    r = httpx.post(gw.base_url + "/chat/completions", json={"model": "hole-failover", "messages": MESSAGES,
                                                             "stream": stream}, timeout=10)
    assert r.status_code == 200 and upstream.last.body["model"] == "up-model"
