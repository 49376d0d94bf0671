"""The Anthropic cloud adapter over real HTTP against tests/anthropic_upstream.py, and that upstream itself
checked with the official `anthropic` SDK (its Message and stream event types)."""

from __future__ import annotations

import json

import anthropic
import pytest

from mlxgw.backends import create
from mlxgw.kinds import ANTHROPIC_MESSAGES
from mlxgw.backends.anthropic import AnthropicBackend, api_root
from mlxgw.backends.base import Timeouts, UpstreamConnectError, UpstreamStatusError
from mlxgw.backends.http import HttpClient
from mlxgw.dialects.openai import SSEParser
from tests.anthropic_upstream import AReply, ToolUse, anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.upstream import closed_port

aio = pytest.mark.asyncio(loop_scope="session")

KEY = "sk-ant-provider-key"
BODY = {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi there"}]}
FAST = Timeouts(connect=1, first_token=2, idle=2, total=5)


@pytest.fixture
async def http():
    client = HttpClient()
    await client.start()
    yield client
    await client.close()


def backend(http, base_url, **spec) -> AnthropicBackend:
    return create("claude", "anthropic", {"base_url": base_url, **spec}, KEY, http)


# --- the upstream, seen by the official SDK ----------------------------------------------------------


def test_upstream_speaks_messages_as_the_sdk_expects(anthropic_upstream):  # noqa: F811
    up = anthropic_upstream
    client = anthropic.Anthropic(base_url=up.base_url, api_key="k", max_retries=0)
    msg = client.messages.create(**BODY)
    assert isinstance(msg, anthropic.types.Message) and msg.content[0].text == "Echo: hi there"
    assert msg._request_id and msg._request_id.startswith("req_up")
    up.script(AReply(thinking="plan", text="calling", tool_uses=[ToolUse("f", {"a": 1}), ToolUse("g", {"b": [1, 2]})]))
    with client.messages.stream(**BODY) as s:
        kinds = [e.type for e in s]
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[2].input == {"a": 1} and final.content[3].input == {"b": [1, 2]}
    assert final.stop_reason == "tool_use" and "message_start" in kinds and "message_stop" in kinds
    assert client.messages.count_tokens(model="claude-test", messages=BODY["messages"]).input_tokens > 0
    seen = up.last.headers
    assert "k" in (seen.get("x-api-key"), seen.get("authorization", "")[7:]) and seen["anthropic-version"]


def test_upstream_errors_as_the_sdk_expects(anthropic_upstream):  # noqa: F811
    client = anthropic.Anthropic(base_url=anthropic_upstream.base_url, api_key="k", max_retries=0)
    anthropic_upstream.script(AReply.error(529, retry_after=2))
    with pytest.raises(anthropic.InternalServerError) as exc:
        client.messages.create(**BODY)
    assert exc.value.status_code == 529 and exc.value.body["error"]["type"] == "overloaded_error"
    assert exc.value.response.headers["retry-after"] == "2" and exc.value.request_id.startswith("req_up")
    anthropic_upstream.script(AReply(error_after=4))
    with pytest.raises(anthropic.APIStatusError) as exc:
        with client.messages.stream(**BODY) as s:
            for _ in s:
                pass
    assert "Overloaded" in str(exc.value)
    anthropic_upstream.api_key = "right"
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(**BODY)


# --- the adapter -------------------------------------------------------------------------------------


@aio
async def test_headers_auth_version_and_beta(http, anthropic_upstream):  # noqa: F811
    b = backend(http, anthropic_upstream.base_url, headers={"X-Extra": "1"})
    assert b.wires == {ANTHROPIC_MESSAGES}
    beta = "claude-code-20250219, interleaved-thinking-2025-05-14,advisor-tool-2026-03-01"
    result = await b.call(ANTHROPIC_MESSAGES, BODY, FAST, {"anthropic-beta": beta, "x-api-key": "client-key", "authorization": "x"})
    assert result.status == 200 and result.body["content"][0]["text"] == "Echo: hi there"
    assert result.headers["request-id"].startswith("req_up")
    h = anthropic_upstream.last.headers
    assert (h["x-api-key"], h["anthropic-version"], h["anthropic-beta"], h["x-extra"]) == (KEY, "2023-06-01", beta, "1")
    assert "authorization" not in h and anthropic_upstream.last.path == "/v1/messages"
    await b.call(ANTHROPIC_MESSAGES, BODY, FAST)
    assert "anthropic-beta" not in anthropic_upstream.last.headers


@aio
async def test_stream_yields_named_events(http, anthropic_upstream):  # noqa: F811
    b = backend(http, anthropic_upstream.base_url + "/v1")  # a base_url with /v1 works too
    parser, raw = SSEParser(), b""
    async for chunk in b.stream(ANTHROPIC_MESSAGES, {**BODY, "stream": True}, FAST, {"anthropic-version": "2023-06-01"}):
        raw += chunk
    kinds = [json.loads(d)["type"] for d in parser.feed(raw)]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert b"event: message_delta\n" in raw
    assert anthropic_upstream.last.headers["accept"] == "text/event-stream"


@aio
async def test_errors_carry_status_body_retry_after_and_request_id(http, anthropic_upstream):  # noqa: F811
    b = backend(http, anthropic_upstream.base_url)
    anthropic_upstream.script(AReply.error(529, retry_after=3), AReply.error(429, retry_after=7))
    with pytest.raises(UpstreamStatusError) as exc:
        await b.call(ANTHROPIC_MESSAGES, BODY, FAST)
    e = exc.value
    assert (e.status, e.retry_after) == (529, "3") and e.request_id.startswith("req_up")
    assert json.loads(e.body)["error"]["type"] == "overloaded_error"
    stream = b.stream(ANTHROPIC_MESSAGES, {**BODY, "stream": True}, FAST)
    with pytest.raises(UpstreamStatusError) as exc:
        await stream.__anext__()
    assert (exc.value.status, exc.value.retry_after) == (429, "7")
    assert KEY not in str(exc.value) and KEY not in repr(exc.value.body)


@aio
async def test_count_tokens_and_connect_failure(http, anthropic_upstream):  # noqa: F811
    b = backend(http, anthropic_upstream.base_url)
    r = await b.count_tokens({"model": "m", "messages": BODY["messages"]}, FAST, None)
    assert r.body["input_tokens"] > 0 and anthropic_upstream.last.path == "/v1/messages/count_tokens"
    dead = backend(http, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(UpstreamConnectError):
        await dead.call(ANTHROPIC_MESSAGES, BODY, FAST)


def test_default_base_url():
    assert api_root(None) == "https://api.anthropic.com" and api_root("https://x.test/v1/") == "https://x.test"
