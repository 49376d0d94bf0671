"""The OpenAI-compatible adapter on its own, over real HTTP: headers it sends, timeouts it enforces,
failures it reports as UpstreamErrors."""

from __future__ import annotations

import pytest

import mlxgw
from mlxgw.backends import create
from mlxgw.kinds import OPENAI_CHAT
from mlxgw.backends.base import (
    Timeouts, UpstreamConnectError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout,
)  # fmt: skip
from mlxgw.backends.http import HttpClient
from mlxgw.backends.openai_compat import OpenAICompatBackend
from tests.gateway_harness import blackhole_port
from tests.upstream import Reply, closed_port, upstream, upstream_server  # noqa: F401

pytestmark = pytest.mark.asyncio(loop_scope="session")

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
FAST = Timeouts(connect=1, first_token=0.3, idle=0.3, total=5)


@pytest.fixture
async def http():
    client = HttpClient()
    await client.start()
    yield client
    await client.close()


def backend(http, base_url, **spec):
    return create("up", "openai-compatible", {"base_url": base_url, **spec}, "sk-provider", http)


async def test_sends_provider_auth_org_project_and_extra_headers(http, upstream):  # noqa: F811
    b = create("oa", "openai", {"base_url": upstream.base_url, "organization": "org-1", "project": "proj-1",
                                "headers": {"X-Extra": "1"}}, "sk-provider", http)
    result = await b.call(OPENAI_CHAT, BODY, FAST)
    assert result.status == 200 and result.body["object"] == "chat.completion"
    h = upstream.last.headers
    assert h["authorization"] == "Bearer sk-provider"
    assert (h["openai-organization"], h["openai-project"], h["x-extra"]) == ("org-1", "proj-1", "1")


async def test_a_cookie_an_upstream_sets_is_not_sent_on_later_requests(http, upstream):  # noqa: F811
    # One client's answer must not leave state that rides on the next request, whoever's it is.
    upstream.script(Reply(text="first", headers={"Set-Cookie": "__cf_bm=sentinel-cookie; Path=/"}))
    # By name: aiohttp's default jar keeps no cookie from an IP address, so 127.0.0.1 would prove nothing.
    b = backend(http, upstream.base_url.replace("127.0.0.1", "localhost"))
    await b.call(OPENAI_CHAT, BODY, FAST)
    await b.call(OPENAI_CHAT, BODY, FAST)
    h = upstream.last.headers
    assert "cookie" not in h
    assert h["user-agent"] == f"mlxgw/{mlxgw.__version__}"


async def test_openai_kind_defaults_to_the_cloud_and_other_kinds_say_why_not(http):
    assert OpenAICompatBackend("oa", "openai", {}, None, http).base_url == "https://api.openai.com/v1"
    with pytest.raises(ValueError, match="no base_url"):
        create("x", "openai-compatible", {}, None, http)
    assert create("a", "anthropic", {}, None, http).base_url == "https://api.anthropic.com"


async def test_stream_yields_raw_chunks(http, upstream):  # noqa: F811
    chunks = [c async for c in backend(http, upstream.base_url).stream(OPENAI_CHAT, {**BODY, "stream": True}, FAST)]
    assert b"".join(chunks).endswith(b"data: [DONE]\n\n")


async def test_status_error_carries_body_and_retry_after(http, upstream):  # noqa: F811
    upstream.script(Reply.error(429, "slow down", retry_after=3))
    with pytest.raises(UpstreamStatusError) as e:
        await backend(http, upstream.base_url).call(OPENAI_CHAT, BODY, FAST)
    assert e.value.status == 429 and b"slow down" in e.value.body and e.value.retry_after == "3"


async def test_refused_connection(http):
    b = backend(http, f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(UpstreamConnectError):
        await b.call(OPENAI_CHAT, BODY, FAST)
    with pytest.raises(UpstreamConnectError):
        await b.stream(OPENAI_CHAT, BODY, FAST).__anext__()


async def test_connect_timeout(http):
    port, keep = blackhole_port()
    b = backend(http, f"http://127.0.0.1:{port}/v1")
    with pytest.raises(UpstreamTimeout) as e:
        await b.call(OPENAI_CHAT, BODY, Timeouts(connect=0.2, first_token=5, idle=5, total=5))
    assert e.value.kind == "connect"
    with pytest.raises(UpstreamTimeout) as e:
        await b.stream(OPENAI_CHAT, BODY, Timeouts(connect=0.2, first_token=5, idle=5, total=5)).__anext__()
    assert e.value.kind == "connect"
    for s in keep:
        s.close()


@pytest.mark.parametrize("reply,kind", [
    (Reply(delay_headers=1), "first_token"),
    (Reply(delay_first=1), "first_token"),
])
async def test_first_token_timeout(http, upstream, reply, kind):  # noqa: F811
    upstream.script(reply, reply)
    b = backend(http, upstream.base_url)
    with pytest.raises(UpstreamTimeout) as e:
        await b.call(OPENAI_CHAT, BODY, FAST)
    assert e.value.kind == kind
    with pytest.raises(UpstreamTimeout) as e:
        await b.stream(OPENAI_CHAT, {**BODY, "stream": True}, FAST).__anext__()
    assert e.value.kind == kind


async def test_idle_and_total_timeouts_mid_stream(http, upstream):  # noqa: F811
    b = backend(http, upstream.base_url)
    upstream.script(Reply(delay_between=1))
    with pytest.raises(UpstreamTimeout) as e:
        async for _ in b.stream(OPENAI_CHAT, {**BODY, "stream": True}, FAST):
            pass
    assert e.value.kind == "idle"
    upstream.script(Reply(text="a b c d e f", delay_between=0.2))
    with pytest.raises(UpstreamTimeout) as e:
        async for _ in b.stream(OPENAI_CHAT, {**BODY, "stream": True}, Timeouts(1, 1, 1, total=0.5)):
            pass
    assert e.value.kind == "total"


async def test_non_json_success_is_a_protocol_error(http, upstream):  # noqa: F811
    upstream.script(Reply.non_json(200, "not json", content_type="text/plain"))
    with pytest.raises(UpstreamProtocolError):
        await backend(http, upstream.base_url).call(OPENAI_CHAT, BODY, FAST)
