"""The stream fast path (mlxgw/dialects/openai.py: `chunk_as_is`, `ContentShape`; the relays that use
them): an event is relayed without parsing only when the long way would give the same client data.

Each relay test is differential: the same upstream bytes through the relay as it is and through one
whose `ContentShape` never learns (every event the long way), with the client events compared as data,
and a check that the fast path was taken, so the comparison is never over nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlxgw.dialects import openai as oa
from mlxgw.dialects.anthropic.streams import OpenAIToAnthropicStream
from mlxgw.dialects.jsonfast import loads
from mlxgw.server import relays
from mlxgw.server.relays import OpenAIRelay, OpenAIToAnthropicRelay

CASSETTES = Path(__file__).resolve().parent / "cassettes"
TEXTS = ["word ", 'say "hi"', "back\\slash\\", "line\nbreak\ttab", "é ü 漢字 🙂", "\u2028", "</script>", "x" * 300]


def conformant(delta: dict, finish=None, **top) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **top}


def mlx_like(delta: dict, finish=None) -> dict:
    """mlx-openai-server's shape: no finish_reason until the end, role in every delta."""
    ch = {"delta": {**delta, "role": "assistant"}, "index": 0}
    if finish:
        ch["finish_reason"] = finish
    return {"id": "chatcmpl_1", "choices": [ch], "created": 1, "model": "tiny", "object": "chat.completion.chunk"}


def vllm_like(delta: dict, finish=None) -> dict:
    """vllm-mlx's shape: `usage: null` and an extra field on every chunk."""
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None,
            "generation_metadata": None}


def sse(objs: list[dict], compact: bool = True, ascii_only: bool = False) -> bytes:
    sep = (",", ":") if compact else (", ", ": ")
    return b"".join(b"data: " + json.dumps(o, separators=sep, ensure_ascii=ascii_only).encode() + b"\n\n"
                    for o in objs) + b"data: [DONE]\n\n"


def stream(make, texts=TEXTS) -> list[dict]:
    return [make({"role": "assistant", "content": ""}), *[make({"content": t}) for t in texts], make({}, "stop")]


def recorded_streams() -> list[bytes]:
    """The real engines' recorded chat streams (tests/cassettes)."""
    out = []
    for path in sorted(CASSETTES.glob("*/chat_stream.yaml")):
        for it in yaml.safe_load(path.read_text())["interactions"]:
            body = it["response"]["body"]["string"]
            out.append(body.encode() if isinstance(body, str) else body)
    return out


UPSTREAMS = {
    "conformant": sse(stream(conformant)),
    "conformant-spaced-ascii": sse(stream(conformant), compact=False, ascii_only=True),
    "mlx-openai-server-shape": sse(stream(mlx_like)),
    "vllm-mlx-shape": sse(stream(vllm_like)),
}


def events(raw: bytes) -> list:
    p = oa.SSEParser()
    return [d if d == b"[DONE]" else json.loads(d) for d in p.feed(raw) + p.close()]


def anthropic_events(raw: bytes) -> list[dict]:
    return [json.loads(block.split(b"\ndata: ", 1)[1]) for block in raw.split(b"\n\n") if block.strip()]


def openai_relay(keep_usage: bool = False) -> OpenAIRelay:
    return OpenAIRelay("p", "m", "chatcmpl-x", 1, keep_usage)


def anthropic_relay() -> OpenAIToAnthropicRelay:
    return OpenAIToAnthropicRelay(OpenAIToAnthropicStream("msg_x", "claude", 3))


def run(relay, raw: bytes, size: int, learn: bool, monkeypatch) -> tuple[bytes, int]:
    """The client bytes, and how many events were parsed: the fast path renders an event without it (so
    the fast path was taken as often as the run that never learns parsed more)."""
    parsed = []

    def counted(data):
        parsed.append(1)
        return loads(data)

    with monkeypatch.context() as m:
        m.setattr(relays, "loads", counted)  # what the relays parse events with
        if not learn:
            m.setattr(oa.ContentShape, "learn", lambda *a, **k: None)
        out = b""
        for i in range(0, len(raw), size):
            out += relay.feed(raw[i:i + size])
        return out + (b"" if relay.finished else relay.end()), len(parsed)


RELAYS = {  # relay factory, how to read its client events, what it reports beyond them
    "openai": (openai_relay, events, lambda r: (r.finish_seen, r.error, r.tokens())),
    "anthropic": (anthropic_relay, anthropic_events, lambda r: (r.error, r.tokens())),
}


