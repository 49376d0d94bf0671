"""The Anthropic messages dialect (POST /v1/messages, GATE-05) and /v1/messages/count_tokens.

Its pairs, in order of preference:
- `anthropic` (native pass-through: Anthropic's cloud, vllm-mlx): the client's body untouched but for
  `model`, plus the client's `anthropic-beta`/`anthropic-version` headers; the answer, stream and error
  bodies reach the client as they are (clients match their wording);
- `openai`: the body translated to OpenAI chat completions (for the backend's chat target), its answer,
  stream and errors translated back.
Errors the gateway itself raises here are Anthropic-shaped ({"type": "error", "error": {...}}), and every
response carries `request-id` (the gateway's id, the audit row's) plus `upstream-request-id` when the
backend sent one.
"""

from __future__ import annotations

import falcon

from mlxgw.backends.base import (
    Backend, ChatResult, ContextExceeded, UpstreamError, UpstreamStatusError, UpstreamTimeout,
)  # fmt: skip
from mlxgw.dialects import anthropic as an
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads
from mlxgw.kinds import ANTHROPIC_MESSAGES, OPENAI_CHAT
from mlxgw.routing.policy import ModelLoading
from mlxgw.server.dialect import Dialect, Exchange, Leg, Pair
from mlxgw.server.errors import ApiError
from mlxgw.server.gateway import Gateway
from mlxgw.server.inference import audited, read_body
from mlxgw.server.relays import AnthropicRelay, OpenAIToAnthropicRelay
from mlxgw.server.streaming import Translator

CLIENT_HEADERS = ("anthropic-beta", "anthropic-version")


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


def _status_headers(exc: UpstreamStatusError) -> dict:
    headers = {}
    if exc.retry_after:
        headers["retry-after"] = exc.retry_after
    if exc.request_id:
        headers["upstream-request-id"] = exc.request_id
    return headers


def client_headers(req) -> dict:
    out = {}
    for k in CLIENT_HEADERS:
        v = req.get_header(k)
        if v:
            out[k] = v
    return out


class Native(Pair):
    wire = ANTHROPIC_MESSAGES

    def leg(self, ex: Exchange, backend: Backend, backend_model: str) -> Leg:
        up = dict(ex.body)
        up["model"] = backend_model
        return Leg(self, up, backend_model, ex.headers)

    def translator(self, ex: Exchange, leg: Leg, provider: str) -> Translator:
        return AnthropicRelay()

    def response(self, ex: Exchange, leg: Leg, result: ChatResult) -> tuple[dict, tuple]:
        return result.body, an.audit_tokens(result.body.get("usage"))

    def status_error(self, exc: UpstreamStatusError) -> ApiError | None:
        return passthrough_error(exc.status, exc.body, exc.provider, _status_headers(exc)) if exc.body else None


class ToOpenAI(Pair):
    wire = OPENAI_CHAT

    def leg(self, ex: Exchange, backend: Backend, backend_model: str) -> Leg:
        names = an.ToolNames()
        return Leg(self, an.to_openai_request(ex.body, backend_model, backend.chat_target, names), backend_model,
                   context=names)

    def translator(self, ex: Exchange, leg: Leg, provider: str) -> Translator:
        return OpenAIToAnthropicRelay(an.OpenAIToAnthropicStream(
            "msg_" + ex.request_id[4:], leg.backend_model, an.count_tokens(ex.body), leg.context, ex.body.get("stop_sequences")))

    def response(self, ex: Exchange, leg: Leg, result: ChatResult) -> tuple[dict, tuple]:
        out = an.from_openai_response(result.body, leg.backend_model, leg.context, ex.body.get("stop_sequences"))
        return out, an.audit_tokens(out.get("usage"))


class Messages(Dialect):
    wire = ANTHROPIC_MESSAGES
    pairs = (Native(), ToOpenAI())

    def start(self, req, resp) -> None:
        resp.set_header("request-id", req.context.request_id)  # Anthropic's SDKs read this header

    def answered(self, resp, headers: dict | None) -> None:
        rid = headers.get("request-id") if headers else None
        if rid:
            resp.set_header("upstream-request-id", rid)

    def parse(self, req, raw: bytes, request_id: str) -> Exchange:
        try:
            body = an.parse_request(raw)
        except an.RequestError as exc:
            raise error(400, exc.message) from None
        return Exchange(body, body["model"], bool(body.get("stream")), request_id, client_headers(req))

    def not_found(self, model: str) -> ApiError:
        return error(404, f"model: {model} (no route of this gateway matches it)", "not_found_error")

    def upstream_error(self, exc: UpstreamError) -> ApiError:
        if isinstance(exc, ModelLoading):
            return error(529, exc.message, "overloaded_error", {"retry-after": exc.retry_after})
        if isinstance(exc, ContextExceeded):  # Anthropic's wording, which Claude Code matches to compact
            return error(400, exc.message, "invalid_request_error")
        if isinstance(exc, UpstreamStatusError):
            status, body = an.from_openai_error(exc.status, exc.body, exc.provider)
            return ApiError(status, body, _status_headers(exc))
        if isinstance(exc, UpstreamTimeout):
            return error(504, exc.message, "timeout_error")
        return error(502, exc.message, "api_error")


class CountTokens:
    """POST /v1/messages/count_tokens: for a local model, the exact count with its own tokenizer and chat
    template (`Backend.prompt_tokens`, no engine started); else the first target's own count when its
    backend speaks Anthropic's wire (Anthropic's cloud), else (or when that call fails) the documented
    approximation of `mlxgw.dialects.anthropic.tokens`, which counts system, messages and tools."""

    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def on_post(self, req, resp) -> None:
        resp.set_header("request-id", req.context.request_id)
        async with audited(self.gw, req, ANTHROPIC_MESSAGES) as rec:
            await self._count(req, resp, rec)

    async def _count(self, req, resp, rec) -> None:
        raw = await read_body(req, self.gw.config.max_body_bytes)
        try:
            body = an.parse_request(raw, require_max_tokens=False)
        except an.RequestError as exc:
            raise error(400, exc.message) from None
        model = rec.requested_model = body["model"]
        rt = self.gw.runtime
        route = rt.snapshot.route(model)
        if route is None:
            raise Messages().not_found(model)
        rec.route = route.key
        count = None
        target = next((t for t in route.targets if t.provider in rt.backends), None)
        backend = rt.backends[target.provider] if target is not None else None
        if backend is not None:
            up = dict(body)
            up["model"] = rt.snapshot.backend_model(target, model)
            count = await backend.prompt_tokens(ANTHROPIC_MESSAGES, up)  # a local model's exact count
        if count is None and backend is not None and ANTHROPIC_MESSAGES in backend.wires:
            try:
                n = (await backend.count_tokens(up, target.timeouts, client_headers(req))).body.get("input_tokens")
                count = n if isinstance(n, int) else None
            except UpstreamError:
                count = None
        if count is None:
            count = an.count_tokens(body)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps({"input_tokens": count})
