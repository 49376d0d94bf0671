"""The OpenAI dialect: request checks, normalisation of deviating backends, SSE parsing, error bodies.
Every normalised body is checked against the conformance schema."""

from __future__ import annotations

import json

import pytest

from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import dumps
from tests import conformance


def test_parse_request_accepts_a_minimal_body():
    body = oa.parse_request(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": 1}')
    assert body["x"] == 1


# Values per field, good and bad, for the fast path's agreement with the full checks below.
_FIELD_VALUES = {
    "model": ["m", "", "  ", 3, None, "x" * 300],
    "messages": [[{"role": "user", "content": "hi"}], [], "hi", ["hi"], [{"content": "x"}],
                 [{"role": "user", "content": [{"type": "text", "text": "t"}]}], [{"role": 1, "content": "x"}],
                 [{"role": "user", "content": "x", "name": 2}], None,
                 # two fields that are not role and content, two-item non-objects, a bad one after a good one
                 [{"role": "user", "name": "x"}], [{"content": "x", "name": "n"}], [["role", "content"]], ["ab"],
                 [{"role": "user", "content": "x"}, 3], [{"role": None, "content": "x"}], [{"role": "user"}]],
    "stream": [True, None, "yes", 1],
    "temperature": [0.5, 1, True, "hot", None],
    "stop": ["x", ["a", "b"], [1], 3],
    "tools": [[{"type": "function", "function": {"name": "f"}}], [1], {}, None],
    "tool_choice": ["auto", {"type": "function", "function": {"name": "f"}}, {"function": {"name": 3}}, 4],
    "response_format": [{"type": "json_object"}, {"type": 3}, "json"],
    "stream_options": [{"include_usage": True}, "x", None],
}


def test_the_fast_check_accepts_only_bodies_the_full_checks_accept():
    # parse_request runs the full checks only when the one-pass `_plain` says no: whatever it accepts must
    # pass them, or an error would be skipped. Every field's values are tried in turn against a body good in
    # all others, and in pairs.
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    bodies = [base, [base], "x", None]
    keys = list(_FIELD_VALUES)
    for i, k in enumerate(keys):
        for v in _FIELD_VALUES[k]:
            bodies.append({**base, k: v})
            for k2 in keys[i + 1:]:
                bodies += [{**base, k: v, k2: v2} for v2 in _FIELD_VALUES[k2]]
    for body in bodies:
        try:
            oa._check_request(body)
            fine = True
        except oa.RequestError:
            fine = False
        if oa._plain(body):
            assert fine, body
    # and it does take the common bodies (else this test would prove nothing)
    assert oa._plain(base) and oa._plain({**base, "stream": True, "temperature": 0.5, "stop": "x"})


@pytest.mark.parametrize("raw,param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'{"messages": [{"role": "user"}]}', "model"),
    (b'{"model": 3, "messages": [{"role": "user"}]}', "model"),
    (b'{"model": "  ", "messages": [{"role": "user"}]}', "model"),
    (b'{"model": "m"}', "messages"),
    (b'{"model": "m", "messages": []}', "messages"),
    (b'{"model": "m", "messages": "hi"}', "messages"),
    (b'{"model": "m", "messages": ["hi"]}', "messages[0]"),
    (b'{"model": "m", "messages": [{"content": "x"}]}', "messages[0].role"),
    (b'{"model": "m", "messages": [{"role": "user"}], "stream": "yes"}', "stream"),
    (b'{"model": "m", "messages": [{"role": "user"}], "stream_options": 1}', "stream_options"),
])
def test_parse_request_names_the_bad_field(raw, param):
    with pytest.raises(oa.RequestError) as e:
        oa.parse_request(raw)
    assert e.value.param == param
    conformance.validate("ErrorResponse", oa.error_body(e.value.message, 400, param=e.value.param, code=e.value.code))


def test_upstream_request_always_asks_for_usage_on_streams():
    body = {"model": "alias", "messages": [], "stream": True}
    out = oa.upstream_request(body, "real")
    assert out["model"] == "real" and out["stream_options"] == {"include_usage": True}
    assert body == {"model": "alias", "messages": [], "stream": True}  # the client's dict is untouched
    assert not oa.wants_usage(body)
    assert "stream_options" not in oa.upstream_request({"model": "a", "messages": []}, "b")
    assert oa.wants_usage({"stream_options": {"include_usage": True}})


def _upstream_request_copying(body: dict, backend_model: str) -> dict:
    """upstream_request as it was before it returned the client's dict itself when nothing changes."""
    out = {**body, "model": backend_model}
    if body.get("stream"):
        opts = body.get("stream_options")
        out["stream_options"] = {**opts, "include_usage": True} if opts else {"include_usage": True}
    return out


