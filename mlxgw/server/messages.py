"""POST /v1/messages and /v1/messages/count_tokens in Anthropic's dialect (GATE-05).

Routed by model name exactly like chat completions, through the same attempt loop (`attempts.run`).
Per target, `send` picks the wire:
- a backend that speaks Anthropic natively (`anthropic_native`: Anthropic's cloud, vllm-mlx) gets the
  client's body untouched but for `model`, plus the client's `anthropic-beta`/`anthropic-version`
  headers; its answer, stream and error bodies reach the client as they are (clients match their wording);
- any other backend gets the body translated to OpenAI chat completions, and its answer, stream and
  errors are translated back.
Errors the gateway itself raises here are Anthropic-shaped ({"type": "error", "error": {...}}), and every
response carries `request-id` (the gateway's id, the audit row's) plus `upstream-request-id` when the
backend sent one.
"""

from __future__ import annotations

import falcon

from mlxgw.backends.base import (
    UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout,
)  # fmt: skip
from mlxgw.dialects import anthropic as an
from mlxgw.dialects.anthropic.requests import OpenAITarget
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads
from mlxgw.routing.policy import ModelLoading
from mlxgw.server import attempts
from mlxgw.server.audited import AuditedEndpoint
from mlxgw.server.attempts import Failed
from mlxgw.server.chat import SSE_HEADERS, read_body
from mlxgw.server.errors import ApiError, with_summary
from mlxgw.server.gateway import Gateway
from mlxgw.server.relays import AnthropicRelay, OpenAIToAnthropicRelay

CLIENT_HEADERS = ("anthropic-beta", "anthropic-version")
OPENAI_PROPER = OpenAITarget(max_tokens_field="max_completion_tokens", max_stop=4)
COMPATIBLE = OpenAITarget()


def error(status: int, message: str, type: str | None = None, headers: dict | None = None) -> ApiError:
    """A gateway error in Anthropic's shape."""
    return ApiError(status, an.error_body(message, status, type), headers)


def passthrough_error(status: int, raw: bytes, provider: str, headers: dict | None = None) -> ApiError:
    """An Anthropic backend's JSON error body, sent to the client byte for byte (clients match its
    wording); a body that is not JSON (a proxy's HTML page) is wrapped in Anthropic's shape instead."""
    try:
        data = loads(raw)
    except DecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("error"), dict):
        text = raw.decode("utf-8", "replace").strip()[:2000] or f"HTTP {status}"
        return error(status, f"provider '{provider}' answered {status}: {text}", headers=headers)
    exc = ApiError(status, {"type": "error", "error": {"type": str(data["error"].get("type") or an.error_type(status)),
                                                       "message": str(data["error"].get("message") or "")}}, headers)
    exc.raw = raw
    return exc


def from_upstream(exc: UpstreamError, wire: str | None) -> ApiError:
    """The Anthropic client's error for an upstream failure before the first byte."""
    if isinstance(exc, ModelLoading):
        return error(529, exc.message, "overloaded_error", {"retry-after": exc.retry_after})
    if isinstance(exc, UpstreamStatusError):
        headers = {}
        if exc.retry_after:
            headers["retry-after"] = exc.retry_after
        if getattr(exc, "request_id", None):
            headers["upstream-request-id"] = exc.request_id
        if wire == "anthropic" and exc.body:
            return passthrough_error(exc.status, exc.body, exc.provider, headers)
        status, body = an.from_openai_error(exc.status, exc.body, exc.provider)
        return ApiError(status, body, headers)
    if isinstance(exc, UpstreamTimeout):
        return error(504, exc.message, "timeout_error")
    if isinstance(exc, (UpstreamConnectError, UpstreamProtocolError)):
        return error(502, exc.message, "api_error")
    return error(502, exc.message, "api_error")


def client_headers(req) -> dict:
    out = {}
    for k in CLIENT_HEADERS:
        v = req.get_header(k)
        if v:
            out[k] = v
    return out


def openai_target(backend) -> OpenAITarget:
    return OPENAI_PROPER if getattr(backend, "kind", None) == "openai" else COMPATIBLE


