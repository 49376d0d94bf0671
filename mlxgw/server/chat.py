"""The OpenAI chat-completions dialect (POST /v1/chat/completions, GATE-01, GATE-02).

Its pairs, in order of preference:
- `openai` (pass-through, normalised): the body as is, model rewritten, `developer` sent as `system`
  unless the backend's chat target takes it (OpenAI's own cloud); answers and chunks normalised to the
  conformance schema (`dialects/openai.py`), usage kept on a stream only when the client asked for it;
- `anthropic`: the body translated to the Messages API, its answer, stream and errors translated back.
Errors are OpenAI's `{"error": {message, type, param, code}}`.
"""

from __future__ import annotations

import time

from mlxgw.backends.base import Backend, ChatResult, UpstreamError, UpstreamStatusError
from mlxgw.dialects import anthropic as an
from mlxgw.dialects import openai as oa
from mlxgw.dialects.anthropic.streams import AnthropicToOpenAIStream
from mlxgw.kinds import ANTHROPIC_MESSAGES, OPENAI_CHAT
from mlxgw.server.dialect import Dialect, Exchange, Leg, Pair
from mlxgw.server.errors import ApiError, from_upstream
from mlxgw.server.relays import AnthropicToOpenAIRelay, OpenAIRelay
from mlxgw.server.streaming import Translator


def _stream_id(ex: Exchange) -> str:
    return "chatcmpl-" + ex.request_id[4:]


class PassThrough(Pair):
    wire = OPENAI_CHAT

    def leg(self, ex: Exchange, backend: Backend, backend_model: str) -> Leg:
        up = oa.upstream_request(ex.body, backend_model)
        if not backend.chat_target.developer_role:
            up = oa.developer_to_system(up)
        return Leg(self, up, backend_model)

    def translator(self, ex: Exchange, leg: Leg, provider: str) -> Translator:
        return OpenAIRelay(provider, leg.backend_model, _stream_id(ex), ex.created, oa.wants_usage(ex.body))

    def response(self, ex: Exchange, leg: Leg, result: ChatResult) -> tuple[dict, tuple]:
        body = result.body
        counts = oa.response_as_is(body)  # (its token counts come out of the same pass)
        if counts is not None:  # conformant: the upstream's body as it came
            return body, counts
        out = oa.response(body, leg.backend_model)
        return out, oa.tokens(out.get("usage"))


class ToAnthropic(Pair):
    wire = ANTHROPIC_MESSAGES

    def leg(self, ex: Exchange, backend: Backend, backend_model: str) -> Leg:
        try:
            return Leg(self, an.from_openai_request(ex.body, backend_model), backend_model)
        except an.RequestError as exc:
            raise ApiError.of(400, exc.message, param=exc.param) from None

    def translator(self, ex: Exchange, leg: Leg, provider: str) -> Translator:
        return AnthropicToOpenAIRelay(AnthropicToOpenAIStream(_stream_id(ex), leg.backend_model,
                                                              oa.wants_usage(ex.body)))

    def response(self, ex: Exchange, leg: Leg, result: ChatResult) -> tuple[dict, tuple]:
        return an.to_openai_response(result.body, leg.backend_model), an.audit_tokens(result.body.get("usage"))

    def status_error(self, exc: UpstreamStatusError) -> ApiError:
        """An Anthropic error body mapped to OpenAI's shape and status (529 -> 503)."""
        status, body = an.openai_error_from_anthropic(exc.status, exc.body, exc.provider)
        return ApiError(status, body, {"retry-after": exc.retry_after} if exc.retry_after else None)


class ChatCompletions(Dialect):
    wire = OPENAI_CHAT
    pairs = (PassThrough(), ToAnthropic())

    def parse(self, req, raw: bytes, request_id: str) -> Exchange:
        try:
            body = oa.parse_request(raw)
        except oa.RequestError as exc:
            raise ApiError.of(400, exc.message, param=exc.param, code=exc.code) from None
        # (no headers, created now: all positional, a keyword costs about 1,000 instructions more a call)
        return Exchange(body, body["model"], bool(body.get("stream")), request_id, None, int(time.time()))

    def not_found(self, model: str) -> ApiError:
        return ApiError.of(404, f"The model `{model}` does not exist or no route of this gateway matches it.",
                           param="model", code="model_not_found")

    def upstream_error(self, exc: UpstreamError) -> ApiError:
        return from_upstream(exc)
