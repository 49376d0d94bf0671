"""Errors as clients see them: OpenAI's `{"error": {message, type, param, code}}` with a fitting
status, whatever went wrong. No traceback ever reaches a client; unexpected exceptions are logged here
with the request id and answered with a plain 500."""

from __future__ import annotations

import logging

import falcon

from mlxgw.backends.base import (
    UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout,
)  # fmt: skip
from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import dumps

log = logging.getLogger("mlxgw.server")


class ApiError(Exception):
    """A failure answered with `status` and an OpenAI error `body`."""

    def __init__(self, status: int, body: dict, headers: dict | None = None):
        super().__init__(body["error"]["message"])
        self.status = status
        self.body = body
        self.headers = headers or {}

    @property
    def message(self) -> str:
        return self.body["error"]["message"]

    @classmethod
    def of(cls, status: int, message: str, param: str | None = None, code: str | None = None,
           type: str | None = None) -> ApiError:
        return cls(status, oa.error_body(message, status, type=type, param=param, code=code))


def from_upstream(exc: UpstreamError) -> ApiError:
    """The client-facing error for an upstream failure that happened before the first byte."""
    if isinstance(exc, UpstreamStatusError):
        headers = {"retry-after": exc.retry_after} if exc.retry_after else None
        return ApiError(exc.status, oa.upstream_error(exc.status, exc.body, exc.provider), headers)
    if isinstance(exc, UpstreamTimeout):
        return ApiError.of(504, exc.message, code="timeout", type="timeout_error")
    if isinstance(exc, (UpstreamConnectError, UpstreamProtocolError)):
        return ApiError.of(502, exc.message, code="upstream_unavailable", type="api_error")
    return ApiError.of(502, exc.message, type="api_error")


async def handle_api_error(req, resp, ex: ApiError, params) -> None:
    resp.status = ex.status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps(ex.body)
    for k, v in ex.headers.items():
        resp.set_header(k, v)


async def handle_http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    """Falcon's own errors (unknown path, wrong method) in OpenAI's shape."""
    status = ex.status_code
    message = ex.description or ex.title or "error"
    if status == 404:
        message = f"Unknown request URL: {req.method} {req.path}."
    elif status == 405:
        message = f"Method {req.method} is not allowed on {req.path}."
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps(oa.error_body(message, status, code=None))
    for k, v in (ex.headers or {}).items():
        resp.set_header(k, v)


async def handle_unexpected(req, resp, ex: Exception, params) -> None:
    rid = getattr(req.context, "request_id", "-")
    log.exception("request %s failed", rid)
    resp.status = 500
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps(oa.error_body(f"internal error in the gateway (request {rid})", 500, code="internal_error"))


def install(app) -> None:
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(ApiError, handle_api_error)
