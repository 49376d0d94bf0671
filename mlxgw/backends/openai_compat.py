"""The adapter for OpenAI's cloud (kind `openai`) and any OpenAI-compatible server (kind
`openai-compatible`, and local engines once they are running) (BACK-04).

Upstream auth comes only from the provider's own key (`Authorization: Bearer`), plus optional
`OpenAI-Organization` / `OpenAI-Project` and extra `headers` from the config. Nothing of the client's
request headers is forwarded, so a client's gateway key can never leak to a cloud.

Timeouts are enforced here with asyncio deadlines around each read, never around a `yield`, so a slow
client never trips a backend timeout and a timeout never cancels the caller's own code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from mlxgw.backends.base import (
    Backend, ChatResult, Timeouts, UpstreamConnectError, UpstreamError, UpstreamProtocolError,
    UpstreamStatusError, UpstreamTimeout,
)  # fmt: skip
from mlxgw.backends.http import HttpClient
from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads

OPENAI_BASE_URL = "https://api.openai.com/v1"


def base_url_for(kind: str, spec: dict) -> str | None:
    return spec.get("base_url") or (OPENAI_BASE_URL if kind == "openai" else None)


class OpenAICompatBackend(Backend):
    api = "openai"

    def __init__(self, name: str, kind: str, spec: dict, api_key: str | None, http: HttpClient):
        base = base_url_for(kind, spec)
        if not base:
            raise ValueError(f"provider '{name}' has no base_url")
        self.name = name
        self.kind = kind
        self.developer_role = kind == "openai"  # others may reject `developer`: it is sent as `system`
        self.base_url = base.rstrip("/")
        self._chat_url = self.base_url + "/chat/completions"
        self._http = http
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
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _ctimeout(self, t: Timeouts) -> aiohttp.ClientTimeout:
        ct = self._client_timeouts.get(t.connect)
        if ct is None:
            ct = self._client_timeouts[t.connect] = aiohttp.ClientTimeout(total=None, sock_connect=t.connect)
        return ct

    def _timeout_error(self, t: Timeouts, phase: str, deadline: float, end: float) -> UpstreamTimeout:
        if deadline >= end:
            return UpstreamTimeout(self.name, "total", t.total)
        return UpstreamTimeout(self.name, phase, t.first_token if phase == "first_token" else t.idle)

    def _transport_error(self, exc: Exception, got_response: bool, t: Timeouts) -> UpstreamError:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UpstreamTimeout(self.name, "connect", t.connect)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamConnectError(self.name, f"cannot connect to provider '{self.name}' at {self.base_url}: "
                                                   f"{exc.os_error.strerror or exc.os_error}")
        if got_response:
            return UpstreamConnectError(self.name, f"provider '{self.name}' dropped the connection mid-response")
        return UpstreamConnectError(self.name, f"provider '{self.name}' closed the connection before answering")

    async def _open(self, url: str, body: dict, t: Timeouts, headers: dict) -> aiohttp.ClientResponse:
        return await self._http.session.post(url, data=dumps(body), headers=headers, timeout=self._ctimeout(t))

    def _status_error(self, resp: aiohttp.ClientResponse, raw: bytes) -> UpstreamStatusError:
        h = resp.headers
        return UpstreamStatusError(self.name, resp.status, raw, h.get("Retry-After"),
                                   request_id=h.get("request-id") or h.get("x-request-id"))

    async def health(self) -> bool:
        try:
            async with asyncio.timeout(5):
                async with self._http.session.get(self.base_url + "/models", headers=self._headers) as r:
                    return r.status < 500
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def chat(self, body: dict, t: Timeouts) -> ChatResult:
        return await self._post(self._chat_url, body, t, self._headers)

    def stream(self, body: dict, t: Timeouts) -> AsyncIterator[bytes]:
        return UpstreamStream(self, self._chat_url, body, t, self._stream_headers)

    async def _post(self, url: str, body: dict, t: Timeouts, headers: dict) -> ChatResult:
        """One non-streaming POST of `body` to `url`: the decoded JSON answer, or an UpstreamError."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        end = now + t.total
        deadline = min(now + t.first_token, end)
        phase = "first_token"
        resp = None
        try:
            async with asyncio.timeout_at(deadline) as scope:
                resp = await self._open(url, body, t, headers)
                # A non-streamed answer's first token is its body: the first_token deadline runs until
                # the body starts; the rest of it must keep flowing (idle).
                first = await resp.content.readany()
                phase = "idle"
                deadline = min(loop.time() + t.idle, end)
                scope.reschedule(deadline)
                raw = first + await resp.content.read() if first else first
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise self._transport_error(exc, False, t) from None
            raise self._timeout_error(t, phase, deadline, end) from None
        except aiohttp.ClientError as exc:
            raise self._transport_error(exc, resp is not None, t) from None
        finally:
            if resp is not None:
                resp.release()
        if resp.status >= 400:
            raise self._status_error(resp, raw)
        try:
            data = loads(raw)
        except DecodeError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamProtocolError(self.name, f"provider '{self.name}' answered with a body that is not a JSON object")
        rid = resp.headers.get("request-id") or resp.headers.get("x-request-id")
        return ChatResult(resp.status, data, {"request-id": rid} if rid else None)

    async def _post_stream(self, url: str, body: dict, t: Timeouts, headers: dict,
                           sink: UpstreamStream | None = None) -> AsyncIterator[bytes]:
        """One streaming POST: the raw body chunks as they arrive (see base.py for the contract).
        `sink.request_id` gets the upstream's request id once the response has started."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        end = now + t.total
        deadline = min(now + t.first_token, end)
        phase = "first_token"
        resp = None
        done = False
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    resp = await self._open(url, body, t, headers)
                    if sink is not None:
                        sink.request_id = resp.headers.get("request-id") or resp.headers.get("x-request-id")
                    if resp.status >= 400:
                        raw = await resp.read()
                        done = True
                        raise self._status_error(resp, raw)
                    if resp.content_type == "application/json":  # the server ignored stream: true
                        chunk = self._json_as_stream(await resp.read())
                    else:
                        chunk = await resp.content.readany()
            except TimeoutError as exc:
                if isinstance(exc, aiohttp.ConnectionTimeoutError):
                    raise self._transport_error(exc, False, t) from None
                raise self._timeout_error(t, phase, deadline, end) from None
            except aiohttp.ClientError as exc:
                raise self._transport_error(exc, resp is not None, t) from None
            phase = "idle"
            while chunk:
                yield chunk
                deadline = min(loop.time() + t.idle, end)
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await resp.content.readany()
                except TimeoutError:
                    raise self._timeout_error(t, phase, deadline, end) from None
                except aiohttp.ClientError as exc:
                    raise self._transport_error(exc, True, t) from None
            done = True
        finally:
            if resp is not None:
                if done:
                    resp.release()
                else:
                    resp.close()


    def _json_as_stream(self, raw: bytes) -> bytes:
        return _as_stream(self.name, raw)


class UpstreamStream:
    """The async iterator `stream()` returns: the chunks of `_post_stream`, plus `request_id`, the
    upstream's request id, known once the first `__anext__()` returned."""

    __slots__ = ("_gen", "request_id")

    def __init__(self, backend: OpenAICompatBackend, url: str, body: dict, t: Timeouts, headers: dict):
        self.request_id: str | None = None
        self._gen = backend._post_stream(url, body, t, headers, self)

    def __aiter__(self) -> UpstreamStream:
        return self

    def __anext__(self):
        return self._gen.__anext__()

    def aclose(self):
        return self._gen.aclose()


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
