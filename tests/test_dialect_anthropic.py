"""The Anthropic dialect, pure functions: every row of section 7 of
../shared/reference/anthropic-openai-translation.md (the 25 tricky cases), each asserting the exact
translated output, then the rest of the request/response mapping."""

from __future__ import annotations

import json

import pytest

from mlxgw.dialects import anthropic as an
from mlxgw.dialects.anthropic.from_openai import NOOP_TOOL, from_openai_request
from mlxgw.dialects.anthropic.requests import ToolNames, short_tool_name
from mlxgw.dialects.anthropic.to_openai import to_openai_request
from mlxgw.dialects.openai import COMPATIBLE, OPENAI_PROPER, developer_to_system
from mlxgw.dialects.anthropic.responses import from_openai_response, to_openai_response
from mlxgw.dialects.anthropic.streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream

PNG = "iVBORw0KGgo="


def a_req(**kw) -> dict:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **kw}


def o_req(messages, **kw) -> dict:
    return {"model": "claude-sonnet-4-5", "messages": messages, **kw}


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of each Anthropic SSE event; asserts every event has its `event:` line."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        name, data = lines[0][7:], json.loads(lines[1][6:])
        assert data["type"] == name
        out.append((name, data))
    return out


def chunk(delta=None, finish=None, usage=None, choices=True) -> dict:
    c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    c["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []
    if usage is not None:
        c["usage"] = usage
    return c


def tc(index, id=None, name=None, args=None) -> dict:
    entry: dict = {"index": index}
    if id:
        entry["id"], entry["type"] = id, "function"
    fn = {}
    if name:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    entry["function"] = fn
    return {"tool_calls": [entry]}


def run_a2o(chunks, done=True, **kw) -> list[tuple[str, dict]]:
    conv = OpenAIToAnthropicStream("msg_1", "claude-x", **kw)
    raw = conv.start() + b"".join(conv.feed(c) for c in chunks) + conv.end(done)
    return sse_events(raw)


def check_block_discipline(events) -> None:
    """Indexes start at 0 in order; every delta/stop targets a started, not yet stopped block."""
    started, stopped = [], set()
    for name, data in events:
        if name == "content_block_start":
            assert data["index"] == len(started)
            started.append(data["content_block"]["type"])
        elif name in ("content_block_delta", "content_block_stop"):
            assert data["index"] < len(started) and data["index"] not in stopped, (name, data)
            if name == "content_block_stop":
                stopped.add(data["index"])
    assert stopped == set(range(len(started)))


# ------------------------------------------------------------------------------------ section 7, 1-17


def test_case_01_system_array_becomes_one_system_message_without_cache_control():
    out = to_openai_request(a_req(system=[{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                                          {"type": "text", "text": "B"}]), "m")
    assert out["messages"] == [{"role": "system", "content": "A\nB"}, {"role": "user", "content": "hi"}]
    assert "cache_control" not in json.dumps(out)


def test_case_02_tool_results_go_first():
    msgs = [{"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                                              {"type": "tool_use", "id": "t2", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "text", "text": "see:"},
                                         {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                                         {"type": "tool_result", "tool_use_id": "t2", "content": "ok2"}]}]
    out = to_openai_request(a_req(messages=msgs), "m")
    assert out["messages"][2:] == [{"role": "tool", "tool_call_id": "t1", "content": "ok"},
                                   {"role": "tool", "tool_call_id": "t2", "content": "ok2"},
                                   {"role": "user", "content": "see:"}]


def test_case_03_is_error_is_visible():
    ok = {"type": "tool_result", "tool_use_id": "t1", "content": "ENOENT"}
    bad = {**ok, "is_error": True}
    out_ok = to_openai_request(a_req(messages=[{"role": "user", "content": [ok]}]), "m")["messages"]
    out_bad = to_openai_request(a_req(messages=[{"role": "user", "content": [bad]}]), "m")["messages"]
    assert out_bad == [{"role": "tool", "tool_call_id": "t1", "content": "Error: ENOENT"}]
    assert out_ok != out_bad


def test_case_04_image_in_tool_result_follows_in_a_user_message():
    res = {"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "text", "text": "shot"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}
    out = to_openai_request(a_req(messages=[{"role": "user", "content": [res]}]), "m")["messages"]
    assert out == [{"role": "tool", "tool_call_id": "t1", "content": "shot"},
                   {"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]


def test_case_05_tool_choice():
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    out = to_openai_request(a_req(tools=tools, tool_choice={"type": "any", "disable_parallel_tool_use": True}), "m")
    assert (out["tool_choice"], out["parallel_tool_calls"]) == ("required", False)
    out = to_openai_request(a_req(tools=tools, tool_choice={"type": "tool", "name": "f"}), "m")
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}} and "parallel_tool_calls" not in out
    assert to_openai_request(a_req(tools=tools, tool_choice={"type": "auto"}), "m")["tool_choice"] == "auto"
    assert to_openai_request(a_req(tools=tools, tool_choice={"type": "none"}), "m")["tool_choice"] == "none"
    assert "tool_choice" not in to_openai_request(a_req(tool_choice={"type": "any"}), "m")  # no tools: no choice


def test_case_06_long_tool_name_round_trips():
    long = "mcp__some_server__" + "x" * 62
    assert len(long) == 80
    names = ToolNames()
    out = to_openai_request(a_req(tools=[{"name": long, "input_schema": {"type": "object"}}],
                                  tool_choice={"type": "tool", "name": long}), "m", names=names)
    short = out["tools"][0]["function"]["name"]
    assert len(short) <= 64 and short == short_tool_name(long) == out["tool_choice"]["function"]["name"]
    resp = {"id": "c1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": short, "arguments": "{}"}}]}}]}
    assert from_openai_response(resp, "claude-x", names)["content"][0]["name"] == long
    events = run_a2o([chunk(tc(0, "call_1", short, "{}")), chunk(finish="tool_calls")], names=names)
    starts = [d for n, d in events if n == "content_block_start"]
    assert starts[0]["content_block"]["name"] == long


