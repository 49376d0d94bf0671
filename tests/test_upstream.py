"""The tests' own OpenAI-compatible upstream (tests/upstream.py) and the conformance helper
(tests/conformance.py) work: the official SDK talks to the upstream (sync and async, streamed and not,
tool calls, error statuses), its answers validate against OpenAI's schema, and its deliberate deviations
are the ones it claims."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

try:
    import conformance
    from upstream import Reply, ToolCall, UpstreamServer, closed_port, running_upstream, upstream, upstream_server  # noqa: F401
except ImportError:  # tests/ is a package
    from tests import conformance  # type: ignore[no-redef]
    from tests.upstream import (  # type: ignore[no-redef]  # noqa: F401
        Reply, ToolCall, UpstreamServer, closed_port, running_upstream, upstream, upstream_server)

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there world"}]


def sdk(up: UpstreamServer, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.base_url, api_key="sk-client", max_retries=0, timeout=kw.pop("timeout", 10), **kw)


def asdk(up: UpstreamServer, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=up.base_url, api_key="sk-client", max_retries=0, timeout=kw.pop("timeout", 10), **kw)


def post(up: UpstreamServer, body: dict, **kw) -> httpx.Response:
    return httpx.post(f"{up.base_url}/chat/completions", json=body, timeout=kw.pop("timeout", 10), **kw)


def sse_payloads(text: str) -> list:
    payloads, _ = conformance.parse_sse(text)
    return payloads


# --------------------------------------------------------------------------------------------- conformance


def test_conformance_kinds_and_messages():
    for kind in ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "ListModelsResponse",
                 "ErrorResponse", "CreateChatCompletionRequest"):
        assert kind in conformance.kinds()
    conformance.validate("CreateChatCompletionRequest", {"model": "m", "messages": MSGS})
    conformance.validate("ErrorResponse", {"error": {"message": "m", "type": "t", "param": None, "code": None}})
    with pytest.raises(AssertionError) as exc:
        conformance.validate("ErrorResponse", {"error": {"message": 3, "type": "t"}})
    text = str(exc.value)
    assert "ErrorResponse" in text and "$.error.message" in text and "'param' is a required property" in text
    with pytest.raises(KeyError, match="unknown conformance kind"):
        conformance.validate("NoSuchThing", {})
    # compiled once
    assert conformance.validator("ErrorResponse") is conformance.validator("ErrorResponse")


def test_conformance_sse_parsing():
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
    text = f": comment\n\ndata: {json.dumps(chunk)}\r\n\r\ndata: [DONE]\n\n"
    assert conformance.validate_sse(text) == [chunk]
    with pytest.raises(AssertionError, match=r"did not end with 'data: \[DONE\]'"):
        conformance.validate_sse(f"data: {json.dumps(chunk)}\n\n")
    bad = dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "nope"}])
    with pytest.raises(AssertionError, match="stream chunk #1"):
        conformance.validate_chunks([chunk, bad])


# --------------------------------------------------------------------------------------------- normal answers


def test_sync_non_stream_conforms_and_is_recorded(upstream):
    client = sdk(upstream)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)
    body = json.loads(raw.text)
    conformance.validate("CreateChatCompletionResponse", body)
    done = raw.parse()
    assert done.choices[0].message.content == "Echo: hello there world"
    assert done.choices[0].finish_reason == "stop"
    assert done.model == "gpt-4o-mini"
    assert done.usage.completion_tokens == 4 and done.usage.prompt_tokens == 7 and done.usage.total_tokens == 11
    rec = upstream.last
    assert (rec.method, rec.path, rec.model, rec.stream) == ("POST", "/v1/chat/completions", "gpt-4o-mini", False)
    assert rec.headers["authorization"] == "Bearer sk-client"
    assert rec.body["messages"] == MSGS
    assert rec.outcome == "ok"
    conformance.validate("CreateChatCompletionRequest", rec.body)


def test_configured_text_usage_and_model(upstream):
    upstream.script(Reply(text="forty two", usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
                          model="gpt-4o-2024-08-06", headers={"x-request-id": "req_up_1"}))
    raw = sdk(upstream).chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)
    assert raw.headers["x-request-id"] == "req_up_1"
    done = raw.parse()
    assert done.choices[0].message.content == "forty two"
    assert done.model == "gpt-4o-2024-08-06"
    assert done.usage.total_tokens == 9
    # the queue is consumed: the next request gets the default echo
    assert sdk(upstream).chat.completions.create(model="gpt-4o", messages=MSGS).choices[0].message.content.startswith("Echo:")


def test_sync_stream_with_include_usage(upstream):
    upstream.script(Reply(text="one two three four five"))
    r = post(upstream, {"model": "up-model", "messages": MSGS, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = conformance.validate_sse(r.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "one two three four five"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(c["usage"] is None for c in chunks[:-1])
    assert upstream.last.body["stream_options"] == {"include_usage": True}

    # through the SDK, too
    upstream.script(Reply(text="one two three"))
    stream = sdk(upstream).chat.completions.create(model="up-model", messages=MSGS, stream=True,
                                                     stream_options={"include_usage": True})
    parts, usage = [], None
    for chunk in stream:
        conformance.validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert "".join(parts) == "one two three" and usage.completion_tokens == 3


def test_stream_without_include_usage_has_no_usage(upstream):
    r = post(upstream, {"model": "up-model", "messages": MSGS, "stream": True})
    chunks = conformance.validate_sse(r.text)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_async_sdk_stream_and_non_stream(upstream):
    client = asdk(upstream)
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)
    conformance.validate("CreateChatCompletionResponse", json.loads(raw.text))
    upstream.script(Reply(text="alpha beta gamma", chunk_tokens=2))
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True,
                                                    stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    for c in chunks:
        conformance.validate("CreateChatCompletionStreamResponse", c.model_dump(exclude_unset=True))
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert contents == ["alpha beta ", "gamma"]
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 3
    await client.close()


def test_models_and_health(upstream):
    upstream.models = ["a-model", "b-model"]
    r = httpx.get(f"{upstream.base_url}/models")
    conformance.validate("ListModelsResponse", r.json())
    assert [m.id for m in sdk(upstream).models.list()] == ["a-model", "b-model"]
    assert httpx.get(f"{upstream.origin}/health").json() == {"status": "ok"}
    r = httpx.get(f"{upstream.origin}/v1/nothing")
    assert r.status_code == 404
    conformance.validate("ErrorResponse", r.json())


# --------------------------------------------------------------------------------------------- tool calls


def test_tool_calls_non_stream(upstream):
    upstream.script(Reply.tools(ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
                                ToolCall("get_time", '{"tz": "CET"}')))
    raw = sdk(upstream).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSGS,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
    conformance.validate("CreateChatCompletionResponse", json.loads(raw.text))
    msg = raw.parse().choices[0]
    assert msg.finish_reason == "tool_calls" and msg.message.content is None
    calls = msg.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert calls[0].id == "call_1" and calls[1].id and calls[1].id != calls[0].id
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert json.loads(calls[1].function.arguments) == {"tz": "CET"}
    assert upstream.last.body["tools"][0]["function"]["name"] == "get_weather"


async def test_tool_calls_stream_arguments_in_fragments(upstream):
    upstream.script(Reply.tools(ToolCall("get_weather", {"city": "Paris", "unit": "C"}),
                                ToolCall("lookup", {"q": "x" * 30}), args_fragment=5))
    client = asdk(upstream)
    stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    calls: dict[int, dict] = {}
    fragments = 0
    finish = None
    async for chunk in stream:
        conformance.validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for tc in choice.delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
                fragments += 1
    await client.close()
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "lookup"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "C"}
    assert json.loads(calls[1]["arguments"]) == {"q": "x" * 30}
    assert fragments > 4 and all(c["id"] for c in calls.values())


def test_tool_calls_raw_stream_conforms(upstream):
    upstream.script(Reply.tools(ToolCall("f", {"a": 1}), text="Let me check."))
    r = post(upstream, {"model": "m", "messages": MSGS, "stream": True, "stream_options": {"include_usage": True}})
    chunks = conformance.validate_sse(r.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Let me check."
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


# --------------------------------------------------------------------------------------------- errors

ERRORS = [
    (400, openai.BadRequestError, "invalid_request_error"),
    (401, openai.AuthenticationError, "invalid_request_error"),
    (404, openai.NotFoundError, "invalid_request_error"),
    (429, openai.RateLimitError, "requests"),
    (500, openai.InternalServerError, "server_error"),
    (503, openai.InternalServerError, "server_error"),
]


@pytest.mark.parametrize("status,exc_type,err_type", ERRORS)
def test_error_statuses(upstream, status, exc_type, err_type):
    upstream.script(Reply.error(status, retry_after=2 if status == 429 else None))
    with pytest.raises(exc_type) as info:
        sdk(upstream).chat.completions.create(model="gpt-4o", messages=MSGS)
    err = info.value
    assert err.status_code == status
    assert err.body["type"] == err_type and err.body["message"]
    if status == 429:
        assert err.response.headers["retry-after"] == "2"
        assert err.body["code"] == "rate_limit_exceeded"
    upstream.script(Reply.error(status, "custom message", code="custom_code", param="messages"))
    r = post(upstream, {"model": "gpt-4o", "messages": MSGS, "stream": True})
    assert r.status_code == status
    conformance.validate("ErrorResponse", r.json())
    assert r.json()["error"] == {"message": "custom message", "type": err_type, "param": "messages", "code": "custom_code"}
    assert upstream.last.outcome == "error"


def test_non_json_error_body(upstream):
    upstream.script(Reply.non_json(502), Reply.non_json(500, "Internal Server Error", content_type="text/plain"))
    with pytest.raises(openai.APIStatusError) as info:
        sdk(upstream).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert info.value.status_code == 502 and "Bad Gateway" in info.value.response.text
    r = post(upstream, {"model": "gpt-4o", "messages": MSGS})
    assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (500, "Internal Server Error", "text/plain")


def test_api_key_checked_when_set(upstream):
    upstream.api_key = "sk-upstream"
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(upstream).chat.completions.create(model="gpt-4o", messages=MSGS)
    conformance.validate("ErrorResponse", info.value.response.json())
    assert info.value.body["code"] == "invalid_api_key"
    client = openai.OpenAI(base_url=upstream.base_url, api_key="sk-upstream", max_retries=0)
    assert client.chat.completions.create(model="gpt-4o", messages=MSGS).choices[0].message.content
    assert [m.id for m in client.models.list()] == upstream.models


def test_bad_requests_get_openai_errors(upstream):
    for body, param in (({"messages": MSGS}, "model"), ({"model": "m", "messages": []}, "messages")):
        r = post(upstream, body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param
        conformance.validate("ErrorResponse", r.json())
    r = httpx.post(f"{upstream.base_url}/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    conformance.validate("ErrorResponse", r.json())


# --------------------------------------------------------------------------------------------- deviations


def test_deviation_missing_fields_fail_the_schema(upstream):
    upstream.script(Reply(omit_logprobs=True), Reply(omit_created=True), Reply(omit_usage=True), Reply(omit_refusal=True))
    no_logprobs = post(upstream, {"model": "m", "messages": MSGS}).json()
    assert "logprobs" not in no_logprobs["choices"][0]
    with pytest.raises(AssertionError, match="'logprobs' is a required property"):
        conformance.validate("CreateChatCompletionResponse", no_logprobs)
    no_created = post(upstream, {"model": "m", "messages": MSGS}).json()
    assert "created" not in no_created
    with pytest.raises(AssertionError, match="'created' is a required property"):
        conformance.validate("CreateChatCompletionResponse", no_created)
    no_usage = post(upstream, {"model": "m", "messages": MSGS}).json()
    assert "usage" not in no_usage
    conformance.validate("CreateChatCompletionResponse", no_usage)  # usage is optional in the schema
    no_refusal = post(upstream, {"model": "m", "messages": MSGS}).json()
    with pytest.raises(AssertionError, match="'refusal' is a required property"):
        conformance.validate("CreateChatCompletionResponse", no_refusal)


def test_deviation_stream_without_usage_or_created(upstream):
    upstream.script(Reply(omit_usage=True, omit_created=True, omit_logprobs=True))
    r = post(upstream, {"model": "m", "messages": MSGS, "stream": True, "stream_options": {"include_usage": True}})
    chunks = sse_payloads(r.text)
    assert all("usage" not in c and "created" not in c and "logprobs" not in c["choices"][0] for c in chunks)
    with pytest.raises(AssertionError, match="'created' is a required property"):
        conformance.validate_chunks(chunks)
    upstream.script(Reply(ignore_include_usage=True))
    r = post(upstream, {"model": "m", "messages": MSGS, "stream": True, "stream_options": {"include_usage": True}})
    assert all(c["choices"] for c in conformance.validate_sse(r.text))


def test_max_tokens_length_and_stop_deviation(upstream):
    body = {"model": "m", "messages": MSGS, "max_tokens": 2}
    upstream.script(Reply(text="a b c d e"), Reply(text="a b c d e", finish_reason="stop"))
    honest = post(upstream, body).json()
    assert honest["choices"][0]["message"]["content"] == "a b " and honest["choices"][0]["finish_reason"] == "length"
    assert honest["usage"]["completion_tokens"] == 2
    lying = post(upstream, body).json()
    assert lying["choices"][0]["message"]["content"] == "a b " and lying["choices"][0]["finish_reason"] == "stop"
    upstream.script(Reply(text="a b c d e"))
    chunks = conformance.validate_sse(post(upstream, dict(body, stream=True, max_completion_tokens=3)).text)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_without_done(upstream):
    upstream.script(Reply(no_done=True))
    r = post(upstream, {"model": "m", "messages": MSGS, "stream": True})
    assert r.status_code == 200 and "[DONE]" not in r.text
    with pytest.raises(AssertionError, match="did not end"):
        conformance.validate_sse(r.text)
    assert conformance.validate_sse(r.text, require_done=False)[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_breaks_mid_way(upstream):
    upstream.script(Reply(text="one two three four", break_after=3))
    with pytest.raises(openai.APIConnectionError):
        for _ in sdk(upstream).chat.completions.create(model="m", messages=MSGS, stream=True):
            pass
    assert upstream.last.outcome == "broken"
    upstream.script(Reply(text="one two three four", break_after=3))
    got = []
    with pytest.raises(httpx.TransportError):
        with httpx.stream("POST", f"{upstream.base_url}/chat/completions",
                          json={"model": "m", "messages": MSGS, "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
    assert len(got) == 3


def test_non_stream_body_cut_and_connection_dropped(upstream):
    upstream.script(Reply(break_after=1), Reply(drop_connection=True))
    with pytest.raises(httpx.TransportError):
        post(upstream, {"model": "m", "messages": MSGS})
    with pytest.raises(httpx.TransportError):
        post(upstream, {"model": "m", "messages": MSGS})
    assert [r.outcome for r in upstream.chat_requests()] == ["broken", "dropped"]


def test_in_stream_error_event(upstream):
    upstream.script(Reply(text="a b c d", error_after=2))
    r = post(upstream, {"model": "m", "messages": MSGS, "stream": True})
    payloads, done = conformance.parse_sse(r.text)
    assert not done and len(payloads) == 3
    conformance.validate("ErrorResponse", payloads[-1])
    upstream.script(Reply(text="a b c d", error_after=2))
    with pytest.raises(openai.APIError):
        for _ in sdk(upstream).chat.completions.create(model="m", messages=MSGS, stream=True):
            pass


# --------------------------------------------------------------------------------------------- delays


def test_delay_before_headers(upstream):
    upstream.script(Reply(delay_headers=0.3), Reply(delay_headers=0.3))
    with pytest.raises(httpx.ReadTimeout):
        post(upstream, {"model": "m", "messages": MSGS}, timeout=httpx.Timeout(5, read=0.1))
    t0 = time.monotonic()
    assert post(upstream, {"model": "m", "messages": MSGS}).status_code == 200
    assert time.monotonic() - t0 >= 0.28


def test_delay_first_chunk_and_between_chunks(upstream):
    # Only lower bounds: a delay makes a chunk arrive no earlier than scheduled; a loaded machine can
    # only make it later. Headers first: the client holds them while the first chunk is still held back.
    upstream.script(Reply(text="a b c d", delay_first=1.0, delay_between=0.1))
    t0 = time.monotonic()
    stamps = []
    with httpx.stream("POST", f"{upstream.base_url}/chat/completions",
                      json={"model": "m", "messages": MSGS, "stream": True}, timeout=10) as r:
        headers_at = time.monotonic() - t0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                stamps.append(time.monotonic() - t0)
    assert stamps[0] >= 1.0 and stamps[0] - headers_at >= 0.5  # the headers came, then the first chunk waited
    assert len(stamps) == 6 and stamps[-1] >= 1.0 + 5 * 0.1  # role, 4 contents, finish: 5 delays between
    # a non-streaming body can be delayed after its headers too
    upstream.script(Reply(delay_first=0.3))
    with pytest.raises(httpx.ReadTimeout):
        post(upstream, {"model": "m", "messages": MSGS}, timeout=httpx.Timeout(5, read=0.1))


# --------------------------------------------------------------------------------------------- scripting


def test_script_by_model_and_defaults(upstream):
    upstream.script(Reply.error(503), model="primary")
    upstream.script(Reply(text="global"))
    upstream.set_default(Reply(text="fallback default"), model="fallback")
    upstream.set_default(Reply(text="server default"))
    client = sdk(upstream)
    assert client.chat.completions.create(model="fallback", messages=MSGS).choices[0].message.content == "global"
    assert client.chat.completions.create(model="fallback", messages=MSGS).choices[0].message.content == "fallback default"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="primary", messages=MSGS)
    assert client.chat.completions.create(model="primary", messages=MSGS).choices[0].message.content == "server default"
    assert upstream.pending() == 0
    assert [r.model for r in upstream.wait_for(4, path="/v1/chat/completions")] == ["fallback", "fallback", "primary", "primary"]


def test_context_manager_and_closed_port():
    with running_upstream(models=["x"]) as up:
        port = up.port
        assert httpx.get(f"{up.base_url}/models").json()["data"][0]["id"] == "x"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    dead = closed_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", dead), timeout=2)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{dead}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MSGS)


def test_vendored_conformance_schema_matches_shared():
    import pytest

    from tests import conformance

    if not conformance.SHARED.is_file():
        pytest.skip("no ../shared/conformance beside this clone")
    assert conformance.VENDORED.read_bytes() == conformance.SHARED.read_bytes(), (
        "tests/data/openai-chat.schema.json is stale: copy ../shared/conformance/openai-chat.schema.json over it")


def test_vendored_responses_schema_matches_shared():
    import pytest

    from tests import conformance

    if not conformance.SHARED_RESPONSES.is_file():
        pytest.skip("no ../shared/conformance beside this clone")
    assert conformance.VENDORED_RESPONSES.read_bytes() == conformance.SHARED_RESPONSES.read_bytes(), (
        "tests/data/openai-responses.schema.json is stale: copy ../shared/conformance/openai-responses.schema.json over it")


# --- /v1/responses (tests/responses_upstream.py) ---------------------------------------------------------


def _responses_stream(up: UpstreamServer, **body) -> list[dict]:
    with httpx.stream("POST", up.base_url + "/responses", timeout=10, json={"stream": True, **body}) as r:
        assert r.status_code == 200
        return conformance.validate_response_sse(r.read().decode())


def test_responses_plain_and_streamed_are_schema_valid(upstream):
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    r = httpx.post(upstream.base_url + "/responses", json={"model": "gpt-4o", "input": "hi there", "tools": [tool]})
    conformance.validate_response(r.json())
    assert r.json()["output"][0]["content"][0]["text"] == "Echo: hi there"
    upstream.script(Reply(text="calling", tool_calls=[ToolCall("f", {"a": 1}, id="call_1")]))
    events = _responses_stream(upstream, model="gpt-4o", input="hi", tools=[tool])
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert [i["type"] for i in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["call_id"] == "call_1" and json.loads(final["output"][1]["arguments"]) == {"a": 1}
    events = _responses_stream(upstream, model="gpt-4o", input="one two three four", max_output_tokens=2)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    upstream.script(Reply(error_after=3))
    events = _responses_stream(upstream, model="gpt-4o", input="hi")
    assert [e["type"] for e in events][-1] == "response.failed" and len(events) == 4


def test_responses_remembers_stored_ids_and_refuses_unknown_ones(upstream):
    first = httpx.post(upstream.base_url + "/responses", json={"model": "gpt-4o", "input": "hi"}).json()
    ok = httpx.post(upstream.base_url + "/responses",
                    json={"model": "gpt-4o", "input": "again", "previous_response_id": first["id"]})
    assert ok.status_code == 200
    unstored = httpx.post(upstream.base_url + "/responses", json={"model": "gpt-4o", "input": "x", "store": False})
    bad = httpx.post(upstream.base_url + "/responses",
                     json={"model": "gpt-4o", "input": "x", "previous_response_id": unstored.json()["id"]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "previous_response_not_found"
    conformance.validate_responses("ErrorResponse", bad.json())
