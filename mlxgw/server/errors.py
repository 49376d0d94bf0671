"""Errors as clients see them, in the client's dialect, with a fitting status, whatever went wrong:
OpenAI's `{"error": {message, type, param, code}}`, or on Anthropic's endpoints (/v1/messages...)
Anthropic's `{"type": "error", "error": {type, message}}` plus a `request-id` header. No traceback ever
reaches a client; unexpected exceptions are logged here with the request id and answered with a plain 500."""

from __future__ import annotations

import logging

import falcon

from mlxgw.backends.base import (
    ContextExceeded, UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout,
)  # fmt: skip
from mlxgw.dialects import anthropic as an
from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import dumps
from mlxgw.routing.policy import ModelLoading
from mlxgw.text import clip

log = logging.getLogger("mlxgw.server")


class ApiError(Exception):
    """A failure answered with `status` and an error `body` (OpenAI's shape, or Anthropic's when the
    resource built it so); `raw`, when set, is an upstream error body sent byte for byte instead."""

    def __init__(self, status: int, body: dict, headers: dict | None = None):
        super().__init__(body["error"]["message"])
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.raw: bytes | None = None

    @property
    def message(self) -> str:
        return self.body["error"]["message"]

    @classmethod
    def of(cls, status: int, message: str, param: str | None = None, code: str | None = None,
           type: str | None = None) -> ApiError:
        return cls(status, oa.error_body(message, status, type=type, param=param, code=code))


def from_upstream(exc: UpstreamError) -> ApiError:
    """The client-facing error for an upstream failure that happened before the first byte."""
    if isinstance(exc, ModelLoading):
        return ApiError(503, oa.error_body(exc.message, 503, type="server_error", code="model_loading"),
                        {"retry-after": exc.retry_after})
    if isinstance(exc, ContextExceeded):  # OpenAI's own wording and code (Chat Completions and Responses)
        return ApiError.of(400, f"This model's maximum context length is {exc.context_length} tokens. However, "
                                f"your messages resulted in {exc.prompt_tokens} tokens"
                                + (f" (and {exc.max_tokens} max_tokens)" if exc.max_tokens else "")
                                + f". Please reduce the length of the messages. ({exc.message})",
                           param="messages", code="context_length_exceeded", type="invalid_request_error")
    if isinstance(exc, UpstreamStatusError):
        headers = {"retry-after": exc.retry_after} if exc.retry_after else None
        return ApiError(exc.status, oa.upstream_error(exc.status, exc.body, exc.provider), headers)
    if isinstance(exc, UpstreamTimeout):
        return ApiError.of(504, exc.message, code="timeout", type="timeout_error")
    if isinstance(exc, (UpstreamConnectError, UpstreamProtocolError)):
        return ApiError.of(502, exc.message, code="upstream_unavailable", type="api_error")
    return ApiError.of(502, exc.message, type="api_error")


def with_summary(exc: ApiError, summary: str | None) -> ApiError:
    """`exc` with its message replaced by `summary` (every attempt of a request that tried several
    targets), so the client gets one clear error listing them; the last error's status and type stay."""
    if summary:
        exc.body = {**exc.body, "error": {**exc.body["error"], "message": summary}}
        exc.raw = None
    return exc


def anthropic_path(path: str) -> bool:
    """Anthropic's endpoints, whose errors take Anthropic's shape."""
    return path.startswith("/v1/messages")


def serialize(req, resp, status: int, body: dict) -> None:
    """The per-dialect error serializer: `body` as built (OpenAI's shape unless a resource made it
    Anthropic's), converted to Anthropic's shape on Anthropic's endpoints."""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    if anthropic_path(req.path):
        resp.set_header("request-id", getattr(req.context, "request_id", None) or "-")
        if body.get("type") != "error":
            err = body["error"]
            body = an.error_body(err["message"], status, an.error_type(status))
    resp.data = dumps(body)


async def handle_api_error(req, resp, ex: ApiError, params) -> None:
    serialize(req, resp, ex.status, ex.body)
    if ex.raw is not None:
        resp.data = ex.raw
    for k, v in ex.headers.items():
        resp.set_header(k, v)


async def handle_http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    """Falcon's own errors (unknown path, wrong method) in OpenAI's shape."""
    status = ex.status_code
    message = ex.description or ex.title or "error"
    if status == 404:
        message = f"Unknown request URL: {clip(req.method, 16)} {clip(req.path, 300)}."
    elif status == 405:
        message = f"Method {clip(req.method, 16)} is not allowed on {clip(req.path, 300)}."
    serialize(req, resp, status, oa.error_body(message, status, code=None))
    for k, v in (ex.headers or {}).items():
        resp.set_header(k, v)


async def handle_unexpected(req, resp, ex: Exception, params) -> None:
    rid = getattr(req.context, "request_id", "-")
    log.exception("request %s failed", rid)
    serialize(req, resp, 500, oa.error_body(f"internal error in the gateway (request {rid})", 500,
                                            code="internal_error"))


# Which handler answers which exception, the most specific first: Falcon's app is given these, and the
# inference routes' lane (server/lane.py) picks from them the way Falcon does.
HANDLERS = ((ApiError, handle_api_error), (falcon.HTTPError, handle_http_error), (Exception, handle_unexpected))


def handler_for(ex: Exception):
    return next(handler for kind, handler in HANDLERS if isinstance(ex, kind))


def install(app) -> None:
    for kind, handler in HANDLERS:
        app.add_error_handler(kind, handler)