_MSGS = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body, backend_model", [
    ({"model": "m", "messages": _MSGS}, "m"),
    ({"model": "m", "messages": _MSGS}, "other"),
    ({"messages": _MSGS, "temperature": 0.5, "model": "m", "max_tokens": 9}, "m"),
    ({"messages": _MSGS, "temperature": 0.5, "model": "m", "max_tokens": 9}, "real"),
    ({"model": "m", "messages": _MSGS, "stream": False}, "m"),
    ({"model": "m", "messages": _MSGS, "stream": False, "stream_options": {"include_usage": False}}, "m"),
    ({"model": "m", "messages": _MSGS, "stream": None}, "m"),
    ({"model": "m", "messages": _MSGS, "stream": True}, "m"),
    ({"model": "m", "messages": _MSGS, "stream": True, "stream_options": None}, "m"),
    ({"model": "m", "messages": _MSGS, "stream": True, "stream_options": {}}, "real"),
    ({"model": "m", "stream_options": {"include_usage": False, "x": 1}, "messages": _MSGS, "stream": True}, "m"),
    ({"model": "m", "messages": [{"role": "developer", "content": "be brief"}, *_MSGS], "n": 2}, "m"),
    ({"model": "m", "messages": _MSGS, "metadata": {"model": "x"}}, "M"),
])
def test_upstream_request_sends_what_a_copy_sent(body, backend_model):
    """It returns the client's dict itself when nothing changes: the bytes sent upstream are the ones the
    copy it used to make serialised to, and the client's dict is never changed."""
    before = json.dumps(body)
    out = oa.upstream_request(body, backend_model)
    assert dumps(out) == dumps(_upstream_request_copying(body, backend_model))
    assert json.dumps(body) == before
    assert (out is body) == (not body.get("stream") and body["model"] == backend_model)


