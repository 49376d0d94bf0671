"""Recorded exchanges with the real engines: vcrpy cassettes in tests/cassettes/<engine>/<scenario>.yaml.

Each scenario below talks to one engine through the adapter the gateway builds for it (the engine
profile's HTTP clients, then its quirk fixes: `fix_result` / `fix_stream`) and asserts what the gateway
relies on. The same scenario runs in two modes:

- replay (tests/test_engine_cassettes.py, every machine, no engine needed): vcrpy answers the adapter's
  aiohttp requests from the committed cassette, so the engines' real bytes go through the adapters;
- record (the slow drift check there, run in CI): the engine runs for real, vcrpy records, the same
  asserts run, and the new cassettes are compared with the committed ones after `normalised()` masks what
  changes on every run (ids, timestamps, ports, dates). MLXGW_RECORD_CASSETTES=1 writes them in place.

Requests are matched on method, path and JSON body, whatever the engine's port; recorded URLs carry
ENGINE_ORIGIN's port so a cassette does not change with the port the engine happened to get.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import vcr
import yaml

from mlxgw.backends.base import Timeouts, UpstreamStatusError
from mlxgw.kinds import ANTHROPIC_MESSAGES, OPENAI_CHAT
from mlxgw.supervisor import LaunchSpec, ManagedModel, ModelSettings

CASSETTES = Path(__file__).resolve().parent / "cassettes"
ENGINE_PORT = 18000  # the port every recorded URL is rewritten to
MODEL = "tiny"
MESSAGES = [{"role": "user", "content": "Say hello."}]
LIMIT = 8  # max_tokens: the tiny model never ends a reply by itself, so the limit always ends it
VERSION_HEADERS = {"anthropic-version": "2023-06-01"}


@dataclass
class Engine:
    """One engine as the adapters see it: its profile and the clients `make_client` builds."""

    kind: str
    profile: object
    clients: object
    http: object
    origin: str

    @classmethod
    def build(cls, kind: str, profiles: dict, http, port: int) -> Engine:
        profile = profiles[kind]
        m = ManagedModel("eng", MODEL, LaunchSpec(kind, kind, "/models/tiny", (), ()), ModelSettings(), log_path=None)
        m.port = port
        return cls(kind, profile, profile.make_client(m), http, m.base_url)

    # The engine's HTTP adapters, one per wire it speaks (the only calls into them, kept here).
    async def chat(self, body: dict):
        return await self.clients[OPENAI_CHAT].call(OPENAI_CHAT, body, Timeouts())

    def chat_stream(self, body: dict):
        return self.clients[OPENAI_CHAT].stream(OPENAI_CHAT, body, Timeouts())

    async def messages(self, body: dict):
        return await self.clients[ANTHROPIC_MESSAGES].call(ANTHROPIC_MESSAGES, body, Timeouts(), VERSION_HEADERS)

    def messages_stream(self, body: dict):
        return self.clients[ANTHROPIC_MESSAGES].stream(ANTHROPIC_MESSAGES, body, Timeouts(), VERSION_HEADERS)

    async def count_tokens(self, body: dict):
        return await self.clients[ANTHROPIC_MESSAGES].count_tokens(body, Timeouts(), VERSION_HEADERS)


Scenario = Callable[[Engine], Awaitable[None]]
SCENARIOS: dict[str, dict[str, Scenario]] = {"mlx-openai-server": {}, "vllm-mlx": {}}


def scenario(*kinds: str):
    def register(fn: Scenario) -> Scenario:
        for kind in kinds or tuple(SCENARIOS):
            SCENARIOS[kind][fn.__name__] = fn
        return fn
    return register


def chat_body(**extra) -> dict:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": LIMIT, "temperature": 0, **extra}


def sse_data(raw: bytes) -> list:
    """The `data:` payloads of an OpenAI stream, "[DONE]" kept as a string."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of an Anthropic stream."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"event" in fields:
            out.append((fields[b"event"].decode(), json.loads(fields[b"data"])))
    return out


async def collect(chunks) -> bytes:
    return b"".join([c async for c in chunks])


# --- the scenarios ---------------------------------------------------------------------------------------