@pytest.mark.parametrize("relay", RELAYS)
@pytest.mark.parametrize("name", [*UPSTREAMS, "recorded-0", "recorded-1"])
@pytest.mark.parametrize("size", [1, 37, 1 << 20])
def test_relay_fast_path_gives_what_the_long_way_gives(relay, name, size, monkeypatch):
    make, read, report = RELAYS[relay]
    raw = UPSTREAMS[name] if name in UPSTREAMS else recorded_streams()[int(name[-1])]
    fast, slow = make(), make()
    (got, parsed), (want, slow_parsed) = run(fast, raw, size, True, monkeypatch), \
        run(slow, raw, size, False, monkeypatch)
    assert slow_parsed - parsed >= 3, "the fast path was not taken"
    assert read(got) == read(want)
    assert report(fast) == report(slow)


def test_recorded_streams_are_both_engines():
    assert len(recorded_streams()) == 2


def test_anthropic_relay_text_after_a_tool_call_opens_a_new_block(monkeypatch):
    """A text block, a tool call, then text again: the learnt text_delta (block 0) must not be reused
    for the text that follows the tool call (a new block)."""
    call = {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    objs = [conformant({"role": "assistant", "content": ""}), conformant({"content": "a"}), conformant({"content": "b"}),
            conformant({"content": "c"}), conformant(call), conformant({"content": "d"}), conformant({"content": "e"}),
            conformant({}, "stop")]
    raw = sse(objs)
    fast, slow = anthropic_relay(), anthropic_relay()
    (got, parsed), (want, slow_parsed) = run(fast, raw, 1 << 20, True, monkeypatch), \
        run(slow, raw, 1 << 20, False, monkeypatch)
    assert slow_parsed - parsed == 1  # "c", learnt from "b"; "d" opens a new block, and "e" is learnt from
    assert anthropic_events(got) == anthropic_events(want)
    deltas = [e for e in anthropic_events(got) if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"]
    assert [(e["index"], e["delta"]["text"]) for e in deltas] == [(0, "a"), (0, "b"), (0, "c"), (2, "d"), (2, "e")]


# -- ContentShape on its own --------------------------------------------------------------------------


def learnt(obj: dict) -> oa.ContentShape:
    data = json.dumps(obj, separators=(",", ":")).encode()
    shape = oa.ContentShape()
    shape.learn(data, oa.plain_text(obj), b"data: " + data + b"\n\n", b'"content":')
    assert shape.head is not None
    return shape


@pytest.mark.parametrize("middle", [b'a"b', b"ends\\", b"raw\nnewline", b"tab\there", b"\xff\xfe", b'\\x41',
                                    b'a","x":"b'])
def test_shape_refuses_a_middle_that_is_not_one_json_string(middle):
    shape = learnt(conformant({"content": "hello"}))
    assert shape.text(shape.head + middle + shape.tail) is None


@pytest.mark.parametrize("middle", [b"plain", b'with \\"quotes\\"', b"a\\\\", b"\\n\\t\\u00e9", "é漢🙂".encode()])
def test_shape_takes_a_middle_that_is_one_json_string(middle):
    shape = learnt(conformant({"content": "hello"}))
    data = shape.head + middle + shape.tail
    assert shape.text(data) == middle
    assert json.loads(data)["choices"][0]["delta"]["content"] == json.loads(b'"' + middle + b'"')


@pytest.mark.parametrize("middle", [b'a"b', b"ends\\", b"raw\nnewline", b"\xff\xfe", b'a","x":"b', b"plain",
                                    b'with \\"quotes\\"', b"\\n\\t\\u00e9", "é漢🙂".encode(), b""])
def test_openai_relay_takes_the_middles_shape_text_takes(middle, monkeypatch):
    """OpenAIRelay checks a middle inline (its copy of `text()`): it renders the same events unparsed."""
    obj = conformant({"content": "hello"})
    shape = learnt(obj)
    raw = sse([obj]).replace(b"data: [DONE]\n\n", b"data: " + shape.head + middle + shape.tail + b"\n\n")
    _, parsed = run(openai_relay(), raw, 1 << 20, True, monkeypatch)
    assert parsed == (1 if shape.text(shape.head + middle + shape.tail) is not None else 2)


def test_shape_does_not_match_other_events():
    shape = learnt(conformant({"content": "hello"}))
    for other in (conformant({"content": "x"}, "stop"), conformant({"role": "assistant", "content": "x"}),
                  conformant({"content": ""}), {"error": {"message": "boom"}}):
        assert shape.text(json.dumps(other, separators=(",", ":")).encode()) is None


@pytest.mark.parametrize("obj", [conformant({"content": "x"}, "stop"), conformant({"tool_calls": []}),
                                 conformant({"content": "x"}, usage={"prompt_tokens": 1}),
                                 conformant({"content": ""}), conformant({"content": "x", "reasoning_content": "r"}),
                                 {"error": "x", "choices": [{"delta": {"content": "x"}}]}])
def test_plain_text_is_only_a_plain_content_delta(obj):
    assert oa.plain_text(obj) is None


# -- OpenAIRelay: a run of content deltas in one read, checked at once ---------------------------------


def one_read_streams() -> dict[str, bytes]:
    """Whole streams as a fast local server sends them (everything in one read), each with something the
    run check must stop at, skip or take as the per-event check would."""
    role, finish = conformant({"role": "assistant", "content": ""}), conformant({}, "stop")
    usage = {**conformant({}), "choices": [],
             "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
    words = [conformant({"content": f"w{i} "}) for i in range(12)]
    call = conformant({"tool_calls": [{"index": 0, "id": "c", "type": "function",
                                       "function": {"name": "f", "arguments": "{}"}}]})
    shape = learnt(words[0])
    plain = sse([role, *words, finish, usage])

    def crafted(middle: bytes) -> bytes:  # a run with an event of the learnt shape around `middle` in it
        at = plain.index(b"data: " + json.dumps(words[6], separators=(",", ":")).encode())
        return plain[:at] + b"data: " + shape.head + middle + shape.tail + b"\n\n" + plain[at:]

    out = {
        "plain": plain,
        "texts": sse([role, words[0], *stream(conformant)[1:], usage]),
        "spaced-ascii": sse([role, *words, finish], compact=False, ascii_only=True),
        "mlx-shape": sse(stream(mlx_like, [f"w{i}" for i in range(9)] + TEXTS)),
        "vllm-shape": sse(stream(vllm_like, [f"w{i}" for i in range(9)] + TEXTS)),
        "crlf": plain.replace(b"\n", b"\r\n"),
        "cr": plain.replace(b"\n", b"\r"),
        "comments-and-fields": plain.replace(b"data: {", b": keep-alive\n\nevent: chunk\nid: 1\ndata: {"),
        "multi-line-data": plain.replace(b',"logprobs"', b'\ndata: ,"logprobs"'),
        "multi-line-data-once": plain.replace(b'"w5 "},', b'"w5 "}\ndata: ,'),
        "tool-call-inside": sse([role, *words[:5], call, *words[5:], finish]),
        "role-and-text-inside": sse([role, *words[:5], conformant({"role": "assistant", "content": "x"}), *words[5:],
                                     finish]),
        "empty-text-inside": sse([role, *words[:5], conformant({"content": ""}), *words[5:], finish]),
        "error-inside": sse([role, *words[:5], {"error": {"message": "boom"}}, *words[5:], finish]),
        "no-finish": sse([role, *words])[:-len(b"data: [DONE]\n\n")],
        "no-done": sse([role, *words, finish])[:-len(b"data: [DONE]\n\n")],
        # the learnt shape but for a byte outside the text: the middle alone does not tell it apart
        "other-id-inside": sse([role, *words[:5], {**words[5], "id": "chatcmpl-2"}, *words[6:], finish]),
        "mlx-other-model-inside": sse([{**mlx_like({"content": f"w{i}"}), "model": "tinz" if i == 5 else "tiny"}
                                       for i in range(9)]),
        "repeated-event": sse([role, *words[:3], words[2], words[2], *words[3:], finish]),
        "usage-first": sse([role, words[0], usage, *words[1:], finish]),
    }
    for name, middle in {"quote": b'a"b', "backslash-end": b"ends\\", "raw-newline": b"raw\\\nx",
                         "bad-utf8": b"\xff\xfe", "two-fields": b'a","x":"b', "escapes": b'\\n\\"q\\" \\u00e9',
                         "utf8": "é漢🙂".encode(),
                         "empty": b"", "crlf-in-text": b"a\\r\\nb"}.items():
        out[f"middle-{name}"] = crafted(middle)
    return out


ONE_READ = one_read_streams()


def cuts(raw: bytes, size) -> list[bytes]:
    """`raw` in reads of `size` bytes, or at seeded random points ("random")."""
    if size == "random":
        import random
        rng = random.Random(len(raw))
        points = sorted(rng.sample(range(1, len(raw)), 12))
        return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)])]
    return [raw[i:i + size] for i in range(0, len(raw), size)]


