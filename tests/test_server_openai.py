"""The gateway end to end with the official openai SDK: a real uvicorn server, a real SQLite store
filled by `mlxgw apply`, a real upstream HTTP server. Every body and chunk is checked against OpenAI's
published schema."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from mlxgw.server import ServerConfig
from tests import conformance
from tests.conftest import SENTINEL_OPENAI
from tests.gateway_harness import apply_config, openai_config, running_gateway, wait_for_rows
from tests.upstream import Reply, ToolCall, upstream, upstream_server  # noqa: F401

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def gateway(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig(reload_interval=0.2)) as gw:
        yield gw


@pytest.fixture
def client(gateway):
    with openai.OpenAI(base_url=gateway.base_url, api_key="client-key-never-forwarded", max_retries=0) as c:
        yield c


def test_non_streaming_conforms_and_uses_the_provider_key(gateway, client, upstream):  # noqa: F811
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    body = json.loads(raw.http_response.text)
    conformance.validate("CreateChatCompletionResponse", body)
    assert body["choices"][0]["message"]["content"] == "Echo: hello there"
    assert raw.headers["x-request-id"].startswith("req_")
    seen = upstream.last.headers
    assert seen["authorization"] == f"Bearer {SENTINEL_OPENAI}"
    assert "client-key-never-forwarded" not in json.dumps(seen)
    assert upstream.last.body["model"] == "gpt-4o-mini"
    rows = wait_for_rows(gateway, 1)
    row = rows[-1]
    assert row["id"] == raw.headers["x-request-id"]
    assert (row["status"], row["route"], row["provider"], row["backend_model"]) == (200, "prefix:gpt-", "up",
                                                                                   "gpt-4o-mini")
    usage = body["usage"]
    assert (row["input_tokens"], row["output_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row["client_api"] == "openai" and row["backend_api"] == "openai"
    assert row["duration_ms"] > 0 and row["ttfb_ms"] is not None and row["error"] is None


def test_streaming_relays_conforming_chunks_and_done(gateway, client, upstream):  # noqa: F811
    with httpx.stream("POST", gateway.base_url + "/chat/completions", timeout=10,
                      json={"model": "gpt-4o", "messages": MESSAGES, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-request-id"]
        text = r.read().decode()
    chunks = conformance.validate_sse(text)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        "Echo: hello there"
    assert all("usage" not in c for c in chunks)  # the client did not ask for usage
    assert upstream.last.body["stream_options"] == {"include_usage": True}  # the gateway did
    row = wait_for_rows(gateway, 1)[-1]
    assert row["stream"] and row["input_tokens"] > 0 and row["output_tokens"] == 3 and row["error"] is None


def test_streaming_with_include_usage_gets_the_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    conformance.validate_chunks([c.model_dump(exclude_unset=True) for c in chunks])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


def test_sdk_stream_text(client):
    text = "".join(c.choices[0].delta.content or "" for c in
                   client.chat.completions.create(model="up-model", messages=MESSAGES, stream=True) if c.choices)
    assert text == "Echo: hello there"


def test_tool_calls_non_streaming_and_streaming(gateway, client, upstream):  # noqa: F811
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    upstream.script(Reply.tools(ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", {"tz": "CET"})))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, tools=tools)
    body = json.loads(raw.http_response.text)
    conformance.validate("CreateChatCompletionResponse", body)
    r = raw.parse()
    assert r.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_weather", "get_time"]
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert upstream.last.body["tools"] == tools

    upstream.script(Reply.tools(ToolCall("get_weather", {"city": "Paris"})))
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES, tools=tools) as s:
        for event in s:
            if event.type == "chunk":
                conformance.validate("CreateChatCompletionStreamResponse", event.chunk.model_dump(exclude_unset=True))
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


async def test_async_sdk_streamed_and_not(gateway):
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="x", max_retries=0) as c:
        r = await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        conformance.validate("CreateChatCompletionResponse", r.model_dump(exclude_unset=True))
        parts = []
        async for chunk in await c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
            conformance.validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
        assert "".join(parts) == r.choices[0].message.content == "Echo: hello there"


@pytest.mark.parametrize("stream", [False, True])
def test_deviating_backend_is_normalised(gateway, upstream, stream):  # noqa: F811
    upstream.script(Reply(omit_logprobs=True, omit_usage=True, omit_created=True, omit_refusal=True, no_done=True))
    r = httpx.post(gateway.base_url + "/chat/completions", timeout=10,
                   json={"model": "gpt-4o", "messages": MESSAGES, "stream": stream})
    assert r.status_code == 200
    if stream:
        conformance.validate_sse(r.text)
    else:
        conformance.validate("CreateChatCompletionResponse", r.json())


def test_models_health_and_root(gateway, client):
    r = httpx.get(gateway.base_url + "/models")
    conformance.validate("ListModelsResponse", r.json())
    assert [m.id for m in client.models.list()] == ["up-model"]
    h = httpx.get(gateway.origin + "/health")
    assert h.status_code == 200 and h.json() == {"status": "ok", "revision": 1} and h.headers["x-request-id"]
    assert httpx.get(gateway.origin + "/").status_code == 200
    assert httpx.head(gateway.origin + "/").status_code == 200


@pytest.mark.parametrize("include_usage", [False, True])
def test_backend_that_ignores_stream_true_still_streams(gateway, upstream, include_usage):  # noqa: F811
    completion = {"id": "x1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "whole answer"}}],
                  "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}
    upstream.script(Reply(raw_body=json.dumps(completion), content_type="application/json"))
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    r = httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=10)
    chunks = conformance.validate_sse(r.text)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "whole answer"
    assert (chunks[-1].get("usage") or {}).get("total_tokens") == (6 if include_usage else None)
    row = wait_for_rows(gateway, 1)[-1]
    assert (row["input_tokens"], row["output_tokens"], row["error"]) == (4, 2, None)