@scenario()
async def health(e: Engine) -> None:
    """The readiness answer the supervisor polls for."""
    async with e.http.session.get(e.origin + "/health") as r:
        assert e.profile.is_ready(r.status, await r.read())


@scenario()
async def chat(e: Engine) -> None:
    """A plain chat completion cut by max_tokens: the gateway reports finish_reason "length"."""
    body = chat_body()
    raw = await e.chat(body)
    engine_said = raw.body["choices"][0]["finish_reason"]
    # mlx-openai-server says "stop" when max_tokens ended the reply (the quirk fix_result absorbs).
    assert engine_said == ("stop" if e.kind == "mlx-openai-server" else "length")
    fixed = e.profile.fix_result(body, raw).body
    choice = fixed["choices"][0]
    assert choice["finish_reason"] == "length"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert fixed["usage"]["completion_tokens"] == LIMIT and fixed["usage"]["prompt_tokens"] > 0


@scenario()
async def chat_stream(e: Engine) -> None:
    """A streamed chat completion, as the gateway asks for it (usage included), cut by max_tokens."""
    body = chat_body(stream=True, stream_options={"include_usage": True})
    raw = await collect(e.chat_stream(body))
    events = sse_data(raw)
    assert events[-1] == "[DONE]"
    engine_reasons = [c["finish_reason"] for ev in events[:-1] for c in ev.get("choices") or [] if c.get("finish_reason")]
    assert engine_reasons == ["stop" if e.kind == "mlx-openai-server" else "length"]

    async def again():
        yield raw

    fixed = sse_data(await collect(e.profile.fix_stream(body, again())))
    assert fixed[-1] == "[DONE]" and len(fixed) == len(events)
    chunks = fixed[:-1]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text
    reasons = [c["finish_reason"] for ev in chunks for c in ev.get("choices") or [] if c.get("finish_reason")]
    assert reasons == ["length"]
    usage = [ev["usage"] for ev in chunks if ev.get("usage")]
    assert usage and usage[-1]["completion_tokens"] == LIMIT


@scenario()
async def chat_error(e: Engine) -> None:
    """A body the engine rejects: an HTTP error status the gateway passes on, naming the field."""
    body = {"model": MODEL, "messages": "not a list", "max_tokens": LIMIT}
    try:
        await e.chat(body)
    except UpstreamStatusError as exc:
        assert 400 <= exc.status < 500, exc.status
        assert b"messages" in exc.body
    else:
        raise AssertionError("the engine accepted messages that are not a list")


@scenario("vllm-mlx")
async def messages(e: Engine) -> None:
    """vllm-mlx's own /v1/messages, cut by max_tokens."""
    body = {"model": MODEL, "max_tokens": LIMIT, "messages": MESSAGES, "temperature": 0}
    msg = (await e.messages(body)).body
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["model"] == MODEL
    assert msg["content"][0]["type"] == "text" and msg["content"][0]["text"]
    assert msg["stop_reason"] == "max_tokens"
    assert msg["usage"]["output_tokens"] == LIMIT and msg["usage"]["input_tokens"] > 0


@scenario("vllm-mlx")
async def messages_stream(e: Engine) -> None:
    """vllm-mlx's /v1/messages streamed: Anthropic's named events, in their order, cut by max_tokens."""
    body = {"model": MODEL, "max_tokens": LIMIT, "messages": MESSAGES, "temperature": 0, "stream": True}
    raw = await collect(e.messages_stream(body))
    # The engine says "end_turn" when max_tokens ended a stream (its non-streamed answer says
    # "max_tokens"): the quirk fix_messages_stream absorbs.
    assert [d["delta"]["stop_reason"] for n, d in sse_events(raw) if n == "message_delta"] == ["end_turn"]

    async def again():
        yield raw

    events = sse_events(await collect(e.profile.fix_messages_stream(body, again())))
    names = [n for n, _ in events if n != "ping"]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas) and "".join(d["text"] for d in deltas)
    (delta,) = [d for n, d in events if n == "message_delta"]
    assert delta["delta"]["stop_reason"] == "max_tokens" and delta["usage"]["output_tokens"] == LIMIT
    assert events[0][1]["message"]["role"] == "assistant"


