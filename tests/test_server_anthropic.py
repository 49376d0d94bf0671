"""The Anthropic dialect end to end: a real uvicorn gateway, a real SQLite store filled by `mlxgw apply`,
and two real upstreams: tests/upstream.py (OpenAI wire) and tests/anthropic_upstream.py (Anthropic wire).

- the official `anthropic` SDK (create and stream, sync and async) on an OpenAI-compatible backend gets
  valid `Message` objects and events;
- Claude Code-like requests (billing-header system blocks, mid-conversation system, adaptive thinking,
  beta headers, `?beta=true`) work streamed and not;
- an Anthropic client on an Anthropic backend is passed through: only auth and model rewritten, betas
  forwarded verbatim, error bodies untouched;
- the official `openai` SDK on an Anthropic backend gets schema-valid bodies and chunks;
- errors, headers, count_tokens, auth and the audit row."""

from __future__ import annotations

import json
import textwrap

import anthropic
import httpx
import openai
import pytest

from mlxgw.server import ServerConfig
from tests import conformance
from tests.anthropic_upstream import AReply, ToolUse, anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.conftest import SENTINEL_ANTHROPIC, SENTINEL_OPENAI
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.upstream import Reply, ToolCall, closed_port, upstream, upstream_server  # noqa: F401

MESSAGES = [{"role": "user", "content": "hello there"}]
CLIENT_KEY = "client-key-never-forwarded"
BETAS = "claude-code-20250219, interleaved-thinking-2025-05-14,mid-conversation-system-2026-04-07"
TOOLS = [{"name": "Bash", "description": "Run a command",
          "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                           "properties": {"command": {"type": "string"}}, "required": ["command"],
                           "additionalProperties": False}}]


def config(openai_url: str, anthropic_url: str) -> str:
    dead = f"http://127.0.0.1:{closed_port()}"
    return textwrap.dedent(f"""\
        version: 1
        providers:
          - name: up
            kind: openai-compatible
            base_url: '{openai_url}'
            api_key: ${{env:OPENAI_API_KEY}}
          - name: claude
            kind: anthropic
            base_url: '{anthropic_url}'
            api_key: ${{env:ANTHROPIC_API_KEY}}
          - name: dead
            kind: openai-compatible
            base_url: '{dead}/v1'
        routes:
          - match: {{prefix: "gpt-"}}
            target: up
          - match: {{prefix: "claude-"}}
            target: claude
          - match: {{exact: claude-failover}}
            target: claude/claude-primary
            fallback: [up/up-model]
          - match: {{exact: dead-model}}
            target: dead
    """)