def test_case_07_max_tokens_for_openai_reasoning_models():
    out = to_openai_request(a_req(max_tokens=32000), "o3", OPENAI_PROPER)
    assert out["max_completion_tokens"] == 32000 and "max_tokens" not in out
    assert to_openai_request(a_req(max_tokens=32000), "local", COMPATIBLE)["max_tokens"] == 32000


def test_case_08_missing_max_tokens_gets_the_default():
    out = from_openai_request(o_req([{"role": "user", "content": "hi"}]), "claude-sonnet-4-5")
    assert out["max_tokens"] == 4096
    assert from_openai_request(o_req([{"role": "user", "content": "hi"}]), "c", default_max_tokens=777)["max_tokens"] == 777
    assert from_openai_request(o_req([{"role": "user", "content": "hi"}], max_completion_tokens=50), "c")["max_tokens"] == 50


def test_case_09_system_hoisting():
    out = from_openai_request(o_req([{"role": "system", "content": "S1"}, {"role": "user", "content": "hi"},
                                     {"role": "developer", "content": "S2"}]), "c")
    assert out["system"] == [{"type": "text", "text": "S1"}, {"type": "text", "text": "S2"}]
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_case_10_assistant_null_content_with_tool_call():
    out = from_openai_request(o_req([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "r"}], tools=[{"type": "function", "function": {"name": "f"}}]), "c")
    assert out["messages"][1] == {"role": "assistant",
                                  "content": [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}]}


def test_case_11_consecutive_tool_messages_make_one_user_turn():
    msgs = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "two"},
            {"role": "user", "content": "next"}]
    out = from_openai_request(o_req(msgs, tools=[{"type": "function", "function": {"name": "f"}}]), "c")
    assert out["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "two"},
        {"type": "text", "text": "next"}]}
    assert out["messages"][1]["content"][1]["input"] == {}  # empty arguments -> {}
    assert len(out["messages"]) == 3