@scenario("vllm-mlx")
async def count_tokens(e: Engine) -> None:
    """vllm-mlx's /v1/messages/count_tokens."""
    body = {"model": MODEL, "messages": MESSAGES}
    got = (await e.count_tokens(body)).body
    assert isinstance(got["input_tokens"], int) and got["input_tokens"] > 0


@scenario("vllm-mlx")
async def messages_error(e: Engine) -> None:
    """A Messages body the engine cannot read: vllm-mlx answers a bare 500 in plain text (not an Anthropic
    error object), which the adapter reports as an HTTP 500, so the gateway fails over like any 5xx. (The
    gateway itself answers such a body with a 400 before any engine sees it.)"""
    body = {"model": MODEL, "max_tokens": LIMIT, "messages": "not a list"}
    try:
        await e.messages(body)
    except UpstreamStatusError as exc:
        assert exc.status == 500 and exc.body == b"Internal Server Error", (exc.status, exc.body)
    else:
        raise AssertionError("the engine accepted messages that are not a list")


# --- vcrpy -------------------------------------------------------------------------------------------------


def cassette_path(root: Path, kind: str, name: str) -> Path:
    return root / kind / f"{name}.yaml"


def _fixed_port(request):
    parts = urlsplit(request.uri)
    request.uri = urlunsplit(parts._replace(netloc=f"127.0.0.1:{ENGINE_PORT}"))
    return request


def _json_body(r1, r2) -> None:
    def decoded(r):
        if not r.body:
            return None
        try:
            return json.loads(r.body)
        except ValueError:
            return r.body
    assert decoded(r1) == decoded(r2)


def recorder(record: bool) -> vcr.VCR:
    v = vcr.VCR(record_mode="all" if record else "none", match_on=("method", "path", "json_body"),
                before_record_request=_fixed_port, decode_compressed_response=True)
    v.register_matcher("json_body", _json_body)
    return v


# --- drift: what must stay the same between two recordings ---------------------------------------------------

_VOLATILE_KEYS = {"id", "created", "created_at", "system_fingerprint", "request_id"}
_VOLATILE_TEXT = [
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\b(chatcmpl|msg|req|toolu|cmpl)[-_][A-Za-z0-9_-]+"), r"\1-ID"),
]
# The random model's words: greedy and stable on one machine, but float sums may differ on another CPU.
# What the gateway relies on (shapes, finish reasons, token counts, event order) is compared as is.
_GENERATED = {"content", "text"}
_KEPT_HEADERS = ("content-type",)


def _field(key: str, value):
    if key in _VOLATILE_KEYS:
        return "<volatile>"
    if key in _GENERATED and isinstance(value, str) and value:
        return "<text>"
    return _mask(value)


def _mask(value):
    if isinstance(value, dict):
        return {k: _field(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        for pattern, repl in _VOLATILE_TEXT:
            value = pattern.sub(repl, value)
    return value


def _body(raw) -> object:
    if isinstance(raw, str):
        raw = raw.encode()
    raw = raw or b""
    text = raw.decode("utf-8", "replace")
    try:
        return _mask(json.loads(raw))
    except ValueError:
        pass
    if text.lstrip().startswith(("data:", "event:")):  # a stream: its events, however the bytes were cut
        blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
        return [_mask([_body(line.split(":", 1)[1].strip()) if line.startswith("data:") else line
                       for line in block.split("\n")]) for block in blocks]
    return _mask(text)


def normalised(path: Path) -> list[dict]:
    """A cassette as the drift check compares it: requests, statuses, content types and bodies, with
    what changes on every run masked."""
    data = yaml.safe_load(path.read_text())
    out = []
    for i in data["interactions"]:
        req, resp = i["request"], i["response"]
        headers = {k.lower(): v for k, v in resp["headers"].items()}
        out.append({
            "request": {"method": req["method"], "uri": _mask(req["uri"]), "body": _body(req["body"])},
            "status": resp["status"]["code"],
            "headers": {k: headers.get(k) for k in _KEPT_HEADERS},
            "body": _body(resp["body"].get("string")),
        })
    return out