@pytest.fixture
def gateway(home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    apply_config(cli, tmp_path, config(upstream.base_url, anthropic_upstream.base_url))
    with running_gateway(ServerConfig(reload_interval=0.2)) as gw:
        yield gw


@pytest.fixture
def client(gateway):
    with anthropic.Anthropic(base_url=gateway.origin, api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
def oai(gateway):
    with openai.OpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


def sse(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        if block.strip():
            lines = block.split("\n")
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


# --- Anthropic client, OpenAI-compatible backend (translated) ---------------------------------------


def test_sdk_create_on_openai_backend(gateway, client, upstream):  # noqa: F811
    raw = client.messages.with_raw_response.create(model="gpt-4o", max_tokens=100, messages=MESSAGES,
                                                   system="Be brief.")
    msg = raw.parse()
    assert isinstance(msg, anthropic.types.Message)
    anthropic.types.Message.model_validate(json.loads(raw.http_response.text))
    assert msg.content[0].text == "Echo: hello there" and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == 3 and msg.model == "gpt-4o"
    assert raw.headers["request-id"].startswith("req_")
    sent = upstream.last
    assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == f"Bearer {SENTINEL_OPENAI}"
    assert CLIENT_KEY not in json.dumps(sent.headers)
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    assert sent.body["max_tokens"] == 100 and "max_completion_tokens" not in sent.body
    row = wait_for_rows(gateway, 1)[-1]
    assert (row["client_api"], row["backend_api"], row["status"], row["provider"]) == ("anthropic", "openai", 200, "up")
    assert (row["input_tokens"], row["output_tokens"]) == (msg.usage.input_tokens, 3)
    assert row["id"] == raw.headers["request-id"]


def test_sdk_stream_with_fragmented_tool_calls(gateway, client, upstream):  # noqa: F811
    upstream.script(Reply(text="Let me run two.", tool_calls=[ToolCall("Bash", {"command": "ls -la"}),
                                                               ToolCall("Bash", {"command": "pwd"})], args_fragment=3))
    with client.messages.stream(model="gpt-4o", max_tokens=200, messages=MESSAGES, tools=TOOLS) as s:
        events = list(s)
        final = s.get_final_message()
    assert events[0].type == "message_start" and events[0].message.usage.input_tokens > 0
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"command": "ls -la"} and final.content[2].input == {"command": "pwd"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0
    assert upstream.last.body["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]
    assert upstream.last.body["stream_options"] == {"include_usage": True}
    row = wait_for_rows(gateway, 1)[-1]
    assert row["stream"] and row["error"] is None and row["output_tokens"] == final.usage.output_tokens


async def test_async_sdk_create_and_stream(gateway):
    async with anthropic.AsyncAnthropic(base_url=gateway.origin, api_key="x", max_retries=0) as c:
        msg = await c.messages.create(model="gpt-4o", max_tokens=50, messages=MESSAGES)
        assert msg.content[0].text == "Echo: hello there"
        async with c.messages.stream(model="gpt-4o", max_tokens=50, messages=MESSAGES) as s:
            text = "".join([t async for t in s.text_stream])
            final = await s.get_final_message()
        assert text == "Echo: hello there" and final.stop_reason == "end_turn"
        stream = await c.messages.create(model="gpt-4o", max_tokens=50, messages=MESSAGES, stream=True)
        kinds = [e.type async for e in stream]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"


def claude_code_body(stream: bool) -> dict:
    return {
        "model": "gpt-4o", "max_tokens": 32000, "stream": stream,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.200; cc_entrypoint=cli; cch=1a2b;"},
                   {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                    "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": json.dumps({"device_id": "ab" * 32, "account_uuid": "", "session_id": "s-1"})},
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>today</system-reminder>"},
                                         {"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "use ls", "signature": "c2ln"},
                                              {"type": "redacted_thinking", "data": "b64"},
                                              {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "ENOENT", "is_error": True},
                                         {"type": "text", "text": "<system-reminder>x</system-reminder>"}]},
            {"role": "system", "content": "The user switched to plan mode."},
            {"role": "user", "content": "try again"}],
    }


@pytest.mark.parametrize("stream", [False, True])
def test_claude_code_request_on_openai_backend(gateway, upstream, stream):  # noqa: F811
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": BETAS,
               "user-agent": "claude-cli/2.1.200 (external, sdk-cli)", "x-app": "cli", "accept": "application/json"}
    r = httpx.post(gateway.origin + "/v1/messages?beta=true", json=claude_code_body(stream), headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    if stream:
        assert r.headers["content-type"].startswith("text/event-stream") and "[DONE]" not in r.text
        events = sse(r.text)
        assert events[0][0] == "message_start" and events[0][1]["message"]["usage"]["input_tokens"] > 0
        assert events[0][1]["message"]["usage"]["cache_read_input_tokens"] == 0
        assert events[-1][0] == "message_stop" and events[-2][1]["usage"]["output_tokens"] > 0
    else:
        msg = anthropic.types.Message.model_validate(r.json())
        assert msg.content[0].text == "Echo: try again"
    sent = upstream.last.body
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool", "user", "system", "user"]
    assert sent["messages"][0]["content"].startswith("x-anthropic-billing-header")
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "toolu_01", "content": "Error: ENOENT"}
    assert "thinking" not in sent and "context_management" not in sent and "anthropic-beta" not in upstream.last.headers


def test_stream_every_event_named_and_failure_before_first_byte_is_a_real_status(gateway, upstream):  # noqa: F811
    upstream.script(Reply.error(429, "slow down", retry_after=7))
    r = httpx.post(gateway.origin + "/v1/messages", json={"model": "gpt-4o", "max_tokens": 5, "messages": MESSAGES,
                                                          "stream": True}, timeout=10)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"
    assert r.headers["request-id"].startswith("req_")
    upstream.script(Reply(error_after=3, delay_between=0.05))  # content first, so the error is past the stream line
    r = httpx.post(gateway.origin + "/v1/messages", json={"model": "gpt-4o", "max_tokens": 5, "messages": MESSAGES,
                                                          "stream": True}, timeout=10)
    events = sse(r.text)
    assert r.status_code == 200 and events[-1][0] == "error" and "message_stop" not in [n for n, _ in events]
    rows = wait_for_rows(gateway, 2)
    assert rows[-1]["error"] and rows[-1]["status"] == 200


def test_sdk_sees_mid_stream_error_and_status_errors(client, upstream):  # noqa: F811
    upstream.script(Reply(error_after=2, error_object={"message": "engine overloaded", "type": "server_error",
                                                       "param": None, "code": "server_is_overloaded"}))
    with pytest.raises(anthropic.APIStatusError) as exc:
        with client.messages.stream(model="gpt-4o", max_tokens=5, messages=MESSAGES) as s:
            list(s)
    assert "engine overloaded" in str(exc.value)
    upstream.script(Reply.error(503))
    with pytest.raises(anthropic.InternalServerError) as exc:
        client.messages.create(model="gpt-4o", max_tokens=5, messages=MESSAGES)
    assert exc.value.status_code == 529 and exc.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.NotFoundError) as exc:
        client.messages.create(model="nothing-routes-here", max_tokens=5, messages=MESSAGES)
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="gpt-4o", max_tokens=5, messages="not a list")
    assert exc.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.APIStatusError) as exc:
        client.messages.create(model="dead-model", max_tokens=5, messages=MESSAGES)
    assert exc.value.status_code == 502 and exc.value.body["type"] == "error"


