"""The Responses dialect, pure functions: the request check, the translation onto chat completions and
Anthropic Messages and back, each asserting the exact output; every Response validated against the
vendored schema (tests/data/openai-responses.schema.json). Streams: tests/test_dialect_responses_streams.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlxgw.dialects import responses as rs
from mlxgw.dialects.responses.tools import flat_name
from tests import conformance

CODEX = Path(__file__).parent / "data" / "codex_request.json"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": True}  # fmt: skip


def parse(**body) -> dict:
    return rs.parse_request(json.dumps(body).encode())


def refused(raw, **kw) -> rs.RequestError:
    with pytest.raises(rs.RequestError) as info:
        rs.parse_request(raw if isinstance(raw, bytes) else json.dumps(raw).encode(), **kw)
    return info.value


# --- parse_request ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body, param, code", [
    (b"{not json", None, "invalid_json"),
    (b"[1]", None, "invalid_json"),
    ({"input": "hi"}, "model", "missing_required_parameter"),
    ({"model": "", "input": "hi"}, "model", "invalid_type"),
    ({"model": "m"}, "input", "missing_required_parameter"),
    ({"model": "m", "input": 3}, "input", "invalid_type"),
    ({"model": "m", "input": []}, "input", "empty_array"),
    ({"model": "m", "input": [{"type": "bogus"}]}, "input[0].type", "invalid_value"),
    ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role", "invalid_value"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text",
     "invalid_type"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type",
     "invalid_value"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "input[0].content[0].image_url", "missing_required_parameter"),
    ({"model": "m", "input": ["hi", {"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0]",
     "invalid_type"),
    ({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id",
     "invalid_type"),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
     "input[0].arguments", "invalid_type"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}, "input[0].output",
     "invalid_type"),
    ({"model": "m", "input": "hi", "instructions": 5}, "instructions", "invalid_type"),
    ({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_tool_type"),
    ({"model": "m", "input": "hi", "tools": [WEATHER, {"type": "code_interpreter", "container": {}}]},
     "tools[1].type", "unsupported_tool_type"),
    ({"model": "m", "input": "hi", "tools": [{"type": "function", "parameters": {}}]}, "tools[0].name", "invalid_type"),
    ({"model": "m", "input": "hi", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "file_search"}]}]},
     "tools[0].tools[0].type", "unsupported_tool_type"),
    ({"model": "m", "input": "hi", "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"model": "m", "input": "hi", "tool_choice": {"type": "web_search_preview"}}, "tool_choice.type",
     "unsupported_tool_type"),
    ({"model": "m", "input": "hi", "max_output_tokens": 8}, "max_output_tokens", "integer_below_min_value"),
    ({"model": "m", "input": "hi", "max_output_tokens": "100"}, "max_output_tokens", "invalid_type"),
    ({"model": "m", "input": "hi", "temperature": 2.5}, "temperature", "invalid_value"),
    ({"model": "m", "input": "hi", "top_p": True}, "top_p", "invalid_value"),
    ({"model": "m", "input": "hi", "stream": "yes"}, "stream", "invalid_type"),
    ({"model": "m", "input": "hi", "store": 1}, "store", "invalid_type"),
    ({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name",
     "missing_required_parameter"),
    ({"model": "m", "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format.type", "invalid_value"),
    ({"model": "m", "input": "hi", "reasoning": {"effort": 3}}, "reasoning.effort", "invalid_type"),
    ({"model": "m", "input": "hi", "metadata": {str(i): "v" for i in range(17)}}, "metadata", "invalid_value"),
    ({"model": "m", "input": "hi", "metadata": {"k": 1}}, "metadata", "invalid_value"),
    ({"model": "m", "input": "hi", "truncation": "middle"}, "truncation", "invalid_value"),
    ({"model": "m", "input": "hi", "include": "usage"}, "include", "invalid_type"),
    ({"model": "m", "input": "hi", "previous_response_id": 7}, "previous_response_id", "invalid_type"),
    ({"model": "m", "input": "hi", "conversation": "conv_1"}, "conversation", "unsupported_parameter"),
    ({"model": "m", "input": "hi", "background": True}, "background", "unsupported_parameter"),
])  # fmt: skip
def test_bad_requests_name_the_field(body, param, code):
    err = refused(body)
    assert (err.param, err.code, err.status) == (param, code, 400)
    assert err.message


def test_builtin_tools_pass_when_the_caller_allows_them():
    body = {"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}
    assert rs.parse_request(json.dumps(body).encode(), allow_builtin_tools=True)["tools"] == [{"type": "web_search"}]
    assert "web_search" in refused(body).message


def test_a_full_request_is_accepted_as_sent():
    body = {"model": "m", "input": [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "phase": "final_answer",
         "content": [{"type": "output_text", "text": "ok", "annotations": []}, {"type": "refusal", "refusal": "no"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": None, "encrypted_content": "gAAAA"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "id": "fc_1"},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "r"}]},
        {"type": "item_reference", "id": "msg_0"},
        {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}],
        "instructions": "sys", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False, "text": {"format": {"type": "json_object"}, "verbosity": "low"},
        "reasoning": {"effort": "ultra", "summary": "auto"}, "max_output_tokens": 16, "temperature": 0,
        "top_p": 1, "metadata": {"k": "v"}, "user": "u", "safety_identifier": "s", "prompt_cache_key": "p",
        "store": False, "previous_response_id": "resp_1", "include": ["reasoning.encrypted_content"],
        "truncation": "auto", "stream": True, "client_metadata": {"x": 1}}  # fmt: skip
    assert rs.parse_request(json.dumps(body).encode()) == body


def test_input_items_are_typed_and_carry_ids():
    items = rs.input_items(parse(model="m", input=[
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "id": "fc_given"},
        {"type": "function_call_output", "call_id": "c", "output": "r"}, {"type": "item_reference", "id": "msg_x"}]))
    assert [(i["type"], i.get("role")) for i in items] == [("message", "user"), ("message", "assistant"),
                                                           ("function_call", None), ("function_call_output", None),
                                                           ("item_reference", None)]
    assert items[0]["content"] == [{"type": "input_text", "text": "hi"}]
    assert items[1]["content"] == [{"type": "output_text", "text": "yo", "annotations": [], "logprobs": []}]
    assert items[0]["id"].startswith("msg_") and items[3]["id"].startswith("fco_") and items[2]["id"] == "fc_given"
    assert "id" in items[4] and items[4]["id"] == "msg_x"
    one = rs.input_items(parse(model="m", input="hello"))
    assert one[0]["content"] == [{"type": "input_text", "text": "hello"}] and one[0]["role"] == "user"


def test_item_references_resolve_or_404():
    items = [{"type": "item_reference", "id": "msg_a"}, {"type": "message", "role": "user", "content": []}]
    assert rs.item_references(items) == ["msg_a"]
    stored = {"type": "message", "id": "msg_a", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    assert rs.resolve_references(items, {"msg_a": stored})[0] is stored
    with pytest.raises(rs.RequestError) as info:
        rs.resolve_references(items, {})
    assert (info.value.status, info.value.param) == (404, "input")


# --- Responses -> chat completions --------------------------------------------------------------------


def test_chat_request_from_a_string_with_instructions_and_options():
    body = parse(model="client-name", input="Weather in Paris?", instructions="Be brief.", tools=[WEATHER],
                 tool_choice="required", parallel_tool_calls=False, temperature=0.2, top_p=0.9,
                 max_output_tokens=300, reasoning={"effort": "xhigh"}, metadata={"k": "v"}, store=True,
                 user="u1", prompt_cache_key="p", include=["message.output_text.logprobs"], truncation="auto",
                 text={"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
                 stream=True)
    assert rs.to_chat_request(body, "qwen3") == {
        "model": "qwen3",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["parameters"],
                                                    "description": "Current weather", "strict": True}}],
        "tool_choice": "required", "parallel_tool_calls": False, "temperature": 0.2, "top_p": 0.9,
        "max_tokens": 300,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"},
                                                                   "strict": True}},
        "reasoning_effort": "high", "logprobs": True, "stream": True, "stream_options": {"include_usage": True}}


def test_chat_request_options_spelled_for_openai_and_defaults_left_out():
    body = parse(model="m", input="hi", max_output_tokens=64, user="u1", reasoning={"effort": "none"},
                 text={"format": {"type": "json_object"}}, top_logprobs=3)
    assert rs.to_chat_request(body, "gpt-x", max_tokens_field="max_completion_tokens", forward_user=True) == {
        "model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 64,
        "response_format": {"type": "json_object"}, "logprobs": True, "top_logprobs": 3, "user": "u1"}


def test_chat_messages_from_items():
    body = parse(model="m", instructions="I", input=[
        {"role": "developer", "content": "D1"},
        {"role": "system", "content": [{"type": "input_text", "text": "S1"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "original"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "9C"}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"role": "developer", "content": "late"},
        {"role": "user", "content": "and now?"}], tools=[WEATHER])
    assert rs.to_chat_request(body, "b")["messages"] == [
        {"role": "system", "content": "I\n\nD1\n\nS1"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA",
                                                                         "detail": "high"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "9C"},
        {"role": "user", "content": "[developer] late"},
        {"role": "user", "content": "and now?"}]


def test_an_orphan_tool_output_is_refused():
    body = parse(model="m", input=[{"role": "user", "content": "hi"},
                                   {"type": "function_call_output", "call_id": "nope", "output": "x"}])
    with pytest.raises(rs.RequestError) as info:
        rs.to_chat_request(body, "b")
    assert info.value.param == "input" and "nope" in info.value.message
    with pytest.raises(rs.RequestError):
        rs.to_anthropic_request(body, "claude")


def test_image_by_file_id_and_input_file_without_data_are_refused():
    for part, param in (({"type": "input_image", "file_id": "file_1"}, "input[0].content[0].file_id"),
                        ({"type": "input_file", "file_id": "file_1"}, "input[0].content[0].file_data")):
        body = parse(model="m", input=[{"role": "user", "content": [part]}])
        with pytest.raises(rs.RequestError) as info:
            rs.to_chat_request(body, "b")
        assert info.value.param == param


def test_namespace_and_custom_tools_flatten_and_come_back():
    tools = [{"type": "namespace", "name": "multi_agent_v1", "description": "",
              "tools": [{"type": "function", "name": "wait_agent", "parameters": {"type": "object", "properties": {}},
                         "strict": False}]},
             {"type": "custom", "name": "apply_patch", "description": "Patch files",
              "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}]
    body = parse(model="m", tools=tools, input=[
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c1", "name": "wait_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "ok"}])
    chat = rs.to_chat_request(body, "b")
    assert [t["function"]["name"] for t in chat["tools"]] == ["multi_agent_v1__wait_agent", "apply_patch"]
    custom = chat["tools"][1]["function"]
    assert custom["parameters"]["required"] == ["input"] and "start: /.+/" in custom["description"]
    assert chat["messages"][1]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__wait_agent"
    assert chat["messages"][3]["tool_calls"][0]["function"] == {"name": "apply_patch",
                                                                "arguments": "{\"input\":\"*** Begin Patch\"}"}
    completion = {"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "multi_agent_v1__wait_agent", "arguments": "{}"}},
        {"id": "call_b", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"P\"}"}}]}}]}
    resp = rs.from_chat_response(completion, body, "resp_ns", 5)
    conformance.validate_response(resp)
    assert resp["output"] == [
        {"type": "function_call", "id": "fc_ns_0", "status": "completed", "call_id": "call_a", "name": "wait_agent",
         "arguments": "{}", "namespace": "multi_agent_v1"},
        {"type": "custom_tool_call", "id": "fc_ns_1", "status": "completed", "call_id": "call_b", "name": "apply_patch",
         "input": "P"}]


def test_long_names_are_shortened_deterministically():
    long = "n" * 40
    assert flat_name("f" * 30, long) == flat_name("f" * 30, long)
    assert len(flat_name("f" * 30, long)) <= 64 and flat_name("f", "ns") == "ns__f"


def test_tool_choice_naming_an_unknown_tool_is_refused():
    body = parse(model="m", input="hi", tools=[WEATHER], tool_choice={"type": "function", "name": "nope"})
    with pytest.raises(rs.RequestError) as info:
        rs.to_chat_request(body, "b")
    assert info.value.param == "tool_choice.name"


def test_allowed_tools_narrow_the_list():
    other = {**WEATHER, "name": "other"}
    body = parse(model="m", input="hi", tools=[WEATHER, other],
                 tool_choice={"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "other"}]})
    chat = rs.to_chat_request(body, "b")
    assert [t["function"]["name"] for t in chat["tools"]] == ["other"] and chat["tool_choice"] == "required"


# --- chat completion -> Response ------------------------------------------------------------------------


def completion(message: dict, finish="stop", usage=None) -> dict:
    out = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "b",
           "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def test_response_from_a_text_completion_echoes_the_request():
    req = parse(model="client-name", input="hi", instructions="Be brief.", temperature=0.5, metadata={"k": "v"},
                user="u1", max_output_tokens=100, previous_response_id="resp_prev", store=False)
    chat = completion({"content": "Hello!"}, usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                                                    "prompt_tokens_details": {"cached_tokens": 4},
                                                    "completion_tokens_details": {"reasoning_tokens": 1}})
    resp = rs.from_chat_response(chat, req, "resp_abc", 1796000000, completed_at=1796000002)
    conformance.validate_response(resp)
    assert resp == {
        "id": "resp_abc", "object": "response", "created_at": 1796000000, "status": "completed", "background": False,
        "completed_at": 1796000002, "error": None, "incomplete_details": None, "instructions": "Be brief.",
        "max_output_tokens": 100, "model": "client-name",
        "output": [{"type": "message", "id": "msg_abc_0", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}]}],
        "parallel_tool_calls": True, "previous_response_id": "resp_prev",
        "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": 0.5,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled", "metadata": {"k": "v"}, "user": "u1",
        "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                  "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 15}}


def test_response_with_reasoning_text_and_calls():
    req = parse(model="m", input="weather?", tools=[WEATHER])
    chat = completion({"content": "Let me check.", "reasoning_content": "The user wants weather.", "tool_calls": [
        {"id": "call_P", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}, "tool_calls")
    resp = rs.from_chat_response(chat, req, "resp_r", 7)
    conformance.validate_response(resp)
    assert resp["output"] == [
        {"type": "reasoning", "id": "rs_r_0", "status": "completed", "summary": [],
         "content": [{"type": "reasoning_text", "text": "The user wants weather."}]},
        {"type": "message", "id": "msg_r_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_r_2", "status": "completed", "call_id": "call_P", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "id": "fc_r_3", "status": "completed", "call_id": "call_r_1", "name": "get_weather",
         "arguments": "{\"city\":\"Oslo\"}"}]
    assert "usage" not in resp and resp["tools"] == [WEATHER]


@pytest.mark.parametrize("finish, usage, status, reason", [
    ("length", None, "incomplete", "max_output_tokens"),
    ("content_filter", None, "incomplete", "content_filter"),
    ("stop", {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21}, "incomplete", "max_output_tokens"),
    ("stop", {"prompt_tokens": 5, "completion_tokens": 15, "total_tokens": 20}, "completed", None),
    ("eos", None, "completed", None),
])  # fmt: skip
def test_status_from_finish_reason(finish, usage, status, reason):
    req = parse(model="m", input="hi", max_output_tokens=16)
    resp = rs.from_chat_response(completion({"content": "partial"}, finish, usage), req, "resp_s", 1)
    conformance.validate_response(resp)
    assert resp["status"] == status
    assert resp["incomplete_details"] == ({"reason": reason} if reason else None)
    assert resp["output"][0]["status"] == ("completed" if status == "completed" else "incomplete")
    assert resp["completed_at"] == (1 if status == "completed" else None)


def test_a_call_cut_by_max_tokens_is_incomplete():
    req = parse(model="m", input="hi", tools=[WEATHER])
    chat = completion({"content": "Sure", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{\"ci"}}]}, "length")
    resp = rs.from_chat_response(chat, req, "resp_t", 1)
    conformance.validate_response(resp)
    assert [(i["type"], i["status"]) for i in resp["output"]] == [("message", "completed"),
                                                                  ("function_call", "incomplete")]
    assert resp["status"] == "incomplete"


def test_an_empty_answer_is_one_empty_message():
    req = parse(model="m", input="hi")
    for message in ({"content": ""}, {"content": None}):
        resp = rs.from_chat_response(completion(message), req, "resp_e", 1)
        conformance.validate_response(resp)
        assert resp["output"] == [{"type": "message", "id": "msg_e_0", "status": "completed", "role": "assistant",
                                   "content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}]}]


def test_a_refusal_is_a_refusal_part():
    resp = rs.from_chat_response(completion({"content": None, "refusal": "I can't."}), parse(model="m", input="x"),
                                 "resp_f", 1)
    conformance.validate_response(resp)
    assert resp["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't."}]


def test_a_tool_call_round_trip_through_history():
    """Turn 1 asks, the model calls; turn 2 sends only the output with previous_response_id: the history the
    caller rebuilt (turn 1's input items + output items) makes the backend see the whole conversation."""
    req1 = parse(model="m", input="Weather in Paris?", instructions="Old instructions", tools=[WEATHER])
    resp1 = rs.from_chat_response(completion({"content": None, "tool_calls": [
        {"id": "call_P", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        "tool_calls"), req1, "resp_one", 1)
    history = rs.input_items(req1) + resp1["output"]
    req2 = parse(model="m", previous_response_id="resp_one", tools=[WEATHER], instructions="New instructions",
                 input=[{"type": "function_call_output", "call_id": "call_P", "output": "18C"}])
    assert rs.to_chat_request(req2, "b", history)["messages"] == [
        {"role": "system", "content": "New instructions"},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_P", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_P", "content": "18C"}]
    an = rs.to_anthropic_request(req2, "claude", history)
    assert an["system"] == [{"type": "text", "text": "New instructions"}]
    assert an["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_P", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_P", "content": "18C"}]}]
    resp2 = rs.from_chat_response(completion({"content": "18C in Paris."}), req2, "resp_two", 2)
    conformance.validate_response(resp2)
    assert resp2["previous_response_id"] == "resp_one" and resp2["instructions"] == "New instructions"


# --- Anthropic ------------------------------------------------------------------------------------------


def test_anthropic_request_from_items():
    body = parse(model="m", instructions="I", tools=[WEATHER], tool_choice="auto", parallel_tool_calls=False,
                 temperature=1.5, top_p=0.5, safety_identifier="user-123", stream=True, input=[
                     {"role": "developer", "content": "D"},
                     {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                                  {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
                     {"role": "assistant", "content": "Checking."},
                     {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": ""},
                     {"type": "function_call_output", "call_id": "toolu_1", "output": "18C"},
                     {"role": "user", "content": "thanks"}])
    assert rs.to_anthropic_request(body, "claude-x") == {
        "model": "claude-x", "max_tokens": 4096,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                                         {"type": "text", "text": "thanks"}]}],
        "system": [{"type": "text", "text": "I\n\nD"}],
        "temperature": 1.0,
        "tools": [{"name": "get_weather", "input_schema": WEATHER["parameters"], "description": "Current weather"}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-123"}, "stream": True}


def test_anthropic_request_thinking_and_max_tokens():
    body = parse(model="m", input="think", reasoning={"effort": "medium"}, max_output_tokens=2000, temperature=0.3,
                 text={"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}})
    out = rs.to_anthropic_request(body, "claude-x")
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert out["max_tokens"] == 6096 and "temperature" not in out
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert rs.to_anthropic_request(parse(model="m", input="x"), "c", default_max_tokens=1234)["max_tokens"] == 1234


def message(content, stop="end_turn", usage=None) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": content,
            "stop_reason": stop, "stop_sequence": None,
            "usage": usage or {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
                               "cache_creation_input_tokens": 20}}


def test_response_from_an_anthropic_message():
    tools = [WEATHER, {"type": "namespace", "name": "ns", "description": "", "tools": [
        {"type": "function", "name": "f", "parameters": None, "strict": None}]}]
    req = parse(model="claude-client", input="hi", tools=tools)
    msg = message([{"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                   {"type": "redacted_thinking", "data": "xx"},
                   {"type": "text", "text": "A"}, {"type": "text", "text": "B"},
                   {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                   {"type": "tool_use", "id": "toolu_2", "name": "ns__f", "input": {}}], "tool_use")
    resp = rs.from_anthropic_response(msg, req, "resp_an", 3)
    conformance.validate_response(resp)
    assert resp["output"] == [
        {"type": "reasoning", "id": "rs_an_0", "status": "completed", "summary": [],
         "content": [{"type": "reasoning_text", "text": "Hmm."}]},
        {"type": "message", "id": "msg_an_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "A", "annotations": [], "logprobs": []},
                     {"type": "output_text", "text": "B", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_an_2", "status": "completed", "call_id": "toolu_1", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "id": "fc_an_3", "status": "completed", "call_id": "toolu_2", "name": "f",
         "arguments": "{}", "namespace": "ns"}]
    assert resp["usage"] == {"input_tokens": 130, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20},
                             "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 135}
    assert resp["status"] == "completed" and resp["model"] == "claude-client"


@pytest.mark.parametrize("stop, status, reason", [
    ("end_turn", "completed", None), ("stop_sequence", "completed", None), ("pause_turn", "completed", None),
    ("max_tokens", "incomplete", "max_output_tokens"),
    ("model_context_window_exceeded", "incomplete", "max_output_tokens"),
    ("refusal", "incomplete", "content_filter")])  # fmt: skip
def test_anthropic_stop_reasons(stop, status, reason):
    resp = rs.from_anthropic_response(message([{"type": "text", "text": "partial"}], stop), parse(model="m", input="x"),
                                      "resp_x", 1)
    conformance.validate_response(resp)
    assert (resp["status"], resp["incomplete_details"]) == (status, {"reason": reason} if reason else None)
    assert resp["output"][0]["status"] == ("completed" if status == "completed" else "incomplete")


def test_an_empty_anthropic_answer_is_one_empty_message():
    resp = rs.from_anthropic_response(message([]), parse(model="m", input="x"), "resp_x", 1)
    conformance.validate_response(resp)
    assert [i["type"] for i in resp["output"]] == ["message"] and resp["output"][0]["content"][0]["text"] == ""


# --- Codex ----------------------------------------------------------------------------------------------


def test_a_real_codex_request_translates():
    """tests/data/codex_request.json: what `codex exec` 0.171.0 sent on the second turn of a run with one
    exec_command call (configured with web_search = "disabled")."""
    raw = CODEX.read_bytes()
    body = rs.parse_request(raw)
    assert body["store"] is False and body["stream"] is True
    assert [i.get("type") for i in body["input"]][-3:] == ["reasoning", "function_call", "function_call_output"]
    chat = rs.to_chat_request(body, "qwen3")
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "user", "assistant", "tool"]
    assert chat["messages"][3]["tool_calls"][0]["function"]["name"] == "exec_command"
    assert chat["messages"][4]["tool_call_id"] == chat["messages"][3]["tool_calls"][0]["id"]
    names = [t["function"]["name"] for t in chat["tools"]]
    assert "exec_command" in names and "multi_agent_v1__wait_agent" in names
    assert chat["stream_options"] == {"include_usage": True} and chat["tool_choice"] == "auto"
    an = rs.to_anthropic_request(body, "claude-x")
    assert [m["role"] for m in an["messages"]] == ["user", "assistant", "user"]
    assert an["messages"][1]["content"][-1]["type"] == "tool_use" and an["max_tokens"] == 4096
    # The same request as Codex sends it by default, with its web_search tool: a 400 naming the type.
    default = json.loads(raw)
    default["tools"].append({"type": "web_search", "external_web_access": True})
    err = refused(default)
    assert err.param == f"tools[{len(default['tools']) - 1}].type" and "web_search" in err.message
    assert rs.parse_request(json.dumps(default).encode(), allow_builtin_tools=True)["tools"][-1]["type"] == "web_search"


def test_not_found_errors_as_openai_gives_them():
    from mlxgw.dialects.openai import error_body

    err = rs.previous_response_not_found("resp_gone")
    body = error_body(err.message, err.status, param=err.param, code=err.code)
    conformance.validate_responses("ErrorResponse", body)
    assert body == {"error": {"message": "Previous response with id 'resp_gone' not found.",
                              "type": "invalid_request_error", "param": "previous_response_id",
                              "code": "previous_response_not_found"}}
    err = rs.response_not_found("resp_gone")
    assert error_body(err.message, err.status, param=err.param, code=err.code) == {"error": {
        "message": "Response with id 'resp_gone' not found.", "type": "invalid_request_error", "param": None,
        "code": None}}
    assert rs.deleted("resp_1") == {"id": "resp_1", "object": "response", "deleted": True}


# --- pass-through to OpenAI ---------------------------------------------------------------------------------


def test_passthrough_keeps_the_state_at_the_gateway():
    """A conversation started on a local backend continues on OpenAI: the history goes in `input`,
    OpenAI stores nothing, foreign reasoning and gateway ids are left out, the answer echoes the client."""
    req1 = parse(model="m", input="one")
    resp1 = rs.from_chat_response(completion({"content": "A", "reasoning_content": "local thoughts"}), req1, "resp_1", 1)
    history = rs.input_items(req1) + resp1["output"] + [
        {"type": "reasoning", "id": "rs_openai", "summary": [], "encrypted_content": "gAAAA-opaque"}]
    req2 = parse(model="client-model", input="two", previous_response_id="resp_1", include=["message.output_text.logprobs"],
                 client_metadata={"x": "y"})
    up = rs.passthrough.to_openai_request(req2, "gpt-5.5", history)
    assert up == {"model": "gpt-5.5", "store": False, "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
                  "input": [
                      {"type": "message", "role": "user", "status": "completed",
                       "content": [{"type": "input_text", "text": "one"}]},
                      {"type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": "A", "annotations": [], "logprobs": []}]},
                      {"type": "reasoning", "id": "rs_openai", "summary": [], "encrypted_content": "gAAAA-opaque"},
                      {"type": "message", "role": "user", "status": "completed",
                       "content": [{"type": "input_text", "text": "two"}]}]}
    assert "previous_response_id" in req2  # the client's dict is untouched
    theirs = rs.from_chat_response(completion({"content": "B"}), {**up, "input": "x"}, "resp_oa", 2)
    mine = rs.passthrough.from_openai_response(theirs, req2)
    assert (mine["model"], mine["store"], mine["previous_response_id"]) == ("client-model", True, "resp_1")
    conformance.validate_response(mine)
    event = rs.passthrough.from_openai_event({"type": "response.completed", "response": theirs, "sequence_number": 9}, req2)
    assert event["response"] == mine
    delta = {"type": "response.output_text.delta", "delta": "B"}
    assert rs.passthrough.from_openai_event(delta, req2) is delta


def test_allowed_builtin_tools_never_reach_a_translated_backend():
    """The caller may choose to accept built-in tools (allow_builtin_tools) and translate anyway: they are
    left out of the backend's tools, and a tool_choice forcing one is a 400 naming it."""
    body = rs.parse_request(json.dumps({"model": "m", "input": "hi", "tools": [WEATHER, {"type": "web_search"}]}).encode(),
                            allow_builtin_tools=True)
    assert [t["function"]["name"] for t in rs.to_chat_request(body, "b")["tools"]] == ["get_weather"]
    assert [t["name"] for t in rs.to_anthropic_request(body, "c")["tools"]] == ["get_weather"]
    forced = {**body, "tool_choice": {"type": "web_search"}}
    with pytest.raises(rs.RequestError) as info:
        rs.to_chat_request(forced, "b")
    assert info.value.param == "tool_choice.type"