class Messages(AuditedEndpoint):
    client_api = "anthropic"

    async def on_post(self, req, resp) -> None:
        resp.set_header("request-id", req.context.request_id)  # Anthropic's SDKs read this header
        await super().on_post(req, resp)

    async def _serve(self, req, resp, row: dict, t0: float) -> None:
        raw = await read_body(req, self.gw.config.max_body_bytes)
        try:
            body = an.parse_request(raw)
        except an.RequestError as exc:
            raise error(400, exc.message) from None
        model = body["model"]
        stream = bool(body.get("stream"))
        row["requested_model"], row["stream"] = model, stream
        rt = self.gw.runtime
        route = rt.snapshot.route(model)
        if route is None:
            raise error(404, f"model: {model} (no route of this gateway matches it)", "not_found_error")
        row["route"] = route.key
        headers = client_headers(req)

        async def send(backend, backend_model: str, timeouts):
            if getattr(backend, "anthropic_native", False):
                row["backend_api"] = "anthropic"
                up = dict(body)
                up["model"] = backend_model
                if stream:
                    return backend.messages_stream(up, timeouts, headers), None
                return await backend.messages(up, timeouts, headers), None
            row["backend_api"] = "openai"
            names = an.ToolNames()
            up = an.to_openai_request(body, backend_model, openai_target(backend), names)
            if stream:
                return backend.stream(up, timeouts), names
            return await backend.chat(up, timeouts), names

        def translator(target, backend_model: str, context):
            if row["backend_api"] == "anthropic":
                return AnthropicRelay()
            return OpenAIToAnthropicRelay(an.OpenAIToAnthropicStream(
                "msg_" + row["id"][4:], model, an.count_tokens(body), context, body.get("stop_sequences")))

        try:
            ans = await attempts.run(rt, route, model, row, t0, stream, send, translator)
        except Failed as f:
            raise with_summary(from_upstream(f.error, row["backend_api"]), f.summary) from None
        native = row["backend_api"] == "anthropic"
        if stream:
            resp.content_type = "text/event-stream"
            resp.set_headers(SSE_HEADERS)
            up_rid = getattr(ans.chunks, "request_id", None)
            if up_rid:
                resp.set_header("upstream-request-id", up_rid)
            resp.stream = attempts.relay(ans.first, ans.chunks, ans.translator, row,
                                         lambda status, err: self._finish(row, t0, status, err),
                                         req.scope.get("mlxgw.receive"), translated=True, ended=ans.ended)
            return
        result = ans.result
        up_rid = (result.headers or {}).get("request-id") if result.headers else None
        if up_rid:
            resp.set_header("upstream-request-id", up_rid)
        out = result.body if native else an.from_openai_response(result.body, model, ans.context,
                                                                 body.get("stop_sequences"))
        row["input_tokens"], row["output_tokens"], row["cached_tokens"] = an.audit_tokens(out.get("usage"))
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(out)
        self._finish(row, t0, 200)


class CountTokens:
    """POST /v1/messages/count_tokens: the first target's own count when it is an Anthropic backend with
    that endpoint, else (or when that call fails) the documented approximation of
    `mlxgw.dialects.anthropic.tokens`, which counts system, messages and tools."""

    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def on_post(self, req, resp) -> None:
        resp.set_header("request-id", req.context.request_id)
        raw = await read_body(req, self.gw.config.max_body_bytes)
        try:
            body = an.parse_request(raw, require_max_tokens=False)
        except an.RequestError as exc:
            raise error(400, exc.message) from None
        model = body["model"]
        rt = self.gw.runtime
        route = rt.snapshot.route(model)
        if route is None:
            raise error(404, f"model: {model} (no route of this gateway matches it)", "not_found_error")
        count = None
        for target in route.targets:
            backend = rt.backends.get(target.provider)
            if backend is None:
                continue
            if getattr(backend, "anthropic_native", False) and hasattr(backend, "count_tokens"):
                up = dict(body)
                up["model"] = rt.snapshot.backend_model(target, model)
                try:
                    result = await backend.count_tokens(up, target.timeouts, client_headers(req))
                    n = result.body.get("input_tokens")
                    count = n if isinstance(n, int) else None
                except UpstreamError:
                    count = None
            break
        if count is None:
            count = an.count_tokens(body)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps({"input_tokens": count})