def test_unknown_path_and_method_answer_in_anthropic_shape(gateway):
    r = httpx.get(gateway.origin + "/v1/messages")
    assert r.status_code == 405 and r.json()["type"] == "error"
    assert httpx.head(gateway.origin + "/").status_code == 200


# --- Anthropic client, Anthropic backend (pass-through) ---------------------------------------------


def test_passthrough_rewrites_only_auth_and_model(gateway, client, anthropic_upstream):  # noqa: F811
    body = claude_code_body(False)
    body["model"], body["max_tokens"] = "claude-opus-4-7", 4000
    kwargs = {k: v for k, v in body.items() if k not in ("stream", "context_management")}
    raw = client.messages.with_raw_response.create(**kwargs, extra_headers={"anthropic-beta": BETAS},
                                                   extra_body={"context_management": body["context_management"]})
    msg = raw.parse()
    assert msg.content[0].text == "Echo: try again" and raw.headers["upstream-request-id"].startswith("req_up")
    sent = anthropic_upstream.last
    assert sent.path == "/v1/messages"
    assert {k: v for k, v in sent.body.items()} == {k: v for k, v in body.items() if k != "stream"}
    h = sent.headers
    assert h["x-api-key"] == SENTINEL_ANTHROPIC and h["anthropic-beta"] == BETAS
    assert CLIENT_KEY not in json.dumps(h) and "authorization" not in h
    row = wait_for_rows(gateway, 1)[-1]
    assert (row["client_api"], row["backend_api"], row["provider"]) == ("anthropic", "anthropic", "claude")
    assert row["input_tokens"] == msg.usage.input_tokens and row["output_tokens"] == msg.usage.output_tokens


def test_passthrough_stream_is_relayed_as_is(gateway, anthropic_upstream):  # noqa: F811
    anthropic_upstream.script(AReply(thinking="hmm", text="on it", tool_uses=[ToolUse("Bash", {"command": "ls"})]))
    body = {"model": "claude-x", "max_tokens": 50, "messages": MESSAGES, "stream": True, "tools": TOOLS}
    with httpx.stream("POST", gateway.origin + "/v1/messages?beta=true", json=body, timeout=10,
                      headers={"anthropic-beta": BETAS, "anthropic-version": "2023-06-01"}) as r:
        text = r.read().decode()
    assert r.headers["upstream-request-id"].startswith("req_up") and r.headers["request-id"].startswith("req_")
    events = sse(text)
    kinds = [n for n, _ in events]
    assert kinds[0] == "message_start" and kinds[1] == "ping" and kinds[-1] == "message_stop"
    assert any(d.get("delta", {}).get("type") == "signature_delta" for _, d in events)
    assert anthropic_upstream.last.headers["anthropic-beta"] == BETAS
    row = wait_for_rows(gateway, 1)[-1]
    assert row["error"] is None and row["output_tokens"] == events[-2][1]["usage"]["output_tokens"]