@pytest.mark.parametrize("keep_usage", [False, True])
@pytest.mark.parametrize("name", ONE_READ)
@pytest.mark.parametrize("size", [1 << 20, 1, 23, "random"])
def test_openai_relay_run_in_one_read_gives_what_the_per_event_checks_give(name, size, keep_usage, monkeypatch):
    """A stream in one read (or cut anywhere) gives the client the same bytes as the stream read an event
    at a time, where each event is checked on its own, parses as many events, and reports the same; and
    the same client data as the long way."""
    raw = ONE_READ[name]
    reads = cuts(raw, size)
    parser = oa.SSEParser()
    one_each = [b"".join(b"data: " + line + b"\n" for line in e.split(b"\n")) + b"\n"  # an event a read
                for e in parser.feed(raw) + parser.close()]
    runs = []
    run_of = OpenAIRelay._run

    def spied(self, events, datas):
        rest = run_of(self, events, datas)
        runs.append(len(events) - len(rest))
        return rest

    def through(relay, chunks, learn=True):
        with monkeypatch.context() as m:
            m.setattr(OpenAIRelay, "_run", spied)
            return run_chunks(relay, chunks, learn, monkeypatch)

    whole, per_event, slow = (openai_relay(keep_usage) for _ in range(3))
    (got, parsed), (want, want_parsed) = through(whole, reads), through(per_event, one_each)
    (long_way, _) = through(slow, one_each, learn=False)
    assert got == want
    assert parsed == want_parsed
    assert events(got) == events(long_way)
    if name.startswith("multi-line"):  # an event of several data lines is re-serialised: the same bytes too
        assert got == long_way
    assert (whole.finish_seen, whole.error, whole.tokens()) == \
        (per_event.finish_seen, per_event.error, per_event.tokens())
    if size == 1 << 20 and name in ("plain", "texts", "crlf", "cr", "comments-and-fields", "middle-escapes"):
        assert max(runs) >= 5, "the run check was not taken"


