"""The adapter for OpenAI's cloud (kind `openai`) and any OpenAI-compatible server (kind
`openai-compatible`, and local engines once they are running) (BACK-04). It speaks the "openai" wire
(chat completions), and OpenAI's own cloud also the "responses" wire (POST /responses, passed through).

Upstream auth comes only from the provider's own key (`Authorization: Bearer`), plus optional
`OpenAI-Organization` / `OpenAI-Project` and extra `headers` from the config. Nothing of the client's
request headers is forwarded, so a client's gateway key can never leak to a cloud.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import NoReturn

from mlxgw.backends.base import (
    Backend, ChatResult, Timeouts, UpstreamProtocolError, UpstreamStream,
)  # fmt: skip
from mlxgw.backends.http import HttpClient, Upstream
from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import DecodeError, loads
from mlxgw import kinds
from mlxgw.kinds import OPENAI_CHAT, OPENAI_RESPONSES

OPENAI_BASE_URL = "https://api.openai.com/v1"


def base_url_for(kind: str, spec: dict) -> str | None:
    return spec.get("base_url") or (OPENAI_BASE_URL if kind == "openai" else None)


class OpenAICompatBackend(Backend):

    def __init__(self, name: str, kind: str, spec: dict, api_key: str | None, http: HttpClient):
        base = base_url_for(kind, spec)
        if not base:
            raise ValueError(f"provider '{name}' (kind {kind}) has no base_url")
        self.name = name
        self.kind = kind
        # OpenAI's own API also speaks Responses (passed through); compatible servers only chat completions.
        self.wires = kinds.get(kind).wires if kinds.get(kind) else frozenset({OPENAI_CHAT})
        # OpenAI's own API takes `developer` and max_completion_tokens; others get the common ground.
        self.chat_target = oa.OPENAI_PROPER if kind == "openai" else oa.COMPATIBLE
        self.base_url = base.rstrip("/")
        # The URL of each wire it speaks; a wire it does not speak has none, and `_unspoken` raises.
        urls = {OPENAI_CHAT: self.base_url + "/chat/completions", OPENAI_RESPONSES: self.base_url + "/responses"}
        self._urls = {wire: url for wire, url in urls.items() if wire in self.wires}
        headers = {"Content-Type": "application/json"}
        for k, v in (spec.get("headers") or {}).items():
            headers[k] = v
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if spec.get("organization"):
            headers["OpenAI-Organization"] = spec["organization"]
        if spec.get("project"):
            headers["OpenAI-Project"] = spec["project"]
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        self._up = Upstream(http, name, self.base_url, lambda raw: _as_stream(name, raw))

    def _unspoken(self, wire: str) -> NoReturn:
        raise self.unspoken(wire)

    def call(self, wire: str, body: dict, t: Timeouts, headers: dict | None = None) -> Awaitable[ChatResult]:
        # The upstream's coroutine itself, not one awaiting it: every wait of the request resumes each
        # coroutine above it, so a pass-through level costs on each. (The URL looked up here, not by a call.)
        return self._up.post(self._urls.get(wire) or self._unspoken(wire), body, t, self._headers)

    def stream(self, wire: str, body: dict, t: Timeouts, headers: dict | None = None) -> UpstreamStream:
        return self._up.post_stream(self._urls.get(wire) or self._unspoken(wire), body, t, self._stream_headers)


def _as_stream(provider: str, raw: bytes) -> bytes:
    """The server-sent events of a whole JSON completion, so a server that ignores `stream: true` still
    streams to the client."""
    try:
        data = loads(raw)
    except DecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamProtocolError(provider, f"provider '{provider}' answered a stream with a body that is not JSON")
    return b"".join(oa.sse(c) for c in oa.completion_chunks(data)) + oa.DONE
