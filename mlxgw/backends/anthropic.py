"""The adapter for Anthropic's cloud (kind `anthropic`) (BACK-05), and for the Messages API of local
engines that serve it themselves (vllm-mlx). It speaks the "anthropic" wire: POST `{base_url}/v1/messages`,
and `count_tokens` on `/v1/messages/count_tokens`.

Upstream auth is only the provider's own key, as `x-api-key`; `anthropic-version: 2023-06-01` is always
sent; of the client's headers only `anthropic-beta` (verbatim: Claude Code's bodies depend on it) and
`anthropic-version` are passed on, and they can never replace the key. Extra `headers` from the config
are sent too. Errors come back as UpstreamStatusError with the raw body, `retry-after` and the upstream
`request-id`; 529 overloaded is a 5xx, so it fails over like any 5xx. Transport, timeouts and the error
mapping are the shared `backends.http.Upstream`'s.
"""

from __future__ import annotations

from mlxgw.backends.base import Backend, ChatResult, Timeouts, UpstreamProtocolError, UpstreamStream
from mlxgw.backends.http import HttpClient, Upstream
from mlxgw.kinds import ANTHROPIC_MESSAGES

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
CLIENT_HEADERS = ("anthropic-beta", "anthropic-version")  # what a client may pass on


def api_root(base_url: str | None) -> str:
    """The API root without a trailing /v1 (both spellings are accepted in the config)."""
    root = (base_url or ANTHROPIC_BASE_URL).rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


class AnthropicBackend(Backend):
    wires = frozenset({ANTHROPIC_MESSAGES})

    def __init__(self, name: str, kind: str, spec: dict, api_key: str | None, http: HttpClient):
        self.name = name
        self.kind = kind
        self.base_url = api_root(spec.get("base_url"))
        self._messages_url = self.base_url + "/v1/messages"
        self._count_url = self._messages_url + "/count_tokens"
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        for k, v in (spec.get("headers") or {}).items():
            headers[k] = v
        if api_key:
            headers["x-api-key"] = api_key
        self._api_key = api_key
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        self._up = Upstream(http, name, self.base_url, self._json_as_stream)

    def _with(self, base: dict, client: dict | None) -> dict:
        """`base` plus the client's anthropic-* headers; the provider key always wins."""
        if not client:
            return base
        out = dict(base)
        for k in CLIENT_HEADERS:
            v = client.get(k)
            if v:
                out[k] = v
        if self._api_key:
            out["x-api-key"] = self._api_key
        return out

    async def call(self, wire: str, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult:
        if wire != ANTHROPIC_MESSAGES:
            raise self.unspoken(wire)
        return await self._up.post(self._messages_url, body, t, self._with(self._headers, headers))

    def stream(self, wire: str, body: dict, t: Timeouts, headers: dict | None = None) -> UpstreamStream:
        if wire != ANTHROPIC_MESSAGES:
            raise self.unspoken(wire)
        return self._up.post_stream(self._messages_url, body, t, self._with(self._stream_headers, headers))

    async def count_tokens(self, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult:
        """POST /v1/messages/count_tokens: {"input_tokens": N}."""
        return await self._up.post(self._count_url, body, t, self._with(self._headers, headers))

    def _json_as_stream(self, raw: bytes) -> bytes:
        raise UpstreamProtocolError(self.name, f"provider '{self.name}' answered a stream request with a JSON body")