def run_chunks(relay, chunks: list[bytes], learn: bool, monkeypatch) -> tuple[bytes, int]:
    """The client bytes and how many events were parsed (see `run`), the upstream read as `chunks`."""
    parsed = []

    def counted(data):
        parsed.append(1)
        return loads(data)

    with monkeypatch.context() as m:
        m.setattr(relays, "loads", counted)
        if not learn:
            m.setattr(oa.ContentShape, "learn", lambda *a, **k: None)
        out = b""
        for c in chunks:  # (as streaming.relay reads: until the translator says the stream finished)
            out += relay.feed(c)
            if relay.finished:
                return out, len(parsed)
        return out + relay.end(), len(parsed)


# -- chunk_as_is agrees with chunk() ---------------------------------------------------------------


def variants() -> list[dict]:
    """Conformant events and one-field mutations of them, some of which chunk() must rewrite."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{"}}
    base = [conformant({"role": "assistant", "content": ""}), conformant({"content": "hi"}), conformant({}, "stop"),
            conformant({"tool_calls": [call]}), conformant({"refusal": "no"}), conformant({"content": None}),
            conformant({"content": "x"}, system_fingerprint="fp"), mlx_like({"content": "x"}), vllm_like({"content": "x"})]
    out = list(base)
    for b in base:
        out += [{**b, "id": 5}, {**b, "object": "chunk"}, {**b, "created": True}, {**b, "model": ""},
                {**b, "system_fingerprint": None}, {**b, "service_tier": 3}, {**b, "choices": "x"},
                {**b, "usage": None}, {**b, "usage": {"prompt_tokens": 1}}]
        ch = b["choices"][0]
        for change in ({"index": "0"}, {"finish_reason": "eos"}, {"finish_reason": ["x"]}, {"logprobs": {"content": []}},
                       {"delta": None}, {"delta": {**ch["delta"], "role": "robot"}}, {"delta": {**ch["delta"], "x": None}},
                       {"delta": {**ch["delta"], "content": 7}}, {"delta": {"tool_calls": [{**call, "id": None}]}},
                       {"delta": {"tool_calls": [{**call, "type": "fn"}]}}, {"delta": {"tool_calls": [{**call, "extra": 1}]}},
                       {"delta": {"tool_calls": [{**call, "function": {"name": 1}}]}}, {"delta": {"tool_calls": []}}):
            out.append({**b, "choices": [{**ch, **change}]})
    return out


@pytest.mark.parametrize("keep_usage", [False, True])
def test_chunk_as_is_agrees_with_chunk(keep_usage):
    kept = rewritten = 0
    for obj in variants():
        finished = oa.chunk_as_is(obj, keep_usage)
        if finished is None:
            rewritten += 1
            continue
        kept += 1
        assert oa.chunk(obj, "m", "fallback", 9, keep_usage) == obj, obj
        assert finished == any(ch["finish_reason"] for ch in obj["choices"])
    assert kept >= 5 and rewritten >= 50


# -- response_as_is agrees with response() (the non-streamed body relayed as it came) ---------------


def completions() -> list[dict]:
    """Conformant chat completions and one-field mutations of them, some of which response() rewrites."""
    base = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    bases = [base, {k: v for k, v in base.items() if k != "usage"}, {**base, "system_fingerprint": "fp"},
             {**base, "usage": {**base["usage"], "prompt_tokens_details": {"cached_tokens": 1}}}]
    out = list(bases)
    msg, ch = base["choices"][0]["message"], base["choices"][0]
    for b in bases:
        out += [{**b, "id": ""}, {**b, "object": "x"}, {**b, "created": 1.5}, {**b, "model": 3},
                {**b, "system_fingerprint": None}, {**b, "usage": None}, {**b, "usage": {"prompt_tokens": 1}},
                {**b, "usage": {**base["usage"], "completion_tokens_details": {"x": True}}}, {**b, "choices": {}}]
        for change in ({"index": None}, {"logprobs": {"content": None}}, {"finish_reason": "eos"},
                       {"finish_reason": None}, {"message": None}, {"message": {**msg, "role": "user"}},
                       {"message": {**msg, "content": [{"type": "text", "text": "a"}]}},
                       {"message": {k: v for k, v in msg.items() if k != "refusal"}},
                       {"message": {k: v for k, v in msg.items() if k != "content"}},
                       {"message": {**msg, "tool_calls": []}}, {"message": {**msg, "audio": None}},
                       {"message": {**msg, "annotations": None}}, {"message": {**msg, "function_call": "f"}},
                       {"message": {**msg, "content": None, "refusal": "no"}}):
            out.append({**b, "choices": [{**ch, **change}]})
    return out


def test_response_as_is_agrees_with_response():
    kept = rewritten = 0
    for body in completions():
        counts = oa.response_as_is(body)
        if counts is not None:
            kept += 1
            assert oa.response(body, "other") == body, body
            assert counts == oa.tokens(body.get("usage"))
        else:
            rewritten += 1
    assert kept >= 5 and rewritten >= 50


# -- the Responses translation of a chat stream ------------------------------------------------------


def responses_stream():
    from mlxgw.dialects import responses as rs
    body = {"model": "m", "input": "hi", "stream": True}
    return rs.ChatToResponsesStream(rs.ResponsesEventWriter(body, "resp_1", 1))


def responses_events(raw: bytes) -> list[dict]:
    """The client events, with the wall-clock `completed_at` masked (two runs may straddle a second)."""
    return [untimed(json.loads(block.split(b"\ndata: ", 1)[1])) for block in raw.split(b"\n\n") if block.strip()]


def untimed(obj: dict) -> dict:
    resp = obj.get("response") if isinstance(obj.get("response"), dict) else obj
    if resp.get("completed_at") is not None:
        resp["completed_at"] = "masked"
    return obj


@pytest.mark.parametrize("name", [*UPSTREAMS, "recorded-0", "recorded-1"])
@pytest.mark.parametrize("size", [1, 37, 1 << 20])
def test_responses_stream_fast_path_gives_what_the_long_way_gives(name, size, monkeypatch):
    raw = UPSTREAMS[name] if name in UPSTREAMS else recorded_streams()[int(name[-1])]
    from mlxgw.dialects.responses.events import ResponsesEventWriter
    fast, slow = responses_stream(), responses_stream()
    used = []
    more_text = ResponsesEventWriter.more_text
    with monkeypatch.context() as m:
        m.setattr(ResponsesEventWriter, "more_text", lambda self, text, mid: used.append(1) or more_text(self, text, mid))
        got = b"".join(fast.feed(raw[i:i + size]) for i in range(0, len(raw), size)) + (b"" if fast.finished else fast.end())
    with monkeypatch.context() as m:
        m.setattr(oa.ContentShape, "learn", lambda *a, **k: None)
        want = b"".join(slow.feed(raw[i:i + size]) for i in range(0, len(raw), size)) + (b"" if slow.finished else slow.end())
    assert len(used) >= 3, "the fast path was not taken"
    assert responses_events(got) == responses_events(want)
    assert untimed(fast.response) == untimed(slow.response) and fast.tokens() == slow.tokens()