def test_passthrough_errors_reach_the_client_unmodified(gateway, client, anthropic_upstream):  # noqa: F811
    wording = "messages.1.content.0: Invalid `signature` in `thinking` block"
    anthropic_upstream.script(AReply.error(400, wording), AReply.error(529, retry_after=2))
    r = httpx.post(gateway.origin + "/v1/messages", json={"model": "claude-x", "max_tokens": 5, "messages": MESSAGES},
                   timeout=10)
    assert r.status_code == 400 and r.json()["error"]["message"] == wording
    assert r.json()["request_id"].startswith("req_up")  # the upstream's body, byte for byte
    with pytest.raises(anthropic.InternalServerError) as exc:
        client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)
    assert exc.value.status_code == 529 and exc.value.response.headers["retry-after"] == "2"
    assert exc.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    anthropic_upstream.script(AReply(error_after=3))
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model="claude-x", max_tokens=5, messages=MESSAGES) as s:
            list(s)


def test_anthropic_529_fails_over_to_the_openai_backend(gateway, client, anthropic_upstream, upstream):  # noqa: F811
    anthropic_upstream.script(AReply.error(529))
    msg = client.messages.create(model="claude-failover", max_tokens=20, messages=MESSAGES)
    assert msg.content[0].text == "Echo: hello there"
    assert anthropic_upstream.last.body["model"] == "claude-primary" and upstream.last.body["model"] == "up-model"
    row = wait_for_rows(gateway, 1)[-1]
    assert (row["attempts"], row["provider"], row["backend_api"]) == (2, "up", "openai")


# --- OpenAI client, Anthropic backend (translated) ---------------------------------------------------


def test_openai_sdk_on_anthropic_backend(gateway, oai, anthropic_upstream):  # noqa: F811
    raw = oai.chat.completions.with_raw_response.create(
        model="claude-x", messages=[{"role": "developer", "content": "Be brief."}, *MESSAGES], stop="END")
    body = json.loads(raw.http_response.text)
    conformance.validate("CreateChatCompletionResponse", body)
    assert body["choices"][0]["message"]["content"] == "Echo: hello there"
    assert body["usage"]["prompt_tokens"] > 0 and body["choices"][0]["finish_reason"] == "stop"
    sent = anthropic_upstream.last
    assert sent.body == {"model": "claude-x", "max_tokens": 4096, "system": [{"type": "text", "text": "Be brief."}],
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
                         "stop_sequences": ["END"]}
    assert sent.headers["x-api-key"] == SENTINEL_ANTHROPIC and sent.headers["anthropic-version"] == "2023-06-01"
    row = wait_for_rows(gateway, 1)[-1]
    assert (row["client_api"], row["backend_api"]) == ("openai", "anthropic")
    assert row["input_tokens"] == body["usage"]["prompt_tokens"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_sdk_stream_on_anthropic_backend(gateway, anthropic_upstream, include_usage):  # noqa: F811
    anthropic_upstream.script(AReply(text="calling", tool_uses=[ToolUse("f", {"a": 1}), ToolUse("g", {})]))
    body = {"model": "claude-x", "messages": MESSAGES, "stream": True,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
                      {"type": "function", "function": {"name": "g"}}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    r = httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=10)
    chunks = conformance.validate_sse(r.text)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert [c["index"] for c in calls if "id" in c] == [0, 1]
    args = {}
    for c in calls:
        args[c["index"]] = args.get(c["index"], "") + c["function"].get("arguments", "")
    assert json.loads(args[0]) == {"a": 1} and json.loads(args[1]) == {}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == ["tool_calls"]
    assert (chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0) if include_usage else \
        all("usage" not in c for c in chunks)
    row = wait_for_rows(gateway, 1)[-1]
    assert row["backend_api"] == "anthropic" and row["output_tokens"] > 0 and row["error"] is None


def test_openai_sdk_sdk_stream_and_errors_from_anthropic_backend(oai, anthropic_upstream):  # noqa: F811
    text = "".join(c.choices[0].delta.content or "" for c in
                   oai.chat.completions.create(model="claude-x", messages=MESSAGES, stream=True) if c.choices)
    assert text == "Echo: hello there"
    anthropic_upstream.script(AReply.error(529, retry_after=3))
    with pytest.raises(openai.InternalServerError) as exc:
        oai.chat.completions.create(model="claude-x", messages=MESSAGES)
    assert exc.value.status_code == 503 and exc.value.response.headers["retry-after"] == "3"
    conformance.validate("ErrorResponse", exc.value.response.json())
    anthropic_upstream.script(AReply(error_after=4))
    with pytest.raises(openai.APIError) as exc:
        for _ in oai.chat.completions.create(model="claude-x", messages=MESSAGES, stream=True):
            pass
    assert "Overloaded" in str(exc.value)
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="claude-x", messages=MESSAGES, n=2)
    assert exc.value.body["param"] == "n"