def test_case_12_invalid_ids_are_rewritten_consistently():
    msgs = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "functions.Bash:0", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "functions.Bash:0", "content": "ok"}]
    out = from_openai_request(o_req(msgs, tools=[{"type": "function", "function": {"name": "Bash"}}]), "c")
    use_id = out["messages"][1]["content"][0]["id"]
    assert use_id == out["messages"][2]["content"][0]["tool_use_id"]
    import re
    assert re.match(r"^[a-zA-Z0-9_-]+$", use_id) and use_id.startswith("functions_Bash_0")
    # A->O: a 41-character id is shortened to <= 40, the same in tool_calls and the tool message.
    long_id = "toolu_" + "a" * 35
    assert len(long_id) == 41
    a_msgs = [{"role": "user", "content": "q"},
              {"role": "assistant", "content": [{"type": "tool_use", "id": long_id, "name": "f", "input": {}}]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": long_id, "content": "r"}]}]
    o = to_openai_request(a_req(messages=a_msgs), "m")["messages"]
    assert o[1]["tool_calls"][0]["id"] == o[2]["tool_call_id"] and len(o[2]["tool_call_id"]) <= 40


def test_case_13_sampling_params_and_n():
    out = from_openai_request(o_req([{"role": "user", "content": "hi"}], temperature=1.5, top_p=0.9), "c")
    assert out["temperature"] == 1 and "top_p" not in out
    with pytest.raises(an.RequestError) as exc:
        from_openai_request(o_req([{"role": "user", "content": "hi"}], n=2), "c")
    assert exc.value.param == "n"


def test_case_14_stop():
    assert from_openai_request(o_req([{"role": "user", "content": "hi"}], stop="END"), "c")["stop_sequences"] == ["END"]
    assert "stop_sequences" not in from_openai_request(o_req([{"role": "user", "content": "hi"}], stop=["\n"]), "c")


def test_case_15_forced_function_finish():
    msg = {"role": "assistant", "content": None,
           "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]}
    out = from_openai_response({"id": "c", "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]}, "m")
    assert out["stop_reason"] == "tool_use"
    assert out["content"] == [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}}]
    partial = {**msg, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x"}}]}
    out = from_openai_response({"id": "c", "choices": [{"index": 0, "message": partial, "finish_reason": "length"}]}, "m")
    assert out["stop_reason"] == "max_tokens"


def test_case_16_usage_openai_to_anthropic():
    assert an.usage_from_openai({"prompt_tokens": 100, "completion_tokens": 20,
                                 "prompt_tokens_details": {"cached_tokens": 80}}) == {
        "input_tokens": 20, "cache_read_input_tokens": 80, "output_tokens": 20, "cache_creation_input_tokens": 0}


def test_case_17_usage_anthropic_to_openai():
    assert an.openai_usage({"input_tokens": 20, "cache_read_input_tokens": 80, "cache_creation_input_tokens": 10,
                            "output_tokens": 5}) == {
        "prompt_tokens": 110, "completion_tokens": 5, "total_tokens": 115, "prompt_tokens_details": {"cached_tokens": 80}}


# ------------------------------------------------------------------------------------ section 7, 18-25


def test_case_18_stream_text_two_sequential_tools_late_usage():
    chunks = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Let me"}),
              chunk(tc(0, "call_a", "f", "")), chunk(tc(0, args='{"a"')), chunk(tc(0, args=":1}")),
              chunk(tc(1, "call_b", "g", "{}")), chunk(finish="tool_calls"),
              chunk(choices=False, usage={"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16})]
    events = run_a2o(chunks, input_tokens=5)
    names = [n for n, _ in events]
    assert names == ["message_start", "ping",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    d = [data for _, data in events]
    assert d[2] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert d[3]["delta"] == {"type": "text_delta", "text": "Let me"}
    assert d[5]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}
    assert [d[6]["delta"]["partial_json"], d[7]["delta"]["partial_json"]] == ['{"a"', ":1}"]
    assert d[9]["index"] == 2 and d[9]["content_block"]["id"] == "call_b"
    assert d[10] == {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}
    assert d[12]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert d[12]["usage"]["output_tokens"] == 7 and d[12]["usage"]["input_tokens"] == 9
    assert d[0]["message"]["usage"] == {"input_tokens": 5, "output_tokens": 0, "cache_creation_input_tokens": 0,
                                        "cache_read_input_tokens": 0}
    check_block_discipline(events)


def test_case_18_nothing_after_message_stop():
    conv = OpenAIToAnthropicStream("msg_1", "m")
    conv.feed(chunk({"content": "x"}, finish="stop"))
    conv.end(True)
    assert conv.feed(chunk({"content": "late"})) == b"" and conv.end(True) == b""


def test_case_19_interleaved_tools():
    chunks = [chunk(tc(0, "c0", "f", "")), chunk(tc(1, "c1", "g", "")), chunk(tc(0, args='{"a":')),
              chunk(tc(1, args='{"b":')), chunk(tc(0, args="1}")), chunk(tc(1, args="2}")), chunk(finish="tool_calls")]
    events = run_a2o(chunks)
    check_block_discipline(events)
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["content_block"]["id"] for s in starts] == ["c0", "c1"]
    inputs = {}
    for n, d in events:
        if n == "content_block_delta":
            inputs[d["index"]] = inputs.get(d["index"], "") + d["delta"]["partial_json"]
    assert json.loads(inputs[0]) == {"a": 1} and json.loads(inputs[1]) == {"b": 2}


def test_case_19_several_calls_in_one_chunk_and_whole_arguments():
    both = {"tool_calls": [{"index": 0, "id": "c0", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                           {"index": 1, "id": "c1", "type": "function", "function": {"name": "g", "arguments": '{"b":2}'}}]}
    events = run_a2o([chunk(both), chunk(finish="tool_calls")])
    check_block_discipline(events)
    deltas = [(d["index"], d["delta"]["partial_json"]) for n, d in events if n == "content_block_delta"]
    assert deltas == [(0, '{"a":1}'), (1, '{"b":2}')]


def test_case_20_empty_tool_calls_next_to_content():
    events = run_a2o([chunk({"content": "Hi", "tool_calls": []}), chunk(finish="stop")])
    assert [(n, d.get("delta")) for n, d in events if n == "content_block_delta"] == [
        ("content_block_delta", {"type": "text_delta", "text": "Hi"})]
    assert [d["content_block"]["type"] for n, d in events if n == "content_block_start"] == ["text"]


def test_case_21_combined_chunk_without_usage():
    events = run_a2o([chunk({"content": "Hello"}, finish="stop")], input_tokens=4)
    assert [n for n, _ in events] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                      "content_block_stop", "message_delta", "message_stop"]
    md = events[5][1]
    assert md["delta"]["stop_reason"] == "end_turn" and md["usage"]["output_tokens"] == 0
    assert md["usage"]["input_tokens"] == 4


def test_case_22_reasoning_around_a_tool():
    chunks = [chunk({"reasoning_content": "r1"}), chunk(tc(0, "c0", "f", "{}")), chunk({"reasoning_content": "r2"}),
              chunk({"content": "done"}), chunk(finish="tool_calls")]
    events = run_a2o(chunks)
    check_block_discipline(events)
    assert [d["content_block"]["type"] for n, d in events if n == "content_block_start"] == \
        ["thinking", "tool_use", "thinking", "text"]
    starts = {d["index"]: d["content_block"]["type"] for n, d in events if n == "content_block_start"}
    for n, d in events:
        if n == "content_block_delta" and d["delta"]["type"] == "thinking_delta":
            assert starts[d["index"]] == "thinking"
    assert events[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}


def a_events(*blocks, stop="tool_use", usage=None) -> list[dict]:
    out = [{"type": "message_start", "message": {"id": "msg_9", "type": "message", "role": "assistant",
                                                 "model": "claude-x", "content": [],
                                                 "usage": {"input_tokens": 10, "output_tokens": 1}}}]
    for i, (block, deltas) in enumerate(blocks):
        out.append({"type": "content_block_start", "index": i, "content_block": block})
        out.extend({"type": "content_block_delta", "index": i, "delta": d} for d in deltas)
        out.append({"type": "content_block_stop", "index": i})
    out.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": usage or {"output_tokens": 12}})
    out.append({"type": "message_stop"})
    return out


def openai_chunks(raw: bytes) -> tuple[list[dict], bool]:
    from tests import conformance
    return conformance.parse_sse(raw.decode())


@pytest.mark.parametrize("include_usage", [True, False])
def test_case_23_stream_tool_ordinals(include_usage):
    from tests import conformance
    evs = a_events(({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Hi"}]),
                   ({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                    [{"type": "input_json_delta", "partial_json": '{"a":'}, {"type": "input_json_delta", "partial_json": "1}"}]),
                   ({"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}}, []))
    conv = AnthropicToOpenAIStream("chatcmpl-9", "claude-x", include_usage)
    raw = b"".join(conv.feed(e) for e in evs) + conv.end()
    chunks, done = openai_chunks(raw)
    assert done
    conformance.validate_chunks(chunks)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0] == {"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    assert calls[3] == {"index": 1, "id": "toolu_2", "type": "function", "function": {"name": "g", "arguments": ""}}
    assert calls[4] == {"index": 1, "function": {"arguments": "{}"}}  # no arguments: valid JSON anyway
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["tool_calls"]
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 10
        assert chunks[-1]["usage"]["completion_tokens"] == 12
    else:
        assert all(c["choices"] and "usage" not in c for c in chunks)


def test_case_24_error_mid_stream():
    evs = a_events(({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Hel"}]))[:3]
    conv = AnthropicToOpenAIStream("chatcmpl-9", "claude-x")
    raw = b"".join(conv.feed(e) for e in evs)
    raw += conv.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    raw += conv.end()
    chunks, done = openai_chunks(raw)
    assert not done
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hel"}
    assert chunks[-1] == {"error": {"message": "Overloaded", "type": "server_error", "param": None,
                                    "code": "server_is_overloaded"}}
    assert not any(c.get("choices") and c["choices"][0]["finish_reason"] for c in chunks)


def test_case_25_error_mapping_and_headers_shape():
    status, body = an.from_openai_error(429, json.dumps({"error": {"message": "slow down", "type": "requests",
                                                                    "code": "rate_limit_exceeded"}}).encode(), "up")
    assert status == 429 and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    status, body = an.openai_error_from_anthropic(529, json.dumps({"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}).encode(), "claude")
    from tests import conformance
    assert status == 503
    conformance.validate("ErrorResponse", body)
    # (the HTTP-level half of case 25 - real statuses before the first byte, retry-after, request-id and
    # both auth headers - runs against the real server in tests/test_server_anthropic.py)


# ------------------------------------------------------------------------------------ more mapping


def test_error_mapping_table():
    cases = {(402, "insufficient_quota"): (402, "billing_error"), (503, None): (529, "overloaded_error"),
             (500, None): (500, "api_error"), (401, "invalid_api_key"): (401, "authentication_error"),
             (404, "model_not_found"): (404, "not_found_error"), (504, None): (504, "timeout_error"),
             (413, None): (413, "request_too_large"), (422, None): (422, "invalid_request_error")}
    for (status, code), expected in cases.items():
        raw = json.dumps({"error": {"message": "m", "type": "x", "code": code}}).encode()
        got_status, body = an.from_openai_error(status, raw, "up")
        assert (got_status, body["error"]["type"]) == expected, (status, code)
    s, b = an.from_openai_error(429, b'{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}', "up")
    assert (s, b["error"]["type"]) == (402, "billing_error")
    s, b = an.from_openai_error(400, b'{"error":{"message":"too long","code":"context_length_exceeded"}}', "up")
    assert b["error"]["message"].startswith("prompt is too long")
    s, b = an.from_openai_error(502, b"<html>bad gateway</html>", "up")
    assert (s, b["error"]["type"]) == (502, "api_error") and "bad gateway" in b["error"]["message"]
    s, b = an.openai_error_from_anthropic(400, b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 9 > 8"}}', "c")
    assert (s, b["error"]["code"]) == (400, "context_length_exceeded")
    s, b = an.openai_error_from_anthropic(401, b'{"type":"error","error":{"type":"authentication_error","message":"bad key"}}', "c")
    assert (s, b["error"]["code"], b["error"]["type"]) == (401, "invalid_api_key", "invalid_request_error")


def test_stream_error_event_types():
    assert an.stream_error_event({"message": "x", "code": "server_is_overloaded"})["error"]["type"] == "overloaded_error"
    assert an.stream_error_event({"message": "x", "type": "rate_limit_exceeded"})["error"]["type"] == "rate_limit_error"
    assert an.stream_error_event({"message": "x"}) == {"type": "error", "error": {"type": "api_error", "message": "x"}}


def test_a2o_in_stream_error_and_cut_stream():
    conv = OpenAIToAnthropicStream("msg_1", "m")
    raw = conv.start() + conv.feed(chunk({"content": "par"}))
    raw += conv.fail({"message": "boom", "type": "server_error", "code": "server_is_overloaded"})
    events = sse_events(raw)
    assert events[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "boom"}})
    assert "message_stop" not in [n for n, _ in events]
    cut = run_a2o([chunk({"content": "par"})], done=False)
    assert cut[-1][0] == "error" and cut[-1][1]["error"]["type"] == "api_error"
    assert "message_delta" not in [n for n, _ in cut]


def test_a2o_empty_stream_and_refusal_and_length():
    assert [n for n, _ in run_a2o([chunk({"role": "assistant", "content": ""}), chunk(finish="stop")])] == [
        "message_start", "ping", "message_delta", "message_stop"]
    refusal = run_a2o([chunk({"refusal": "no"}), chunk(finish="stop")])
    assert [d for n, d in refusal if n == "message_delta"][0]["delta"]["stop_reason"] == "refusal"
    length = run_a2o([chunk({"content": "a"}), chunk(tc(0, "c", "f", "{")), chunk(finish="length")])
    assert [d for n, d in length if n == "message_delta"][0]["delta"]["stop_reason"] == "max_tokens"
    cf = run_a2o([chunk({"content": "a"}, finish="content_filter")])
    assert [d for n, d in cf if n == "message_delta"][0]["delta"]["stop_reason"] == "refusal"


def test_a2o_stop_sequence_reported_by_vllm():
    c = chunk({"content": "a"}, finish="stop")
    c["choices"][0]["stop_reason"] = "END"
    md = [d for n, d in run_a2o([c], stop_sequences=["END"]) if n == "message_delta"][0]
    assert md["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    resp = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "a"},
                                    "finish_reason": "stop", "stop_reason": "END"}]}
    out = from_openai_response(resp, "m", stop_sequences=["END"])
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")


def test_a2o_tool_name_arriving_late_and_bad_ids():
    events = run_a2o([chunk(tc(0, "functions.Bash:0", None, '{"c"')), chunk(tc(0, name="Bash", args=':"ls"}')),
                      chunk(finish="tool_calls")])
    check_block_discipline(events)
    start = [d for n, d in events if n == "content_block_start"][0]["content_block"]
    assert start["name"] == "Bash" and start["id"].startswith("functions_Bash_0_")
    assert "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta") == '{"c":"ls"}'


def test_request_full_shape_claude_code_like():
    body = {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True, "temperature": 1,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc;"},
                   {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": '{"device_id":"abc","session_id":"s"}'},
        "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"c": {"type": "string"}}},
                   "cache_control": {"type": "ephemeral"}},
                  {"type": "web_search_20250305", "name": "web_search"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                         {"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                              {"type": "redacted_thinking", "data": "xx"},
                                              {"type": "text", "text": "Sure."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"c": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a b"}]}]},
            {"role": "system", "content": "Mid-conversation note."},
            {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                                         {"type": "text", "text": "and this?"}]}],
    }
    out = to_openai_request(body, "gpt-4o", OPENAI_PROPER)
    assert out == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "x-anthropic-billing-header: cc_version=2.1; cch=abc;\nYou are Claude Code."},
            {"role": "user", "content": "<system-reminder>x</system-reminder>\nlist files"},
            {"role": "assistant", "content": "Sure.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "Bash", "arguments": '{"c":"ls"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a b"},
            {"role": "system", "content": "Mid-conversation note."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                                         {"type": "text", "text": "and this?"}]}],
        "max_completion_tokens": 32000, "temperature": 1,
        "tools": [{"type": "function", "function": {"name": "Bash", "description": "run",
                                                    "parameters": {"type": "object", "properties": {"c": {"type": "string"}}}}}],
        "user": '{"device_id":"abc","session_id":"s"}',
        "stream": True, "stream_options": {"include_usage": True},
    }


def test_request_stop_sequences_trimmed_and_output_format():
    out = to_openai_request(a_req(stop_sequences=["a", "b", "c", "d", "e"],
                                  output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}}),
                            "m", OPENAI_PROPER)
    assert out["stop"] == ["a", "b", "c", "d"]
    assert out["response_format"] == {"type": "json_schema", "json_schema": {"name": "structured_output",
                                                                            "schema": {"type": "object"}}}
    assert to_openai_request(a_req(stop_sequences=["a"] * 5), "m")["stop"] == ["a"] * 5


def test_parse_request_checks():
    assert an.parse_request(json.dumps(a_req()).encode())["model"] == "claude-x"
    for raw, param in [(b"[1]", None), (b"{", None), (b'{"max_tokens":1,"messages":[]}', "model"),
                       (b'{"model":"m","messages":[]}', "max_tokens"), (b'{"model":"m","max_tokens":1}', "messages"),
                       (b'{"model":"m","max_tokens":1,"messages":[{"role":"tool","content":"x"}]}', "messages.0.role")]:
        with pytest.raises(an.RequestError) as exc:
            an.parse_request(raw)
        assert exc.value.param == param
    mid_system = a_req(messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
    assert an.parse_request(json.dumps(mid_system).encode())


def test_o2a_full_request():
    body = o_req([{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                  {"role": "assistant", "content": "Earlier answer"},
                  {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "text", "text": ""},
                                               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                                               {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}}]},
                  {"role": "assistant", "content": ""}],
                 tools=[{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}},
                        {"type": "function", "function": {"name": "g"}}],
                 tool_choice={"type": "function", "function": {"name": "f"}}, parallel_tool_calls=False,
                 user="someone@example.com", stream=True, stream_options={"include_usage": True}, seed=1,
                 logprobs=True, presence_penalty=0.5, top_p=0.5)
    out = from_openai_request(body, "claude-sonnet-4-5")
    assert out == {
        "model": "claude-sonnet-4-5", "max_tokens": 4096,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "(continue)"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Earlier answer"}]},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                                         {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}}]}],
        "top_p": 0.5,
        "tools": [{"name": "f", "input_schema": {"type": "object"}, "description": "d"},
                  {"name": "g", "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        "stream": True,
    }
    with pytest.raises(an.RequestError):
        from_openai_request(o_req([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}]}]), "c")


def test_o2a_tool_history_without_tools_gets_a_noop_tool_and_reasoning_effort():
    msgs = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                                                   "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "r"}]}]
    out = from_openai_request(o_req(msgs), "c")
    assert out["tools"] == [NOOP_TOOL] and out["tool_choice"] == {"type": "none"}
    assert out["messages"][2]["content"][0]["content"] == [{"type": "text", "text": "r"}]
    assert "thinking" not in from_openai_request(o_req(msgs, reasoning_effort="high"), "c")  # tool loop: no thinking
    simple = from_openai_request(o_req([{"role": "user", "content": "q"}], reasoning_effort="medium", max_tokens=100,
                                       temperature=0.2), "c")
    assert simple["thinking"] == {"type": "enabled", "budget_tokens": 4096} and simple["max_tokens"] == 4196
    assert "temperature" not in simple
    assert "thinking" not in from_openai_request(o_req([{"role": "user", "content": "q"}], reasoning_effort="minimal"), "c")
    js = from_openai_request(o_req([{"role": "user", "content": "q"}], response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}), "c")
    assert js["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert from_openai_request(o_req([{"role": "user", "content": "q"}], user="user-42"), "c")["metadata"] == {"user_id": "user-42"}


def test_developer_to_system():
    body = {"model": "m", "messages": [{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}]}
    out = developer_to_system(body)
    assert out["messages"][0] == {"role": "system", "content": "d"} and body["messages"][0]["role"] == "developer"
    plain = {"model": "m", "messages": [{"role": "user", "content": "u"}]}
    assert developer_to_system(plain) is plain


def test_response_openai_to_anthropic_shape_validates_with_the_sdk():
    from anthropic.types import Message
    resp = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me check.", "reasoning_content": "think",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
    out = from_openai_response(resp, "claude-x")
    Message.model_validate(out)
    assert [b["type"] for b in out["content"]] == ["thinking", "text", "tool_use"]
    # The model field names the model that answered (README "The model field"), the given name only
    # when the backend leaves it out.
    assert out["id"].startswith("msg_") and out["model"] == "gpt-4o"
    empty = from_openai_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                                               "finish_reason": "stop"}]}, "m")
    assert empty["model"] == "m"
    assert empty["content"] == [] and empty["usage"]["input_tokens"] == 0
    Message.model_validate(empty)


def test_response_anthropic_to_openai_conforms():
    from tests import conformance
    msg = {"id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-x",
           "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "A"},
                       {"type": "text", "text": "B"}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}],
           "stop_reason": "tool_use", "stop_sequence": None,
           "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 2}}
    out = to_openai_response(msg, "claude-x")
    conformance.validate("CreateChatCompletionResponse", out)
    m = out["choices"][0]
    assert m["message"]["content"] == "AB" and m["finish_reason"] == "tool_calls"
    assert m["message"]["reasoning_content"] == "t"
    assert m["message"]["tool_calls"] == [{"id": "toolu_1", "type": "function",
                                           "function": {"name": "f", "arguments": '{"x":1}'}}]
    assert out["id"] == "chatcmpl-abc" and out["usage"]["prompt_tokens"] == 5
    for reason, finish in [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"),
                           ("refusal", "content_filter"), ("pause_turn", "stop"),
                           ("model_context_window_exceeded", "length")]:
        r = to_openai_response({**msg, "content": [{"type": "text", "text": "x"}], "stop_reason": reason}, "c")
        assert r["choices"][0]["finish_reason"] == finish


