"""The adapter for Anthropic's cloud (kind `anthropic`) (BACK-05).

Speaks the Messages API natively (`anthropic_native`): `messages` / `messages_stream` POST to
`{base_url}/v1/messages`, `count_tokens` to `/v1/messages/count_tokens`; `chat` / `stream` are the same
calls without client headers (the body is in Anthropic's dialect either way, see base.py).

Upstream auth is only the provider's own key, as `x-api-key`; `anthropic-version: 2023-06-01` is always
sent; of the client's headers only `anthropic-beta` (verbatim: Claude Code's bodies depend on it) and
`anthropic-version` are passed on, and they can never replace the key. Extra `headers` from the config
are sent too. Errors come back as UpstreamStatusError with the raw body, `retry-after` and the upstream
`request-id`; 529 overloaded is a 5xx, so it fails over like any 5xx.

Transport, timeouts and error classification are the OpenAI-compatible adapter's: the same shared aiohttp
session, the same deadlines; only URLs and headers differ.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from mlxgw.backends.base import ChatResult, Timeouts, UpstreamProtocolError
from mlxgw.backends.http import HttpClient
from mlxgw.backends.openai_compat import OpenAICompatBackend, UpstreamStream

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
CLIENT_HEADERS = ("anthropic-beta", "anthropic-version")  # what a client may pass on


def api_root(base_url: str | None) -> str:
    """The API root without a trailing /v1 (both spellings are accepted in the config)."""
    root = (base_url or ANTHROPIC_BASE_URL).rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


class AnthropicBackend(OpenAICompatBackend):
    api = "anthropic"
    anthropic_native = True

    def __init__(self, name: str, kind: str, spec: dict, api_key: str | None, http: HttpClient):
        self.name = name
        self.kind = kind
        self.base_url = api_root(spec.get("base_url"))
        self._messages_url = self.base_url + "/v1/messages"
        self._count_url = self._messages_url + "/count_tokens"
        self._chat_url = self._messages_url
        self._http = http
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        for k, v in (spec.get("headers") or {}).items():
            headers[k] = v
        if api_key:
            headers["x-api-key"] = api_key
        self._api_key = api_key
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}

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

    async def health(self) -> bool:
        try:
            async with asyncio.timeout(5):
                async with self._http.session.get(self.base_url + "/v1/models", headers=self._headers) as r:
                    return r.status < 500
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def messages(self, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult:
        return await self._post(self._messages_url, body, t, self._with(self._headers, headers))

    def messages_stream(self, body: dict, t: Timeouts, headers: dict | None = None) -> AsyncIterator[bytes]:
        return UpstreamStream(self, self._messages_url, body, t, self._with(self._stream_headers, headers))

    async def count_tokens(self, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult:
        """POST /v1/messages/count_tokens: {"input_tokens": N}."""
        return await self._post(self._count_url, body, t, self._with(self._headers, headers))

    async def chat(self, body: dict, t: Timeouts) -> ChatResult:
        return await self.messages(body, t)

    def stream(self, body: dict, t: Timeouts) -> AsyncIterator[bytes]:
        return self.messages_stream(body, t)

    def _json_as_stream(self, raw: bytes) -> bytes:
        raise UpstreamProtocolError(self.name, f"provider '{self.name}' answered a stream request with a JSON body")
