"""The inference routes' own lane: POST /v1/chat/completions, /v1/messages and /v1/responses answered
straight from ASGI, by the same resource, checks and error handlers, without Falcon's per-request work.

Why: for each request Falcon collects the headers into its own dict again, builds a Request, a Response
and a BoundedStream, routes the path, runs the middleware loop and renders the headers: about 700
bytecodes, a tenth of all a JSON request runs on the event loop (bench/opcodes.py). The inference
routes need none of that generality: their path is exact, their method POST, and GatewayApp.__call__
has the headers as a dict already.

What stays Falcon's: every other path and method, and the rare request whose handling here could differ
from Falcon's: one with a repeated header (Falcon joins the values with commas, a dict keeps the last).
What a request taking the lane gets is what Falcon would give it: the same middleware checks
(RequestContext.check, which its process_request runs: request id, Host, Origin and CORS, keys), the
same responder (Inference.on_post), the same error handlers (server/errors.py), the same headers in the
same order, the body read the same way; tests/test_server_lane.py sends the same requests both ways and
compares.
"""

from __future__ import annotations

import falcon
from falcon.util.misc import http_status_to_code

from mlxgw.server.errors import handler_for

try:  # Falcon's own header encoder, compiled where its wheel has Cython (a Python loop costs 3x more)
    from falcon.util.misc import _encode_items_to_latin1 as encode_headers
except ImportError:  # a Falcon that renamed it
    def encode_headers(headers: dict) -> list[tuple[bytes, bytes]]:
        return [(k.encode("latin1"), v.encode("latin1")) for k, v in headers.items()]

_EOF = {"type": "http.response.body", "body": b"", "more_body": False}


class Context:
    """`req.context`: what the middleware and resources keep on it."""

    __slots__ = ("request_id",)


class Request:
    """The part of falcon.asgi.Request the inference resource, its dialects and the checks use.
    It is also its own `stream` (read() and async iteration), as falcon's BoundedStream is."""

    __slots__ = ("scope", "path", "method", "context", "_headers", "_receive", "_first")

    def __init__(self, scope: dict, receive, first: dict, headers: dict):
        self.scope = scope
        self.path = scope["path"]
        self.method = "POST"
        self.context = Context()
        self._headers = headers  # scope["mlxgw.headers"]: names lower case, no name repeated
        self._receive = receive
        self._first = first  # the first http.request event, received before anything else (as Falcon does)

    def get_header(self, name: str, required: bool = False, default: str | None = None) -> str | None:
        value = self._headers.get(name.lower().encode("latin1"))
        if value is None:
            if required:
                raise falcon.HTTPMissingHeader(name)
            return default
        return value.decode("latin1")

    @property
    def content_length(self) -> int | None:
        """Falcon's reading: none or empty is None, anything else a non-negative number or a 400."""
        value = self._headers.get(b"content-length")
        if not value:
            return None
        try:
            length = int(value)
        except ValueError:
            raise falcon.HTTPInvalidHeader("The value of the header must be a number.", "Content-Length") from None
        if length < 0:
            raise falcon.HTTPInvalidHeader("The value of the header must be a positive number.", "Content-Length")
        return length

    @property
    def stream(self) -> Request:
        return self

    async def read(self) -> bytes:
        """The whole body, or what came of it before the client went away (BoundedStream.read())."""
        if not self._first.get("more_body", False):  # the common body, whole in the first event
            return self._first.get("body", b"")
        return b"".join([part async for part in self])

    async def __aiter__(self):
        body = self._first.get("body", b"")
        if body:
            yield body
        if self._first.get("more_body", False):
            async for part in self._rest():
                yield part

    async def _rest(self):
        """The body's parts after the first event's, until the last or a disconnect."""
        receive = self._receive
        while True:
            event = await receive()
            if event["type"] != "http.request":  # http.disconnect: the body ends where it stopped
                return
            body = event.get("body", b"")
            if body:
                yield body
            if not event.get("more_body", False):
                return


class Response:
    """The part of falcon.asgi.Response the inference resource, its dialects and the error handlers set."""

    __slots__ = ("status", "headers", "data", "stream", "complete")

    def __init__(self):
        self.status = 200
        self.headers: dict[str, str] = {}  # lower-case names, in the order set (as Falcon keeps them)
        self.data: bytes | None = None
        self.stream = None
        self.complete = False

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @content_type.setter
    def content_type(self, value: str) -> None:
        self.headers["content-type"] = value

    def set_header(self, name: str, value) -> None:
        self.headers[name.lower()] = str(value)

    def set_headers(self, headers: dict) -> None:
        for name, value in headers.items():
            self.headers[name.lower()] = str(value)


class Lane:
    """One inference route's lane: `await lane(scope, receive, send, headers)` answers the request."""

    __slots__ = ("responder", "check", "default_type")

    def __init__(self, resource, check, default_type: str = falcon.MEDIA_JSON):
        self.responder = resource.on_post
        self.check = check  # RequestContext.check: the middleware's checks, synchronous
        self.default_type = default_type  # Falcon's default media type, for a response that set none

    async def __call__(self, scope: dict, receive, send, headers: dict) -> None:
        first = await receive()
        if first["type"] != "http.request":  # the client left before its request: nothing to answer
            return
        req = Request(scope, receive, first, headers)
        resp = Response()
        try:
            self.check(req, resp)
            if not resp.complete:
                await self.responder(req, resp)
        except Exception as ex:
            resp.data = None  # Falcon clears the body before an error handler writes its own
            await handler_for(ex)(req, resp, ex, None)
        status = resp.status
        if status.__class__ is not int:
            status = http_status_to_code(status)
        out = resp.headers
        if "content-type" not in out:
            out["content-type"] = self.default_type
        stream = resp.stream
        if stream is None:
            data = resp.data or b""
            out["content-length"] = str(len(data))
            await send({"type": "http.response.start", "status": status, "headers": encode_headers(out)})
            await send({"type": "http.response.body", "body": data})
            return
        await send({"type": "http.response.start", "status": status, "headers": encode_headers(out)})
        async for data in stream:  # as Falcon relays an async generator
            if data is None:
                break
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send(_EOF)
