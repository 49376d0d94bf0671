"""Responses streams from chat-completions chunks and from Anthropic events: the event order, every event
validated against the vendored schema (sequence numbers 0, 1, 2...), upstream bytes cut at arbitrary points,
and the terminal Response equal to what the non-streamed translation gives for the same answer."""

from __future__ import annotations

import json
import random

import pytest

from mlxgw.dialects import responses as rs
from tests import conformance

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}
CREATED = 1796000000


def req(**kw) -> dict:
    return rs.parse_request(json.dumps({"model": "client-model", "input": "hi", "stream": True, **kw}).encode())


def chat_sse(chunks: list[dict], done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(delta=None, finish=None, usage=None) -> dict:
    c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "b",
         "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    if usage is not None:
        c["usage"], c["choices"] = usage, []
    return c


def anthropic_sse(events: list[dict]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events)


def chat_stream(body: dict, rid="resp_s1") -> rs.ChatToResponsesStream:
    return rs.ChatToResponsesStream(rs.ResponsesEventWriter(body, rid, CREATED))


def anthropic_stream(body: dict, rid="resp_s1") -> rs.AnthropicToResponsesStream:
    return rs.AnthropicToResponsesStream(rs.ResponsesEventWriter(body, rid, CREATED))


def run(conv, raw: bytes, cuts=(), validate: bool = True) -> list[dict]:
    """Feed `raw` cut at the given offsets, then end(); the client events (validated unless told not)."""
    out, last = [], 0
    for cut in sorted(cuts) + [len(raw)]:
        out.append(conv.feed(raw[last:cut]))
        last = cut
    out.append(conv.end())
    text = b"".join(out).decode()
    if validate:
        return conformance.validate_response_sse(text)
    return [ev for _, ev in conformance.parse_response_sse(text)]


def without_completed_at(resp: dict) -> dict:
    return {k: v for k, v in resp.items() if k != "completed_at"}


def same_at_every_cut(make, raw: bytes, samples: int = 40) -> list[dict]:
    """The events for `raw` fed whole (validated), checked equal (completed_at aside) when fed cut at
    random points (and byte by byte)."""
    whole = run(make(), raw)
    rng = random.Random(7)
    for n in range(samples + 1):
        cuts = range(1, len(raw)) if n == samples else rng.sample(range(1, len(raw)), min(len(raw) - 1, 1 + n % 9))
        events = run(make(), raw, cuts, validate=False)
        strip = [{**e, "response": without_completed_at(e["response"])} if "response" in e else e for e in events]
        assert strip == [{**e, "response": without_completed_at(e["response"])} if "response" in e else e
                         for e in whole], cuts
    return whole


def types(events) -> list[str]:
    return [e["type"] for e in events]


USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


# --- chat completions -------------------------------------------------------------------------------------


def test_text_stream_events_and_final_response():
    body = req(instructions="Be brief.")
    raw = chat_sse([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                    chunk({}, "stop"), chunk(usage=USAGE)])
    events = same_at_every_cut(lambda: chat_stream(body), raw)
    assert types(events) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["Hel", "lo"]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[2]["item"] == {"type": "message", "id": "msg_s1_0", "status": "in_progress", "role": "assistant",
                                 "content": []}
    final = events[-1]["response"]
    expected = rs.from_chat_response({"choices": [{"message": {"content": "Hello"}, "finish_reason": "stop"}],
                                      "usage": USAGE}, body, "resp_s1", CREATED)
    assert without_completed_at(final) == without_completed_at(expected)
    assert final["completed_at"] >= CREATED and events[-2]["item"] == final["output"][0]


def test_reasoning_then_text_then_parallel_interleaved_calls():
    body = req(tools=[WEATHER])
    raw = chat_sse([
        chunk({"role": "assistant", "reasoning_content": "Two cities"}), chunk({"reasoning_content": "."}),
        chunk({"content": "Checking."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_P", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_O", "type": "function",
                               "function": {"name": "get_weather", "arguments": "{\"city\":"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "\"Oslo\"}"}}]}),
        chunk({}, "tool_calls"), chunk(usage=USAGE)])
    events = same_at_every_cut(lambda: chat_stream(body), raw)
    assert types(events) == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
        "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(d["output_index"], d["name"], d["arguments"]) for d in done] == [
        (2, "get_weather", "{\"city\":\"Paris\"}"), (3, "get_weather", "{\"city\":\"Oslo\"}")]
    expected = rs.from_chat_response({"choices": [{"finish_reason": "tool_calls", "message": {
        "content": "Checking.", "reasoning_content": "Two cities.", "tool_calls": [
            {"id": "call_P", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_O", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
        "usage": USAGE}, body, "resp_s1", CREATED)
    assert without_completed_at(events[-1]["response"]) == without_completed_at(expected)


def test_calls_only_and_a_call_without_id():
    body = req(tools=[WEATHER])
    raw = chat_sse([chunk({"role": "assistant", "content": None}),
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                    chunk({"tool_calls": [{"index": 0, "function": {"name": "get_weather"}}]}),
                    chunk({}, "tool_calls")])
    events = run(chat_stream(body), raw)
    final = events[-1]["response"]
    assert final["output"] == [{"type": "function_call", "id": "fc_s1_0", "status": "completed",
                                "call_id": "call_s1_0", "name": "get_weather", "arguments": "{}"}]
    assert "usage" not in final


def test_length_gives_response_incomplete():
    body = req(tools=[WEATHER], max_output_tokens=16)
    raw = chat_sse([chunk({"content": "Sure"}),
                    chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "get_weather", "arguments": "{\"ci"}}]}),
                    chunk({}, "length"), chunk(usage={"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19})])
    events = run(chat_stream(body), raw)
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [(i["type"], i["status"]) for i in final["response"]["output"]] == [("message", "completed"),
                                                                              ("function_call", "incomplete")]
    expected = rs.from_chat_response({"choices": [{"finish_reason": "length", "message": {"content": "Sure", "tool_calls": [
        {"id": "c", "function": {"name": "get_weather", "arguments": "{\"ci"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19}}, body, "resp_s1", CREATED)
    assert final["response"] == expected


def test_an_empty_stream_answer_is_one_empty_message():
    body = req()
    events = run(chat_stream(body), chat_sse([chunk({"role": "assistant", "content": ""}), chunk({}, "stop")]))
    expected = rs.from_chat_response({"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}, body,
                                     "resp_s1", CREATED)
    assert without_completed_at(events[-1]["response"]) == without_completed_at(expected)


def test_eof_after_finish_without_done_completes():
    events = run(chat_stream(req()), chat_sse([chunk({"content": "ok"}), chunk({}, "stop")], done=False))
    assert events[-1]["type"] == "response.completed"


@pytest.mark.parametrize("raw", [
    chat_sse([chunk({"content": "Hel"})], done=False),
    chat_sse([chunk({"content": "Hel"})], done=True),
    b"",
])  # fmt: skip
def test_a_cut_stream_fails(raw):
    conv = chat_stream(req())
    events = run(conv, raw)
    assert types(events)[:2] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error",
                                               "message": "the provider closed the stream before it finished"}
    assert conv.finished and conv.error == "the provider closed the stream before it finished"
    assert all(i["status"] == "incomplete" for i in events[-1]["response"]["output"])


def test_an_upstream_error_event_fails_the_response():
    conv = chat_stream(req())
    raw = chat_sse([chunk({"content": "Hel"}),
                    {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}], done=False)
    events = run(conv, raw)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "rate_limit_exceeded", "message": "Rate limit reached"}
    assert conv.feed(chat_sse([chunk({"content": "more"})])) == b"" and conv.end() == b""


def test_failed_mid_stream_closes_items_and_ends():
    conv = chat_stream(req(tools=[WEATHER]))
    out = conv.feed(chat_sse([chunk({"content": "Hi"}), chunk({"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "get_weather", "arguments": "{"}}]})], done=False))
    out += conv.failed("read timed out after 30 s")
    assert conv.failed("again") == b"" and conv.end() == b""
    events = conformance.validate_response_sse(out.decode())
    assert types(events)[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                                  "response.failed"]
    assert events[-1]["type"] == "response.failed" and conv.error == "read timed out after 30 s"
    assert [(i["type"], i["status"]) for i in events[-1]["response"]["output"]] == [
        ("message", "completed"), ("function_call", "incomplete")]
    assert "response.completed" not in types(events)


def test_custom_tool_calls_stream_their_unwrapped_input():
    body = req(tools=[{"type": "custom", "name": "apply_patch", "description": "patch"}])
    raw = chat_sse([chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "apply_patch", "arguments": "{\"inp"}}]}),
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ut\":\"*** Begin\"}"}}]}),
                    chunk({}, "tool_calls")])
    events = run(chat_stream(body), raw)
    assert [e for e in events if e["type"].startswith("response.custom_tool_call_input")] == [
        {"type": "response.custom_tool_call_input.delta", "item_id": "fc_s1_0", "output_index": 0,
         "delta": "*** Begin", "sequence_number": 3},
        {"type": "response.custom_tool_call_input.done", "item_id": "fc_s1_0", "output_index": 0,
         "input": "*** Begin", "sequence_number": 4}]
    assert events[-1]["response"]["output"][0]["input"] == "*** Begin"


def test_tokens_for_the_audit_row():
    conv = chat_stream(req())
    run(conv, chat_sse([chunk({"content": "x"}), chunk({}, "stop"), chunk(usage={
        "prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 2}})]))
    assert conv.tokens() == (9, 4, 2) and conv.response["status"] == "completed"
    assert chat_stream(req()).tokens() == (None, None, None)


# --- Anthropic ----------------------------------------------------------------------------------------------


def a_start(input_tokens=10) -> dict:
    return {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                                                 "content": [], "stop_reason": None, "usage": {
                                                     "input_tokens": input_tokens, "output_tokens": 1,
                                                     "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}}}


def block(i, b) -> dict:
    return {"type": "content_block_start", "index": i, "content_block": b}


def delta(i, d) -> dict:
    return {"type": "content_block_delta", "index": i, "delta": d}


def stop(i) -> dict:
    return {"type": "content_block_stop", "index": i}


def a_end(reason="end_turn", output_tokens=7) -> list[dict]:
    return [{"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
             "usage": {"output_tokens": output_tokens}}, {"type": "message_stop"}]


def test_anthropic_stream_thinking_text_and_tools():
    body = req(tools=[WEATHER])
    raw = anthropic_sse([
        a_start(), {"type": "ping"},
        block(0, {"type": "thinking", "thinking": "", "signature": ""}), delta(0, {"type": "thinking_delta", "thinking": "Paris."}),
        delta(0, {"type": "signature_delta", "signature": "sig"}), stop(0),
        block(1, {"type": "text", "text": ""}), delta(1, {"type": "text_delta", "text": "A"}), stop(1),
        block(2, {"type": "text", "text": ""}), delta(2, {"type": "text_delta", "text": "B"}), stop(2),
        block(3, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
        delta(3, {"type": "input_json_delta", "partial_json": "{\"city\": "}),
        delta(3, {"type": "input_json_delta", "partial_json": "\"Paris\"}"}), stop(3),
        block(4, {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}), stop(4),
        *a_end("tool_use")])
    events = same_at_every_cut(lambda: anthropic_stream(body), raw)
    assert types(events)[:9] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done",
        "response.output_item.done", "response.output_item.added"]
    parts = [(e["output_index"], e["content_index"]) for e in events if e["type"] == "response.content_part.added"]
    assert parts == [(0, 0), (1, 0), (1, 1)]
    expected = rs.from_anthropic_response({"content": [
        {"type": "thinking", "thinking": "Paris.", "signature": "sig"}, {"type": "text", "text": "A"},
        {"type": "text", "text": "B"}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}], "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 0}}, body, "resp_s1", CREATED)
    final = events[-1]["response"]
    # the streamed arguments are the model's own text; the non-streamed ones are re-serialised JSON
    final["output"][2]["arguments"] = json.dumps(json.loads(final["output"][2]["arguments"]), separators=(",", ":"))
    assert without_completed_at(final) == without_completed_at(expected)
    assert final["output"][3]["arguments"] == "{}"


def test_anthropic_max_tokens_is_incomplete():
    raw = anthropic_sse([a_start(), block(0, {"type": "text", "text": ""}), delta(0, {"type": "text_delta", "text": "cut"}),
                         stop(0), *a_end("max_tokens")])
    events = run(anthropic_stream(req()), raw)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"


def test_anthropic_error_event_and_cut_stream_fail():
    conv = anthropic_stream(req())
    raw = anthropic_sse([a_start(), block(0, {"type": "text", "text": ""}), delta(0, {"type": "text_delta", "text": "x"}),
                         {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}])
    events = run(conv, raw)
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "Overloaded"}
    assert conv.error == "Overloaded"
    conv = anthropic_stream(req())
    events = run(conv, anthropic_sse([a_start(), block(0, {"type": "text", "text": ""})]))
    assert events[-1]["type"] == "response.failed" and conv.error.startswith("the provider closed")
    assert conv.tokens() == (110, 1, 100)


def test_failed_takes_an_upstream_error_as_the_relay_passes_it():
    from mlxgw.backends.base import UpstreamStatusError

    conv = chat_stream(req())
    conv.feed(chat_sse([chunk({"content": "Hi"})], done=False))
    out = conv.failed(UpstreamStatusError("p", 429, b"slow down"))
    event = conformance.parse_response_sse(out.decode())[-1][1]
    assert event["type"] == "response.failed" and event["response"]["error"]["code"] == "rate_limit_exceeded"
    assert conv.error == event["response"]["error"]["message"] and conv.finished


def test_logprobs_come_back_when_included():
    body = req(include=["message.output_text.logprobs"], top_logprobs=1)
    assert rs.to_chat_request(body, "b")["logprobs"] is True and rs.to_chat_request(body, "b")["top_logprobs"] == 1

    def lp(token, value):
        return {"content": [{"token": token, "logprob": value, "bytes": list(token.encode()),
                             "top_logprobs": [{"token": token, "logprob": value, "bytes": list(token.encode())}]}]}

    raw = chat_sse([{**chunk({"content": "Hi"}), "choices": [{"index": 0, "delta": {"content": "Hi"},
                                                             "logprobs": lp("Hi", -0.1), "finish_reason": None}]},
                    {**chunk({"content": "!"}), "choices": [{"index": 0, "delta": {"content": "!"},
                                                            "logprobs": lp("!", -0.5), "finish_reason": None}]},
                    chunk({}, "stop")])
    events = run(chat_stream(body), raw)
    deltas = [e["logprobs"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == [[{"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1}]}],
                      [{"token": "!", "logprob": -0.5, "top_logprobs": [{"token": "!", "logprob": -0.5}]}]]
    merged = {"content": lp("Hi", -0.1)["content"] + lp("!", -0.5)["content"]}
    expected = rs.from_chat_response({"choices": [{"message": {"content": "Hi!"}, "logprobs": merged,
                                                   "finish_reason": "stop"}]}, body, "resp_s1", CREATED)
    assert without_completed_at(events[-1]["response"]) == without_completed_at(expected)
    assert [e["token"] for e in expected["output"][0]["content"][0]["logprobs"]] == ["Hi", "!"]