def _developer_to_system_as_it_was(body: dict) -> dict:
    """developer_to_system before its check became a plain loop (the roles through map and methodcaller)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    if not any(isinstance(m, dict) and m.get("role") == "developer" for m in messages):
        return body
    return {**body, "messages": [{**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer"
                                 else m for m in messages]}


@pytest.mark.parametrize("messages", [
    [], [{"role": "user", "content": "u"}], [{"role": "developer", "content": "d"}],
    [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "developer", "content": "d"}],
    [{"role": "user", "content": "u"}, {"content": "no role"}, {"role": "developer", "content": "d"}],
    [{"content": "no role"}, {"role": "user", "content": "u"}],
    ["text", {"role": "developer", "content": "d"}], [None, 3, ["developer"]], [{"role": ["developer"]}],
    [{"role": "Developer", "content": "d"}], "not a list", None,
])
def test_developer_to_system_agrees_with_its_former_self(messages):
    body = {"model": "m", "messages": messages}
    before = json.dumps(body)
    out = oa.developer_to_system(body)
    was = _developer_to_system_as_it_was(body)
    assert out == was and (out is body) == (was is body)
    assert json.dumps(body) == before  # the client's dict is untouched


def test_response_normalises_a_minimal_backend_body():
    out = oa.response({"choices": [{"message": {"content": "hi"}}]}, "m")
    conformance.validate("CreateChatCompletionResponse", out)
    ch = out["choices"][0]
    assert ch["logprobs"] is None and ch["finish_reason"] == "stop" and ch["index"] == 0
    assert ch["message"] == {"role": "assistant", "content": "hi", "refusal": None}
    assert out["object"] == "chat.completion" and out["model"] == "m" and isinstance(out["created"], int)


def test_response_fixes_usage_tool_calls_and_finish_reason():
    out = oa.response({
        "id": "x", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "finish_reason": "tool_use", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": None},
        "system_fingerprint": None,
    }, "m")
    conformance.validate("CreateChatCompletionResponse", out)
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert json.loads(call["function"]["arguments"]) == {"a": 1}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert oa.tokens(out["usage"]) == (3, 2, None)
    assert oa.tokens({"prompt_tokens": 1, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1}}) \
        == (1, 1, 1)


def test_chunk_normalisation_and_usage_stripping():
    raw = {"choices": [{"delta": {"role": "assistant", "content": "a", "tool_calls": None}, "finish_reason": None}],
           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    kept = oa.chunk(raw, "m", "chatcmpl-1", 5, keep_usage=True)
    dropped = oa.chunk(raw, "m", "chatcmpl-1", 5, keep_usage=False)
    for c in (kept, dropped):
        conformance.validate("CreateChatCompletionStreamResponse", c)
        assert c["id"] == "chatcmpl-1" and c["created"] == 5 and c["object"] == "chat.completion.chunk"
    assert kept["usage"]["total_tokens"] == 2 and "usage" not in dropped
    assert oa.chunk({"choices": []}, "m", "i", 1, True)["usage"] is None
    calls = oa.chunk({"choices": [{"delta": {"tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "f", "arguments": None}}]}, "finish_reason": "eos"}]}, "m", "i", 1, False)
    conformance.validate("CreateChatCompletionStreamResponse", calls)
    assert calls["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert calls["choices"][0]["finish_reason"] == "tool_calls"


def test_models_list_conforms():
    conformance.validate("ListModelsResponse", oa.models_list([("a", "p"), ("b", "q")]))


@pytest.mark.parametrize("raw,message", [
    (b'{"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}}', "bad key"),
    (b'{"error": "plain"}', "plain"),
    (b'{"detail": "not found"}', "not found"),
    (b"<html>502 Bad Gateway</html>", "502 Bad Gateway"),
    (b"", "HTTP 503"),
])
def test_upstream_error_passes_the_message_on(raw, message):
    body = oa.upstream_error(503, raw, "up")
    conformance.validate("ErrorResponse", body)
    assert message in body["error"]["message"]


def test_upstream_error_keeps_openai_fields():
    body = oa.upstream_error(401, b'{"error": {"message": "m", "type": "t", "param": null, "code": 7}}', "up")
    assert body == {"error": {"message": "m", "type": "t", "param": None, "code": "7"}}


def test_sse_error_event_conforms():
    raw = oa.sse_error("boom")
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    conformance.validate("ErrorResponse", json.loads(raw[6:]))


STREAM = (b": comment\n\ndata: {\"a\": 1}\n\nevent: x\ndata: {\"b\":\ndata: 2}\r\n\r\n"
          b"data:{\"c\": 3}\r\rdata: [DONE]\n\n")
EXPECTED = [b'{"a": 1}', b'{"b":\n2}', b'{"c": 3}', b"[DONE]"]


def test_sse_parser_whole_stream():
    assert oa.SSEParser().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13])
def test_sse_parser_any_chunk_boundary(size):
    p = oa.SSEParser()
    events = []
    for i in range(0, len(STREAM), size):
        events += p.feed(STREAM[i:i + size])
    events += p.close()
    assert events == EXPECTED


@pytest.mark.parametrize("pieces", [
    [b"data: {\"a\": 1}\n\n", b"data: [DONE]\n\n"],  # one whole event per read: the short cut
    [b"data: a\n\n", b"data: b\n\ndata: c\n\n", b": ping\n\n", b"data: d\n\n\n", b"data: e\r\n\r\n"],
    [b"data: a\n", b"\n", b"data: b\n\n", b"event: x\ndata: c\n\n", b"data: \n\n", b"data:f\n\n"],
    [b"data: a\r", b"\n\r\n", b"data: b\n\n"],  # a held byte: the next whole event takes the long way
])
def test_sse_parser_fed_read_by_read_gives_what_the_whole_stream_gives(pieces):
    p = oa.SSEParser()
    events = []
    for piece in pieces:
        events += p.feed(piece)
    events += p.close()
    whole = oa.SSEParser()
    assert events == whole.feed(b"".join(pieces)) + whole.close()
    assert len(events) >= 2


def test_sse_parser_gives_an_event_once_a_held_carriage_return_completes_it():
    """A read ending in \\r is held whole (the \\n may follow); the event it ended comes out with the next
    read, not with the next event's end."""
    p = oa.SSEParser()
    assert p.feed(b"data: a\r\n\r") == []
    assert p.feed(b"\ndata: b") == [b"a"]
    assert p.feed(b"\r\n\r\n") == [b"b"]


def test_sse_parser_flushes_an_unterminated_event_on_close():
    p = oa.SSEParser()
    assert p.feed(b"data: {\"x\": 1}") == []
    assert p.close() == [b'{"x": 1}']


@pytest.mark.parametrize("body", [
    {"choices": 3},
    {"choices": [{"message": "text"}, "x", {"message": None, "finish_reason": 7}]},
    {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]},
    {"id": 5, "created": "yesterday", "model": None, "usage": "lots"},
])
def test_response_survives_garbage(body):
    conformance.validate("CreateChatCompletionResponse", oa.response(body, "m"))


@pytest.mark.parametrize("body", [
    {"choices": {"a": 1}},
    {"choices": [{"delta": "x"}, {"delta": {"role": "bot", "content": 5, "tool_calls": "no"}}]},
    {"choices": [{"delta": {"tool_calls": [{"function": "f", "type": "other", "id": 1}]}}]},
])
def test_chunk_survives_garbage(body):
    conformance.validate("CreateChatCompletionStreamResponse", oa.chunk(body, "m", "i", 1, True))


def test_completion_chunks_recut_a_whole_answer():
    body = {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "finish_reason": None, "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    chunks = oa.completion_chunks(body)
    conformance.validate_chunks(chunks)
    assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert chunks[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[2]["choices"] == [] and chunks[2]["usage"]["total_tokens"] == 2
