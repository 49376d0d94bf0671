"""The stream translators of mlxgw/server/relays.py fed raw upstream bytes cut at awkward places, and the
shared `streaming.relay` driving them (no server needed)."""

from __future__ import annotations

import json

from mlxgw.backends.base import UpstreamTimeout
from mlxgw.dialects.anthropic.streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from mlxgw.server import streaming
from mlxgw.server.record import AuditRecord
from mlxgw.server.relays import AnthropicRelay, AnthropicToOpenAIRelay, OpenAIRelay, OpenAIToAnthropicRelay
from tests import conformance


def openai_stream() -> bytes:
    def c(delta, finish=None):
        return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    chunks = [c({"role": "assistant", "content": ""}), c({"content": "Hel"}), c({"content": "lo"}),
              c({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
              c({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}), c({}, "tool_calls"),
              {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
               "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}]
    return b"".join(b"data: " + json.dumps(x).encode() + b"\r\n\r\n" for x in chunks) + b"data: [DONE]\r\n\r\n"


def anthropic_stream() -> bytes:
    evs = [{"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                                                 "content": [], "usage": {"input_tokens": 5, "output_tokens": 1,
                                                                          "cache_read_input_tokens": 2}}},
           {"type": "ping"},
           {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
           {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
           {"type": "content_block_stop", "index": 0},
           {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 4}},
           {"type": "message_stop"}]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in evs)


def pieces(raw: bytes, size: int) -> list[bytes]:
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def drive(tr, raw: bytes, size: int) -> bytes:
    out = b""
    for p in pieces(raw, size):
        out += tr.feed(p)
        if tr.finished:
            return out
    return out + tr.end()


def test_openai_to_anthropic_any_cut():
    expected = None
    for size in (1, 7, 64, 100_000):
        tr = OpenAIToAnthropicRelay(OpenAIToAnthropicStream("msg_x", "claude", 3))
        out = drive(tr, openai_stream(), size)
        if expected is None:
            expected = out
        assert out == expected and tr.finished and tr.error is None
        assert tr.tokens() == (7, 3, None)
    text = expected.decode()
    assert text.count("event: content_block_start") == 2 and text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_anthropic_to_openai_any_cut():
    for size in (1, 13, 100_000):
        tr = AnthropicToOpenAIRelay(AnthropicToOpenAIStream("chatcmpl-x", "c", include_usage=True))
        out = drive(tr, anthropic_stream(), size)
        chunks = conformance.validate_sse(out.decode())
        assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11,
                                       "prompt_tokens_details": {"cached_tokens": 2}}
        assert tr.tokens() == (7, 4, 2) and tr.error is None


def test_anthropic_passthrough_is_byte_identical():
    raw = anthropic_stream()
    tr = AnthropicRelay()
    assert drive(tr, raw, 5) == raw and tr.tokens() == (7, 4, 2)
    cut = AnthropicRelay()
    at = raw.index(b"event: ping") + 30  # past message_start: the stream has begun for the client
    out = drive(cut, raw[:at], 50)
    assert out.startswith(raw[:at]) and b"event: error" in out[at:] and cut.error


def test_openai_passthrough_relay_drops_the_usage_chunk_nobody_asked_for():
    tr = OpenAIRelay("up", "m", "chatcmpl-x", 1, keep_usage=False)
    out = drive(tr, openai_stream(), 9)
    chunks = conformance.validate_sse(out.decode())
    assert all(c["choices"] for c in chunks) and tr.tokens() == (7, 3, None)


def test_openai_relay_sends_an_event_whose_data_came_on_several_lines_as_one_data_line():
    # SSE joins an event's `data:` lines with a line feed, which JSON reads as whitespace: relayed as it
    # came (conformant chunks are), that line feed would start a line of its own for the client, a field
    # it cannot read.
    def c(delta, finish=None):
        return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    chunks = [c({"role": "assistant", "content": ""}), c({"content": "Hel"}), c({"content": "lo"}), c({}, "stop")]
    one_line = b"".join(b"data: " + json.dumps(x).encode() + b"\n\n" for x in chunks) + b"data: [DONE]\n\n"
    two_lines = one_line.replace(b'"object":', b'\ndata: "object":')
    assert two_lines.count(b"\ndata: ") == 2 * len(chunks)  # the events' own starts, and one inside each
    expected = conformance.validate_sse(drive(OpenAIRelay("up", "m", "chatcmpl-x", 1, False), one_line, 9).decode())
    for size in (len(two_lines), 9):
        tr = OpenAIRelay("up", "m", "chatcmpl-x", 1, keep_usage=False)
        out = drive(tr, two_lines, size).decode()
        lines = [line for line in out.split("\n") if line]
        assert lines and all(line.startswith("data: ") for line in lines), lines
        assert conformance.validate_sse(out) == expected
        assert tr.finish_seen


async def test_relay_turns_a_mid_stream_timeout_into_the_dialect_error_event():
    async def upstream():
        yield openai_stream()[:120]
        raise UpstreamTimeout("up", "idle", 0.5)

    finished = []
    gen = upstream()
    rec = AuditRecord("req_x", "anthropic")
    tr = OpenAIToAnthropicRelay(OpenAIToAnthropicStream("msg_x", "claude"))
    first = tr.feed(await gen.__anext__())  # what the client got before the timeout
    out = b"".join([c async for c in streaming.relay(first, gen, tr, rec, lambda s, e: finished.append((s, e)))])
    assert out.rstrip().split(b"\n")[-2] == b"event: error"
    assert b'"type":"timeout_error"' in out
    assert finished == [(200, f"stream broke after {len(first)} bytes sent to the client: "
                              "provider 'up' timed out (idle timeout of 0.5s)")]
    assert rec.input_tokens is None


def test_anthropic_pass_through_holds_bytes_until_the_first_message_event():
    tr = AnthropicRelay()
    assert tr.feed(b"data: {not json\n\n") == b""
    assert tr.end().startswith(b"event: error") and tr.error  # junk from the start: the request can fail over
    raw = anthropic_stream()
    tr = AnthropicRelay()
    assert tr.feed(b": keep-alive\n\n") == b""
    out = tr.feed(raw[:40])  # message_start not complete yet
    out += tr.feed(raw[40:])
    assert out == b": keep-alive\n\n" + raw and tr.finished and not tr.error
    tr = AnthropicRelay()
    tr.feed(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n')
    assert tr.error == "busy" and tr.finished


async def test_a_stream_that_fails_before_any_content_is_an_upstream_error():
    import pytest

    from mlxgw.backends.base import UpstreamProtocolError

    async def junk():
        yield b"data: {not json\n\n"

    with pytest.raises(UpstreamProtocolError, match="stream failed before any content"):
        await streaming.prime(junk(), OpenAIRelay("up", "m", "id", 1, False), "up")

    raw = openai_stream()

    async def good():
        yield raw[:60]  # not a whole event yet: nothing for the client, read on
        yield raw[60:400]
        yield raw[400:]

    gen = good()
    first, ended = await streaming.prime(gen, OpenAIRelay("up", "m", "id", 1, False), "up")
    assert first.startswith(b"data: ") and b"[DONE]" not in first and not ended
    assert [c async for c in gen] == [raw[400:]]