def test_stream_events_validate_with_the_sdk_accumulator():
    """The A->O stream, fed to the anthropic SDK's own event types and message accumulator."""
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter
    adapter = TypeAdapter(RawMessageStreamEvent)
    chunks = [chunk({"reasoning_content": "plan"}), chunk({"content": "Hi "}), chunk({"content": "there"}),
              chunk(tc(0, "call_a", "f", '{"q":')), chunk(tc(0, args='"x"}')), chunk(finish="tool_calls"),
              chunk(choices=False, usage={"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16,
                                          "prompt_tokens_details": {"cached_tokens": 4}})]
    snapshot, bufs = None, {}
    for name, data in run_a2o(chunks):
        if name == "ping":
            continue
        snapshot = accumulate_event(event=adapter.validate_python(data), current_snapshot=snapshot, json_bufs=bufs)
    assert [b.type for b in snapshot.content] == ["thinking", "text", "tool_use"]
    assert snapshot.content[1].text == "Hi there" and snapshot.content[2].input == {"q": "x"}
    assert snapshot.stop_reason == "tool_use" and snapshot.usage.output_tokens == 7
    assert snapshot.usage.cache_read_input_tokens == 4 and snapshot.usage.input_tokens == 5


def test_count_tokens_counts_system_and_tools():
    base = an.count_tokens(a_req())
    with_system = an.count_tokens(a_req(system="x" * 400))
    with_tools = an.count_tokens(a_req(tools=[{"name": "t", "description": "d" * 400, "input_schema": {"type": "object"}}]))
    assert with_system == base + 100 and with_tools > base + 100
    img = a_req(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}])
    assert an.count_tokens(img) >= 1600
