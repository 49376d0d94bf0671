"""A real HTTP server speaking Anthropic's Messages API, for tests: the stand-in for Anthropic's cloud
(and for any backend that serves /v1/messages natively).

It runs aiohttp.web on 127.0.0.1 and an ephemeral port in a daemon thread with its own loop, like
tests/upstream.py (the OpenAI-wire twin), so sync tests, async tests and the gateway can use it over HTTP.

Endpoints
    POST /v1/messages                 a Message, or named SSE events when the body says ``"stream": true``
                                      (message_start, ping, content_block_start/delta/stop for text,
                                      thinking and tool_use with input_json_delta fragments, message_delta,
                                      message_stop)
    POST /v1/messages/count_tokens    ``{"input_tokens": N}``
    GET  /v1/models                   Anthropic's model list
Every response carries a ``request-id: req_up...`` header. Bodies and events validate as the ``anthropic``
SDK's own types (test_upstream_speaks_messages_as_the_sdk_expects in tests/test_backend_anthropic.py
proves it).

Use
    with AnthropicUpstream() as up:
        up.base_url                       # "http://127.0.0.1:PORT" (the SDK's base_url: no /v1)
        up.script(AReply(text="hi"), AReply.error(529, retry_after=2))
        up.requests[-1].headers["x-api-key"]
    pytest fixtures: ``anthropic_upstream`` (function-scoped, reset per test) over
    ``anthropic_upstream_server`` (one per session).

Scripting: ``script(*behaviours, model=None)`` queues behaviours, per model or global, consumed in order
by POST /v1/messages; when empty, ``defaults[model]`` or ``default`` (an echo) answers.
``AReply`` fields (all optional):
    text            reply text; default "Echo: <text of the last user message>"
    thinking        a thinking block (with a signature) before the text
    tool_uses       list of ``ToolUse(name, input, id=None)``; arguments stream in ``args_fragment``-sized
                    input_json_delta fragments
    stop_reason     override (default end_turn, or tool_use when tools were used, or max_tokens when
                    ``max_tokens`` cut the text); ``stop_sequence`` the matched one
    usage           dict overriding the computed usage (input = words of the request, output = reply words)
    status          HTTP status >= 400 answers Anthropic's error body; ``error_type``/``message`` set it
    headers         extra response headers (``retry-after``...)
    error_after     in a stream, after this many events send ``event: error`` (``error_type``, default
                    overloaded_error) and end without message_stop
    break_after     in a stream, cut the connection after this many events
    delay_first     seconds before the body / first event
Auth: with ``server.api_key`` set, a request without ``x-api-key: <key>`` (or ``Authorization: Bearer <key>``,
which the SDK sends since 2.x) gets 401 authentication_error.
Requests without ``anthropic-version`` get 400, as the real API answers.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from aiohttp import web

from tests.upstream import Recorded

__all__ = ["AReply", "AnthropicUpstream", "ToolUse", "anthropic_upstream", "anthropic_upstream_server"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 504: "timeout_error", 529: "overloaded_error"}  # fmt: skip
_MESSAGES = {529: "Overloaded", 429: "Number of request tokens has exceeded your per-minute rate limit",
             401: "invalid x-api-key", 500: "Internal server error"}  # fmt: skip


@dataclass
class ToolUse:
    name: str
    input: dict = field(default_factory=dict)
    id: str | None = None


@dataclass
class AReply:
    text: str | None = None
    thinking: str | None = None
    tool_uses: list[ToolUse] | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict | None = None
    model: str | None = None
    status: int = 200
    error_type: str | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error_after: int | None = None
    break_after: int | None = None
    delay_first: float = 0.0
    args_fragment: int = 5

    @classmethod
    def error(cls, status: int, message: str | None = None, *, type: str | None = None,
              retry_after: int | None = None, **kw: Any) -> "AReply":
        headers = dict(kw.pop("headers", {}) or {})
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        return cls(status=status, error_type=type, message=message, headers=headers, **kw)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _input_tokens(body: dict) -> int:
    words = len(_text_of(body.get("system")).split())
    for m in body.get("messages") or []:
        if isinstance(m, dict):
            words += len(_text_of(m.get("content")).split()) + 1
    return max(words, 1)


def _event(obj: dict) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


class AnthropicUpstream:
    def __init__(self, *, host: str = "127.0.0.1", api_key: str | None = None) -> None:
        self.host = host
        self.port: int | None = None
        self.api_key = api_key
        self.default = AReply()
        self.defaults: dict[str, AReply] = {}
        self.requests: list[Recorded] = []
        self._queue: collections.deque[AReply] = collections.deque()
        self._model_queues: dict[str, collections.deque[AReply]] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle --

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "AnthropicUpstream":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="anthropic-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"anthropic upstream did not start: {failure!r}")
        return self

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "AnthropicUpstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _astart(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # -- scripting and recordings --

    def script(self, *behaviours: AReply, model: str | None = None) -> "AnthropicUpstream":
        with self._lock:
            (self._queue if model is None else self._model_queues.setdefault(model, collections.deque())).extend(behaviours)
        return self

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._model_queues.clear()
            self.defaults.clear()
            self.default = AReply()
            self.requests.clear()
            self.api_key = None

    def _next(self, model: str | None) -> AReply:
        with self._lock:
            q = self._model_queues.get(model) if model else None
            if q:
                return q.popleft()
            if self._queue:
                return self._queue.popleft()
            return self.defaults.get(model, self.default) if model else self.default

    @property
    def last(self) -> Recorded:
        with self._lock:
            return self.requests[-1]

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"anthropic upstream got {len(self.requests)} request(s), expected {n}")
                self._cond.wait(left)
            return list(self.requests)

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Recorded(method=request.method, path=request.path,
                       headers={k.lower(): v for k, v in request.headers.items()}, body=body, raw=raw,
                       at=time.time(), query=dict(request.query))
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
        return rec

    # -- responses --

    def _rid(self) -> str:
        return f"req_up{next(self._ids):06d}"

    def _error(self, status: int, type_: str | None = None, message: str | None = None,
               headers: dict | None = None) -> web.Response:
        t = type_ or _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        rid = self._rid()
        body = {"type": "error", "error": {"type": t, "message": message or _MESSAGES.get(status, f"HTTP {status}")},
                "request_id": rid}
        return web.json_response(body, status=status, headers={"request-id": rid, **(headers or {})})

    def _check(self, request: web.Request, rec: Recorded) -> web.Response | None:
        if self.api_key and self.api_key not in (request.headers.get("x-api-key"),
                                                 request.headers.get("authorization", "")[7:]):
            return self._error(401)
        if not request.headers.get("anthropic-version"):
            return self._error(400, message="anthropic-version: header is required")
        if not isinstance(rec.body, dict):
            return self._error(400, message="There was an issue with your request body: invalid JSON")
        for key in ("model", "messages"):
            if key not in rec.body:
                return self._error(400, message=f"{key}: Field required")
        return None

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._error(404, message=f"Not found: {request.method} {request.path}")

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude",
                                             "created_at": "2025-09-29T00:00:00Z"}],
                                  "has_more": False, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"})

    async def _count(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        bad = self._check(request, rec)
        if bad is not None:
            return bad
        return web.json_response({"input_tokens": _input_tokens(rec.body)}, headers={"request-id": self._rid()})

    def _plan(self, b: AReply, body: dict) -> tuple[list[dict], str, dict]:
        """(content blocks, stop_reason, usage)."""
        content: list[dict] = []
        if b.thinking:
            content.append({"type": "thinking", "thinking": b.thinking, "signature": "sig_" + "a" * 16})
        text = b.text if b.text is not None else ("" if b.tool_uses else "Echo: " + _text_of(
            next((m.get("content") for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")))
        stop = "end_turn"
        words = text.split(" ") if text else []
        limit = body.get("max_tokens")
        if isinstance(limit, int) and 0 < limit < len(words) and not b.tool_uses:
            words, stop = words[:limit], "max_tokens"
        text = " ".join(words)
        if text:
            content.append({"type": "text", "text": text})
        for i, tu in enumerate(b.tool_uses or []):
            content.append({"type": "tool_use", "id": tu.id or f"toolu_up{i}", "name": tu.name, "input": tu.input})
        if b.tool_uses:
            stop = "tool_use"
        stop = b.stop_reason or stop
        usage = b.usage or {"input_tokens": _input_tokens(body), "output_tokens": max(len(words), 1),
                            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        return content, stop, usage

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        bad = self._check(request, rec)
        if bad is not None:
            rec.outcome = "error"
            return bad
        b = self._next(rec.body.get("model"))
        if b.delay_first:
            await asyncio.sleep(b.delay_first)
        if b.status >= 400:
            rec.outcome = "error"
            return self._error(b.status, b.error_type, b.message, b.headers)
        content, stop, usage = self._plan(b, rec.body)
        mid = f"msg_up{next(self._ids):06d}"
        model = b.model or rec.body["model"]
        headers = {"request-id": self._rid(), **b.headers}
        if not rec.body.get("stream"):
            rec.outcome = "ok"
            return web.json_response({"id": mid, "type": "message", "role": "assistant", "model": model,
                                      "content": content, "stop_reason": stop, "stop_sequence": b.stop_sequence,
                                      "usage": usage}, headers=headers)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                       "Cache-Control": "no-cache", **headers})
        await resp.prepare(request)
        sent = 0
        for ev in self._events(b, mid, model, content, stop, usage):
            if b.break_after is not None and sent >= b.break_after:
                rec.outcome = "broken"
                if request.transport is not None:
                    request.transport.abort()
                return resp
            if b.error_after is not None and sent >= b.error_after:
                await resp.write(_event({"type": "error", "error": {
                    "type": b.error_type or "overloaded_error", "message": b.message or "Overloaded"}}))
                await resp.write_eof()
                rec.outcome = "error"
                return resp
            await resp.write(_event(ev))
            sent += 1
        await resp.write_eof()
        rec.outcome = "ok"
        return resp

    def _events(self, b: AReply, mid: str, model: str, content: list[dict], stop: str, usage: dict) -> Iterator[dict]:
        start_usage = {**usage, "output_tokens": 1}
        yield {"type": "message_start", "message": {"id": mid, "type": "message", "role": "assistant", "model": model,
                                                    "content": [], "stop_reason": None, "stop_sequence": None,
                                                    "usage": start_usage}}
        yield {"type": "ping"}
        for i, block in enumerate(content):
            kind = block["type"]
            if kind == "text":
                yield {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}
                words = block["text"].split(" ")
                for j, w in enumerate(words):
                    yield {"type": "content_block_delta", "index": i,
                           "delta": {"type": "text_delta", "text": w if j == 0 else " " + w}}
            elif kind == "thinking":
                yield {"type": "content_block_start", "index": i,
                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
                yield {"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": block["thinking"]}}
                yield {"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": block["signature"]}}
            else:
                yield {"type": "content_block_start", "index": i,
                       "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}
                args = json.dumps(block["input"], separators=(",", ":")) if block["input"] else ""
                n = max(1, b.args_fragment)
                for j in range(0, len(args), n):
                    yield {"type": "content_block_delta", "index": i,
                           "delta": {"type": "input_json_delta", "partial_json": args[j:j + n]}}
            yield {"type": "content_block_stop", "index": i}
        yield {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": b.stop_sequence},
               "usage": {"output_tokens": usage["output_tokens"]}}
        yield {"type": "message_stop"}


@contextmanager
def running_anthropic_upstream(**kwargs: Any) -> Iterator[AnthropicUpstream]:
    server = AnthropicUpstream(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def anthropic_upstream_server() -> Iterator[AnthropicUpstream]:
        with running_anthropic_upstream() as server:
            yield server

    @pytest.fixture
    def anthropic_upstream(anthropic_upstream_server: AnthropicUpstream) -> Iterator[AnthropicUpstream]:
        anthropic_upstream_server.reset()
        yield anthropic_upstream_server
        anthropic_upstream_server.reset()