def test_developer_role_becomes_system_for_compatible_backends(oai, upstream):  # noqa: F811
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "developer", "content": "d"}, *MESSAGES])
    assert upstream.last.body["messages"][0] == {"role": "system", "content": "d"}


# --- count_tokens, auth ------------------------------------------------------------------------------


def test_count_tokens(gateway, client, anthropic_upstream):  # noqa: F811
    small = client.messages.count_tokens(model="gpt-4o", messages=MESSAGES).input_tokens
    big = client.messages.count_tokens(model="gpt-4o", messages=MESSAGES, system="s" * 4000, tools=TOOLS).input_tokens
    assert small > 0 and big > small + 1000
    r = httpx.post(gateway.origin + "/v1/messages/count_tokens?beta=true", json={"model": "claude-x", "messages": MESSAGES},
                   headers={"anthropic-beta": BETAS})
    assert r.status_code == 200 and r.json()["input_tokens"] > 0
    assert anthropic_upstream.last.path == "/v1/messages/count_tokens"
    assert anthropic_upstream.last.headers["anthropic-beta"] == BETAS
    r = httpx.post(gateway.origin + "/v1/messages/count_tokens", json={"model": "nope", "messages": MESSAGES})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    rows = wait_for_rows(gateway, 4)  # every count is audited, the refused one too
    assert [(x["path"], x["status"], x["requested_model"]) for x in rows[-4:]] == [
        ("/v1/messages/count_tokens", 200, "gpt-4o"), ("/v1/messages/count_tokens", 200, "gpt-4o"),
        ("/v1/messages/count_tokens", 200, "claude-x"), ("/v1/messages/count_tokens", 404, "nope")]


def test_gateway_keys_by_x_api_key_or_bearer(home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    apply_config(cli, tmp_path, config(upstream.base_url, anthropic_upstream.base_url))
    code, out, err = cli("tokens", "create", "cc", "--json")
    token = json.loads(out)["token"]
    with running_gateway(ServerConfig(require_keys=True, reload_interval=0.2)) as gw:
        body = {"model": "gpt-4o", "max_tokens": 5, "messages": MESSAGES}
        assert httpx.post(gw.origin + "/v1/messages", json=body, headers={"x-api-key": token}).status_code == 200
        assert httpx.post(gw.origin + "/v1/messages", json=body,
                          headers={"authorization": f"Bearer {token}"}).status_code == 200
        r = httpx.post(gw.origin + "/v1/messages", json=body, headers={"x-api-key": "wrong"})
        assert r.status_code == 401 and r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "authentication_error" and r.headers["request-id"]
        with anthropic.Anthropic(base_url=gw.origin, auth_token=token, max_retries=0) as c:
            assert c.messages.create(**body).content[0].text == "Echo: hello there"
        assert token not in json.dumps(upstream.last.headers)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-x"])
def test_cut_stream_ends_with_an_error_event(gateway, upstream, anthropic_upstream, model):  # noqa: F811
    upstream.script(Reply(break_after=3))
    anthropic_upstream.script(AReply(break_after=4))
    r = httpx.post(gateway.origin + "/v1/messages", json={"model": model, "max_tokens": 5, "messages": MESSAGES,
                                                          "stream": True}, timeout=10)
    events = sse(r.text)
    assert r.status_code == 200 and events[0][0] == "message_start"
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]
    row = wait_for_rows(gateway, 1)[-1]
    assert row["error"] and row["stream"]


def test_cut_anthropic_stream_to_openai_client(gateway, anthropic_upstream):  # noqa: F811
    anthropic_upstream.script(AReply(break_after=4))
    r = httpx.post(gateway.base_url + "/chat/completions", json={"model": "claude-x", "messages": MESSAGES,
                                                                  "stream": True}, timeout=10)
    payloads, done = conformance.parse_sse(r.text)
    assert not done and "error" in payloads[-1]
    conformance.validate_chunks(payloads[:-1])


def test_models_list_in_anthropic_shape_for_anthropic_clients(gateway, client):
    page = client.models.list()
    assert [m.id for m in page.data] == ["claude-failover", "dead-model"]
    assert all(isinstance(m, anthropic.types.ModelInfo) and m.type == "model" for m in page.data)
    body = httpx.get(gateway.base_url + "/models").json()  # no anthropic-version: OpenAI's shape
    conformance.validate("ListModelsResponse", body)
