"""A real OpenAI-compatible HTTP server for tests: the stand-in for OpenAI's cloud and for any
OpenAI-compatible backend (mlx-openai-server, vllm-mlx, ...).

It runs aiohttp.web on 127.0.0.1 and an ephemeral port, in a daemon thread with its own asyncio loop, so
sync tests, async tests and the gateway (in another thread or process) can all talk to it over real HTTP.

Endpoints
    POST /v1/chat/completions   non-streaming JSON, or SSE when the body says ``"stream": true``
    POST /v1/responses          OpenAI's own Responses API, plain or streamed (tests/responses_upstream.py)
    GET  /v1/models             ``{"object": "list", "data": [...]}`` built from ``server.models``
    GET  /health                ``{"status": "ok"}``
Every successful body and chunk validates against the conformance schema vendored in
tests/data/openai-chat.schema.json (tests/test_upstream.py proves it), unless a behaviour deliberately
deviates.

Use
    with UpstreamServer() as up:                 # context manager: starts, yields, stops
        up.base_url                              # "http://127.0.0.1:PORT/v1"
        up.script(Reply(text="hi"), Reply.error(429, retry_after=1))
        ...                                      # requests consume the script in order
        up.requests[-1].headers["authorization"] # every request is recorded

    # as a pytest fixture, in a test module:  from upstream import upstream  (a function-scoped fixture
    # over one shared server per session, reset before each test), or build your own with
    # ``running_upstream(**kwargs)``.

How a test scripts the answers (the choice made here: a FIFO queue, optionally per model)
    ``server.script(*behaviours, model=None)`` appends behaviours to a queue. Each POST to
    /v1/chat/completions takes the next behaviour from the queue of its requested model if one was
    scripted for that model, else from the global queue; when both are empty it uses
    ``server.defaults[model]`` if set, else ``server.default`` (a plain echo ``Reply()``).
    ``server.set_default(behaviour, model=None)`` sets those fallbacks. Keying by model lets a test give
    several routes/targets different behaviours (e.g. primary fails, fallback answers) regardless of order.
    ``server.reset()`` clears queues, defaults, recordings and ``api_key``.

A behaviour is a ``Reply`` (dataclass, every field optional):
    text            reply text; default ``"Echo: <text of the last user message>"``
    tool_calls      list of ``ToolCall(name, arguments, id=None)``: one or several calls in one turn; in
                    a stream the arguments arrive in fragments of ``args_fragment`` characters
    usage           dict overriding the computed usage (prompt = words in the messages, completion =
                    words in the reply; ``total`` their sum)
    model           the model name to answer with (default: the requested one)
    finish_reason   override (e.g. ``"stop"`` when ``max_tokens`` truncated the reply: a real deviation)
    status          HTTP status; >= 400 with ``error_object`` (OpenAI error object) or ``raw_body`` (non-JSON)
    headers         extra response headers (e.g. ``{"retry-after": "1"}``)
    delay_headers   seconds before the status line and headers are sent (connect / first-token timeouts)
    delay_first     seconds after the headers before the first chunk / the body (first-token timeout)
    delay_between   seconds between stream chunks (idle and total timeouts)
    chunk_tokens    tokens (whitespace-separated words) per content chunk in a stream (default 1)
    omit_logprobs / omit_usage / omit_created / omit_refusal   deviations real backends have
    no_done         the stream ends cleanly without ``data: [DONE]``
    break_after     close the connection abruptly after this many stream chunks (0: right after the
                    headers); for a non-streaming request, after the headers instead of sending the body
    drop_connection close the connection before sending any response at all
    error_after     in a stream, after this many chunks send an in-stream ``data: {"error": {...}}`` event
                    (what OpenAI does when it fails mid-stream; ``error_object`` if set) and end
                    without [DONE]
    ignore_include_usage   do not send the usage chunk even when ``stream_options.include_usage`` is set
Helpers: ``Reply.error(status, message=None, *, type=None, code=None, param=None, retry_after=None)``
builds an OpenAI error reply with fitting defaults per status; ``Reply.non_json(status, body)`` a text or
HTML error page; ``Reply.tools(ToolCall(...), ...)`` a tool-call turn.

``max_tokens`` / ``max_completion_tokens`` in the request are honoured: the reply is cut to that many
tokens and ``finish_reason`` is ``"length"`` (unless the behaviour overrides it). ``stream_options:
{"include_usage": true}`` is honoured: non-final chunks carry ``"usage": null`` and a final chunk has
empty ``choices`` and the usage.

Auth: set ``server.api_key = "sk-..."`` and requests without ``Authorization: Bearer sk-...`` get OpenAI's
401 ``invalid_api_key`` error. Otherwise no auth is checked (but headers are recorded).

Recordings: ``server.requests`` is a list of ``Recorded(method, path, headers, body, raw, at, outcome)``,
headers lower-cased; ``body`` is the parsed JSON or None; ``outcome`` is filled as the answer goes out
("ok", "error", "broken", "dropped", "client_disconnected"). ``server.chat_requests()`` lists the chat
ones; ``server.wait_for(n, timeout)`` waits until n requests arrived.

``closed_port()`` returns a 127.0.0.1 port nothing listens on (a bound, non-listening socket kept open for
the life of the process, so no other process can take it): connecting gets "connection refused".
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from aiohttp import web

try:
    from tests import responses_upstream
except ImportError:  # tests/ itself on sys.path
    import responses_upstream  # type: ignore[no-redef]

__all__ = [
    "Recorded",
    "Reply",
    "ToolCall",
    "UpstreamServer",
    "closed_port",
    "running_upstream",
    "upstream",
    "upstream_server",
]

# ---------------------------------------------------------------------------------------------------------
# Behaviours


@dataclass
class ToolCall:
    name: str
    arguments: str | dict = "{}"
    id: str | None = None

    def args_text(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


_DEFAULT_ERRORS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    409: ("invalid_request_error", None, "Conflict."),
    413: ("invalid_request_error", None, "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


@dataclass
class Reply:
    text: str | None = None
    tool_calls: list[ToolCall] | None = None
    usage: dict | None = None
    model: str | None = None
    finish_reason: str | None = None
    status: int = 200
    error_object: dict | None = None
    raw_body: str | bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_headers: float = 0.0
    delay_first: float = 0.0
    delay_between: float = 0.0
    chunk_tokens: int = 1
    args_fragment: int = 4
    omit_logprobs: bool = False
    omit_usage: bool = False
    omit_created: bool = False
    omit_refusal: bool = False
    no_done: bool = False
    break_after: int | None = None
    drop_connection: bool = False
    error_after: int | None = None
    ignore_include_usage: bool = False

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | int | None = None,
        **kw: Any,
    ) -> "Reply":
        d_type, d_code, d_msg = _DEFAULT_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}"))
        headers = dict(kw.pop("headers", {}) or {})
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
            headers["retry-after-ms"] = str(int(float(retry_after) * 1000))
        err = {
            "message": message if message is not None else d_msg,
            "type": type or d_type,
            "param": param,
            "code": code if code is not None else d_code,
        }
        return cls(status=status, error_object=err, headers=headers, **kw)

    @classmethod
    def non_json(cls, status: int, body: str | bytes = "<html><body><h1>502 Bad Gateway</h1></body></html>",
                 content_type: str = "text/html", **kw: Any) -> "Reply":
        return cls(status=status, raw_body=body, content_type=content_type, **kw)

    @classmethod
    def tools(cls, *calls: ToolCall, **kw: Any) -> "Reply":
        return cls(tool_calls=list(calls), **kw)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float
    query: dict[str, str] = field(default_factory=dict)
    outcome: str | None = None

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return bool(isinstance(self.body, dict) and self.body.get("stream"))


# ---------------------------------------------------------------------------------------------------------
# Helpers

_TOKEN_RE = re.compile(r"\S+\s*|\s+")


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text) if text else []


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def _prompt_tokens(body: dict) -> int:
    total = 0
    for msg in body.get("messages") or []:
        if isinstance(msg, dict):
            total += len(_content_text(msg.get("content")).split()) + 1  # +1 per message, like real chat templates
    return max(total, 1)


def _last_user_text(body: dict) -> str:
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _content_text(msg.get("content"))
    return ""


def _error_body(status: int, message: str, *, type_: str | None = None, code: str | None = None,
                param: str | None = None) -> dict:
    d_type, d_code, _ = _DEFAULT_ERRORS.get(status, ("invalid_request_error", None, ""))
    return {"error": {"message": message, "type": type_ or d_type, "param": param, "code": code if code is not None else d_code}}


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"

# ---------------------------------------------------------------------------------------------------------
# Server


class UpstreamServer:
    """OpenAI-compatible test server in a background thread. See the module docstring."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, models: list[str] | None = None,
                 api_key: str | None = None) -> None:
        self.host = host
        self._want_port = port
        self.port: int | None = None
        self.models: list[str] = list(models) if models is not None else ["gpt-4o-mini", "gpt-4o", "up-model"]
        self.api_key = api_key
        self.default: Reply = Reply()
        self.defaults: dict[str, Reply] = {}
        self.requests: list[Recorded] = []
        self.stored_responses: set[str] = set()  # ids /v1/responses answered with store on
        self._queue: collections.deque[Reply] = collections.deque()
        self._model_queues: dict[str, collections.deque[Reply]] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._created = 1_700_000_000

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (with /v1), as given to the SDK or to a provider's base_url."""
        return f"{self.origin}/v1"

    def start(self) -> "UpstreamServer":
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._astop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"upstream-{id(self):x}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("upstream server did not start within 10 s")
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> "UpstreamServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _astart(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._want_port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]

    async def _astop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting ------------------------------------------------------------------------------------

    def script(self, *behaviours: Reply, model: str | None = None) -> "UpstreamServer":
        """Queue behaviours for the next chat requests (of ``model`` only, when given)."""
        with self._lock:
            if model is None:
                self._queue.extend(behaviours)
            else:
                self._model_queues.setdefault(model, collections.deque()).extend(behaviours)
        return self

    def set_default(self, behaviour: Reply, model: str | None = None) -> "UpstreamServer":
        """The behaviour used when no scripted one is queued (for ``model`` only, when given)."""
        with self._lock:
            if model is None:
                self.default = behaviour
            else:
                self.defaults[model] = behaviour
        return self

    def pending(self) -> int:
        """How many scripted behaviours have not been consumed yet (all queues)."""
        with self._lock:
            return len(self._queue) + sum(len(q) for q in self._model_queues.values())

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._model_queues.clear()
            self.defaults.clear()
            self.default = Reply()
            self.requests.clear()
            self.stored_responses.clear()
            self.api_key = None

    def _next_behaviour(self, model: str | None) -> Reply:
        with self._lock:
            q = self._model_queues.get(model) if model is not None else None
            if q:
                return q.popleft()
            if self._queue:
                return self._queue.popleft()
            if model is not None and model in self.defaults:
                return self.defaults[model]
            return self.default

    # -- recordings -----------------------------------------------------------------------------------

    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def responses_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/responses"]

    @property
    def last(self) -> Recorded:
        with self._lock:
            return self.requests[-1]

    def wait_for(self, n: int, timeout: float = 5.0, *, path: str | None = None) -> list[Recorded]:
        """Block until at least n requests (to ``path`` if given) were received; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if path is None or r.path == path]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"upstream got {len(got)} request(s), expected {n}")
                self._cond.wait(left)

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        rec = Recorded(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
            at=time.time(),
            query=dict(request.query),
        )
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
        return rec

    # -- handlers -------------------------------------------------------------------------------------

    def _auth_failure(self, request: web.Request) -> web.Response | None:
        if not self.api_key:
            return None
        if request.headers.get("Authorization", "") == f"Bearer {self.api_key}":
            return None
        return web.json_response(
            _error_body(401, "Incorrect API key provided.", code="invalid_api_key"), status=401)

    async def _health(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"status": "ok"})

    async def _not_found(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        rec.outcome = "error"
        return web.json_response(
            _error_body(404, f"Invalid URL ({request.method} {request.path})", code=None), status=404)

    async def _models(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        denied = self._auth_failure(request)
        if denied is not None:
            rec.outcome = "error"
            return denied
        rec.outcome = "ok"
        return web.json_response({
            "object": "list",
            "data": [{"id": m, "object": "model", "created": self._created, "owned_by": "upstream"} for m in self.models],
        })

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        denied = self._auth_failure(request)
        if denied is not None:
            rec.outcome = "error"
            return denied
        body = rec.body
        if not isinstance(body, dict):
            rec.outcome = "error"
            return web.json_response(_error_body(400, "We could not parse the JSON body of your request."), status=400)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            rec.outcome = "error"
            return web.json_response(_error_body(400, "you must provide a model parameter", param="model"), status=400)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            rec.outcome = "error"
            return web.json_response(
                _error_body(400, "Invalid 'messages': expected a non-empty array.", param="messages",
                            code="invalid_value"), status=400)

        b = self._next_behaviour(model)
        try:
            if b.delay_headers:
                await asyncio.sleep(b.delay_headers)
            if b.drop_connection:
                rec.outcome = "dropped"
                self._abort(request)
                return web.Response(status=500)  # never sent: the transport is gone
            if b.status >= 400 or b.raw_body is not None:
                return await self._error_reply(request, rec, b)
            if body.get("stream"):
                return await self._stream_reply(request, rec, b, body)
            return await self._json_reply(request, rec, b, body)
        except (ConnectionResetError, asyncio.CancelledError):
            rec.outcome = rec.outcome or "client_disconnected"
            raise

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await responses_upstream.handle(self, request)

    @staticmethod
    def _abort(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            # abort(): close at once, discard buffers; the peer sees a reset / incomplete message.
            transport.abort()

    async def _error_reply(self, request: web.Request, rec: Recorded, b: Reply) -> web.StreamResponse:
        rec.outcome = "error"
        headers = dict(b.headers)
        if b.raw_body is not None:
            data = b.raw_body.encode() if isinstance(b.raw_body, str) else b.raw_body
            ctype = b.content_type or "text/plain"
        else:
            err = b.error_object or _error_body(b.status, f"HTTP {b.status}")["error"]
            data = json.dumps({"error": err}).encode()
            ctype = "application/json"
        headers["Content-Type"] = ctype
        if b.delay_first:
            resp = web.StreamResponse(status=b.status, headers=headers)
            resp.content_length = len(data)
            await resp.prepare(request)
            await asyncio.sleep(b.delay_first)
            await resp.write(data)
            await resp.write_eof()
            return resp
        return web.Response(status=b.status, body=data, headers=headers)

    # -- content ----------------------------------------------------------------------------------------

    def _plan(self, b: Reply, body: dict) -> tuple[list[str], str, dict]:
        """(reply tokens, finish_reason, usage) for one request."""
        text = b.text if b.text is not None else ("" if b.tool_calls else f"Echo: {_last_user_text(body)}")
        toks = _tokens(text)
        finish = "tool_calls" if b.tool_calls else "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and limit > 0 and not b.tool_calls:
            words = [t for t in toks if t.strip()]
            if len(words) > limit:
                kept, n = [], 0
                for t in toks:
                    if t.strip():
                        if n == limit:
                            break
                        n += 1
                    kept.append(t)
                toks = kept
                finish = "length"
        if b.finish_reason is not None:
            finish = b.finish_reason
        completion = sum(1 for t in toks if t.strip())
        if b.tool_calls:
            completion += sum(len(tc.args_text()) // 4 + 1 for tc in b.tool_calls)
        prompt = _prompt_tokens(body)
        usage = b.usage if b.usage is not None else {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        return toks, finish, usage

    def _base(self, b: Reply, body: dict, obj: str, cid: str) -> dict:
        out: dict[str, Any] = {"id": cid, "object": obj}
        if not b.omit_created:
            out["created"] = int(time.time())
        out["model"] = b.model or body["model"]
        return out

    def _tool_call_ids(self, b: Reply, cid: str) -> list[str]:
        return [tc.id or f"call_{cid[-8:]}_{i}" for i, tc in enumerate(b.tool_calls or [])]

    async def _json_reply(self, request: web.Request, rec: Recorded, b: Reply, body: dict) -> web.StreamResponse:
        cid = f"chatcmpl-up{next(self._ids):06d}"
        toks, finish, usage = self._plan(b, body)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(toks) if (toks or not b.tool_calls) else None}
        if not b.omit_refusal:
            message["refusal"] = None
        if b.tool_calls:
            ids = self._tool_call_ids(b, cid)
            message["tool_calls"] = [
                {"id": ids[i], "type": "function", "function": {"name": tc.name, "arguments": tc.args_text()}}
                for i, tc in enumerate(b.tool_calls)
            ]
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
        if not b.omit_logprobs:
            choice["logprobs"] = None
        out = self._base(b, body, "chat.completion", cid)
        out["choices"] = [choice]
        if not b.omit_usage:
            out["usage"] = usage
        data = json.dumps(out).encode()
        headers = {"Content-Type": "application/json", **b.headers}
        if b.delay_first or b.break_after is not None:
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_length = len(data)
            await resp.prepare(request)
            if b.delay_first:
                await asyncio.sleep(b.delay_first)
            if b.break_after is not None:
                # Headers promised a body of len(data); send half of it and cut the connection.
                await resp.write(data[: len(data) // 2] if b.break_after else b"")
                rec.outcome = "broken"
                self._abort(request)
                return resp
            await resp.write(data)
            await resp.write_eof()
            rec.outcome = "ok"
            return resp
        rec.outcome = "ok"
        return web.Response(status=200, body=data, headers=headers)

    def _chunks(self, b: Reply, body: dict, cid: str) -> Iterator[dict]:
        toks, finish, usage = self._plan(b, body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and not b.ignore_include_usage
        created = int(time.time())

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk"}
            if not b.omit_created:
                out["created"] = created
            out["model"] = b.model or body["model"]
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            if not b.omit_logprobs:
                choice["logprobs"] = None
            out["choices"] = [choice]
            if include_usage and not b.omit_usage:
                out["usage"] = None
            return out

        first: dict[str, Any] = {"role": "assistant", "content": "" if not b.tool_calls or toks else None}
        if not b.omit_refusal:
            first["refusal"] = None
        yield chunk(first)
        n = max(1, b.chunk_tokens)
        for i in range(0, len(toks), n):
            yield chunk({"content": "".join(toks[i:i + n])})
        if b.tool_calls:
            ids = self._tool_call_ids(b, cid)
            frag = max(1, b.args_fragment)
            for i, tc in enumerate(b.tool_calls):
                yield chunk({"tool_calls": [{"index": i, "id": ids[i], "type": "function",
                                             "function": {"name": tc.name, "arguments": ""}}]})
                args = tc.args_text()
                for j in range(0, len(args), frag):
                    yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[j:j + frag]}}]})
        yield chunk({}, finish)
        if include_usage and not b.omit_usage:
            final: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk"}
            if not b.omit_created:
                final["created"] = created
            final["model"] = b.model or body["model"]
            final["choices"] = []
            final["usage"] = usage
            yield final

    async def _stream_reply(self, request: web.Request, rec: Recorded, b: Reply, body: dict) -> web.StreamResponse:
        cid = f"chatcmpl-up{next(self._ids):06d}"
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", **b.headers}
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        if b.delay_first:
            await asyncio.sleep(b.delay_first)
        sent = 0
        for chunk in self._chunks(b, body, cid):
            if b.break_after is not None and sent >= b.break_after:
                rec.outcome = "broken"
                self._abort(request)
                return resp
            if b.error_after is not None and sent >= b.error_after:
                err = b.error_object or {"message": "The server had an error while processing your request.",
                                  "type": "server_error", "param": None, "code": None}
                await resp.write(_sse({"error": err}))
                await resp.write_eof()
                rec.outcome = "error"
                return resp
            if sent and b.delay_between:
                await asyncio.sleep(b.delay_between)
            await resp.write(_sse(chunk))
            sent += 1
        if b.break_after is not None and sent >= b.break_after:
            rec.outcome = "broken"
            self._abort(request)
            return resp
        if not b.no_done:
            await resp.write(_DONE)
        await resp.write_eof()
        rec.outcome = "ok"
        return resp


# ---------------------------------------------------------------------------------------------------------
# Closed port, context manager, pytest fixtures

_reserved: list[socket.socket] = []


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` where a connection is refused (kept reserved for the life of the process)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))  # bound, never listen(): connect() gets ECONNREFUSED and no one else can bind it
    _reserved.append(s)
    return s.getsockname()[1]


@contextmanager
def running_upstream(**kwargs: Any) -> Iterator[UpstreamServer]:
    """``with running_upstream(models=[...], api_key=...) as up:`` - a fresh server for the block."""
    server = UpstreamServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is always there in the test run
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def upstream_server() -> Iterator[UpstreamServer]:
        """One upstream server for the whole session (use ``upstream`` for a per-test reset view)."""
        with running_upstream() as server:
            yield server

    @pytest.fixture
    def upstream(upstream_server: UpstreamServer) -> Iterator[UpstreamServer]:
        """The session's upstream server, reset (script, defaults, recordings, api_key) for this test."""
        upstream_server.reset()
        upstream_server.models = ["gpt-4o-mini", "gpt-4o", "up-model"]
        yield upstream_server
        upstream_server.reset()
