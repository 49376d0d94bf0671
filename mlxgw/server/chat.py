"""POST /v1/chat/completions in the OpenAI dialect (GATE-01, GATE-02).

The request path: read the body (bounded), check it, pick the route from the current Runtime, then the
attempt loop shared with /v1/messages (`attempts.run`) over the route's ordered targets. A target that
fails before any byte reached the client (per `routing.policy`: connection refused, timeouts, 5xx, 429,
a stream that breaks before any content...) is retried or hands over to the next one; the HTTP status is
decided only once a backend answered.
After the first byte, a failure ends the stream with an error event and no `[DONE]`. One audit row per
request, queued when the answer is complete.

Per target, `send` picks the wire: an OpenAI-dialect backend gets the body as is (model rewritten,
`developer` sent as `system` unless the backend is OpenAI's own); an Anthropic backend gets it translated
to the Messages API, and its answer, stream and errors are translated back.
"""

from __future__ import annotations

import logging
import time

import falcon

from mlxgw.backends.base import ChatResult, UpstreamError, UpstreamStatusError
from mlxgw.dialects import anthropic as an
from mlxgw.dialects import openai as oa
from mlxgw.dialects.anthropic.streams import AnthropicToOpenAIStream
from mlxgw.dialects.jsonfast import dumps
from mlxgw.server import attempts
from mlxgw.server.audited import AuditedEndpoint
from mlxgw.server.errors import ApiError, from_upstream, with_summary
from mlxgw.server.relays import AnthropicToOpenAIRelay, OpenAIRelay

log = logging.getLogger("mlxgw.server")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def read_body(req, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes with 413 (before reading it when the length
    is declared, while reading it when the body is chunked)."""
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    if length is not None:
        return await req.stream.read()
    parts, size = [], 0
    async for part in req.stream:
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(limit: int) -> ApiError:
    return ApiError.of(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


class ChatCompletions(AuditedEndpoint):
    client_api = "openai"

    async def _serve(self, req, resp, row: dict, t0: float) -> None:
        raw = await read_body(req, self.gw.config.max_body_bytes)
        try:
            body = oa.parse_request(raw)
        except oa.RequestError as exc:
            raise ApiError.of(400, exc.message, param=exc.param, code=exc.code) from None
        model = body["model"]
        stream = bool(body.get("stream"))
        row["requested_model"], row["stream"] = model, stream
        rt = self.gw.runtime
        snap = rt.snapshot
        route = snap.route(model)
        if route is None:
            raise ApiError.of(404, f"The model `{model}` does not exist or no route of this gateway matches it.",
                              param="model", code="model_not_found")
        row["route"] = route.key
        keep_usage = oa.wants_usage(body)

        async def send(backend, backend_model: str, timeouts):
            if backend.api == "openai":  # pass-through, normalised
                row["backend_api"] = "openai"
                up = oa.upstream_request(body, backend_model)
                if not getattr(backend, "developer_role", False):
                    up = oa.developer_to_system(up)
                if stream:
                    return backend.stream(up, timeouts), None
                return await backend.chat(up, timeouts), None
            row["backend_api"] = "anthropic"  # translated to Anthropic's Messages API
            try:
                up = an.from_openai_request(body, backend_model)
            except an.RequestError as exc:
                raise ApiError.of(400, exc.message, param=exc.param) from None
            if stream:
                return backend.messages_stream(up, timeouts), up
            return await backend.messages(up, timeouts), up

        stream_id = "chatcmpl-" + row["id"][4:]

        def translator(target, backend_model: str, context):
            if row["backend_api"] != "openai":
                return AnthropicToOpenAIRelay(AnthropicToOpenAIStream(stream_id, backend_model, keep_usage))
            return OpenAIRelay(target.provider, backend_model, stream_id, int(time.time()), keep_usage)

        try:
            ans = await attempts.run(rt, route, model, row, t0, stream, send, translator)
        except attempts.Failed as f:
            raise with_summary(self._failure(f.error, row["backend_api"]), f.summary) from None
        translated = row["backend_api"] != "openai"
        if stream:
            resp.content_type = "text/event-stream"
            resp.set_headers(SSE_HEADERS)
            resp.stream = attempts.relay(ans.first, ans.chunks, ans.translator, row,
                                         lambda status, err: self._finish(row, t0, status, err),
                                         req.scope.get("mlxgw.receive"), translated=True, ended=ans.ended)
        elif translated:
            out = an.to_openai_response(ans.result.body, ans.backend_model)
            row["input_tokens"], row["output_tokens"], row["cached_tokens"] = an.audit_tokens(ans.result.body.get("usage"))
            resp.content_type = falcon.MEDIA_JSON
            resp.data = dumps(out)
            self._finish(row, t0, 200)
        else:
            self._respond(resp, ans.result, row, t0, ans.backend_model)

    @staticmethod
    def _failure(exc: UpstreamError, wire: str | None) -> ApiError:
        """The OpenAI client's error for an upstream failure before the first byte; an Anthropic
        backend's error body is mapped to OpenAI's shape and status (529 -> 503)."""
        if wire == "anthropic" and isinstance(exc, UpstreamStatusError):
            status, body = an.openai_error_from_anthropic(exc.status, exc.body, exc.provider)
            return ApiError(status, body, {"retry-after": exc.retry_after} if exc.retry_after else None)
        return from_upstream(exc)

    def _respond(self, resp, result: ChatResult, row: dict, t0: float, backend_model: str) -> None:
        out = oa.response(result.body, backend_model)
        row["input_tokens"], row["output_tokens"], row["cached_tokens"] = oa.tokens(out.get("usage"))
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(out)
        self._finish(row, t0, 200)
