"""The one HTTP client of the process: an aiohttp ClientSession opened at startup, closed at shutdown.

Why aiohttp and not httpx: measured on this machine, httpx's default transport caps a minimal
passthrough at about 400 requests/s per core while aiohttp reaches about 3,700, and the gateway's target
is 2,500. Adapters post through `Upstream`, which holds the one mapping of aiohttp's exceptions; nothing
else in the package touches aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from mlxgw import __version__
from mlxgw.backends.base import (
    ChatResult, Timeouts, UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamStatusError,
    UpstreamStream, UpstreamTimeout,
)  # fmt: skip
from mlxgw.backends.deadline import deadline_at
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads

USER_AGENT = f"mlxgw/{__version__}"


class HttpClient:
    """Connection pooling for every backend. Timeouts are applied per request by the adapters."""

    def __init__(self, limit: int = 1000, limit_per_host: int = 0, keepalive: float = 30.0):
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit_per_host,
                                             keepalive_timeout=self._keepalive, ttl_dns_cache=300)
            # No client-wide timeout: each request carries its backend's own (connect/first token/...).
            # No cookie jar: a cookie one upstream answer sets (a cloud's load balancer does) must not ride
            # on every later request, whoever's. The gateway's own User-Agent is a default header (an
            # adapter's own one wins): asking aiohttp to skip its User-Agent instead made it build two
            # header multidicts per request.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": USER_AGENT}, raise_for_status=False,
            )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the HTTP client is not started")
        return self._session


def _clock(t: Timeouts) -> tuple[asyncio.AbstractEventLoop, float, float]:
    """The loop, the total deadline and the first-token deadline of a request starting now."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    end = now + t.total
    return loop, end, min(now + t.first_token, end)


def _request_id(headers) -> str | None:
    return headers.get("request-id") or headers.get("x-request-id")


class Upstream:
    """One HTTP upstream of one provider: JSON POSTs with the provider's deadlines, and the one place
    where aiohttp's failures become UpstreamErrors (see base.py).

    Timeouts are enforced with deadlines around each read (`deadline_at`: asyncio.timeout_at's semantics
    without a timer per read), never around a `yield`, so a slow client never trips a backend timeout and
    a timeout never cancels the caller's own code.
    `json_as_stream(raw)` turns a JSON answer to a stream request (a server that ignored `stream: true`)
    into the stream's bytes, or raises UpstreamProtocolError.
    """

    def __init__(self, http: HttpClient, provider: str, where: str, json_as_stream):
        self.http = http
        self.provider = provider
        self.where = where  # the base URL, for "cannot connect" messages
        self._json_as_stream = json_as_stream
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _ctimeout(self, t: Timeouts) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for `t`, made once per connect timeout."""
        ct = self._client_timeouts.get(t.connect)
        if ct is None:
            ct = self._client_timeouts[t.connect] = aiohttp.ClientTimeout(total=None, sock_connect=t.connect)
        return ct

    def _timeout(self, t: Timeouts, phase: str, deadline: float, end: float) -> UpstreamTimeout:
        if deadline >= end:
            return UpstreamTimeout(self.provider, "total", t.total)
        return UpstreamTimeout(self.provider, phase, t.first_token if phase == "first_token" else t.idle)

    def _error(self, exc: BaseException, got_response: bool, t: Timeouts, phase: str = "first_token",
               deadline: float = 0.0, end: float = 0.0) -> UpstreamError:
        """The UpstreamError for a transport failure (the mapping, written once)."""
        name = self.provider
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UpstreamTimeout(name, "connect", t.connect)
        if isinstance(exc, TimeoutError):
            return self._timeout(t, phase, deadline, end)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamConnectError(name, f"cannot connect to provider '{name}' at {self.where}: "
                                              f"{exc.os_error.strerror or exc.os_error}")
        if got_response:
            return UpstreamConnectError(name, f"provider '{name}' dropped the connection mid-response")
        return UpstreamConnectError(name, f"provider '{name}' closed the connection before answering")

    def _status_error(self, resp: aiohttp.ClientResponse, raw: bytes) -> UpstreamStatusError:
        h = resp.headers
        return UpstreamStatusError(self.provider, resp.status, raw, h.get("Retry-After"),
                                   request_id=_request_id(h))

    async def post(self, url: str, body: dict, t: Timeouts, headers: dict) -> ChatResult:
        """One non-streaming POST: the decoded JSON answer, or an UpstreamError."""
        loop, end, deadline = _clock(t)
        phase = "first_token"
        resp = None
        try:
            with deadline_at(deadline, loop) as scope:
                resp = await self.http.session.post(url, data=dumps(body), headers=headers, timeout=self._ctimeout(t))
                # A non-streamed answer's first token is its body: the first_token deadline runs until
                # the body starts; the rest of it must keep flowing (idle).
                raw = await resp.content.readany()
                if raw and not resp.content.at_eof():  # more to come (a small body is whole already)
                    phase = "idle"
                    deadline = min(loop.time() + t.idle, end)
                    scope.reschedule(deadline)
                    raw += await resp.content.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._error(exc, resp is not None, t, phase, deadline, end) from None
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
            raise UpstreamProtocolError(self.provider, f"provider '{self.provider}' answered with a body that "
                                                       f"is not a JSON object")
        rid = _request_id(resp.headers)
        return ChatResult(resp.status, data, {"request-id": rid} if rid else None, raw)

    def post_stream(self, url: str, body: dict, t: Timeouts, headers: dict) -> UpstreamStream:
        """One streaming POST: the raw body chunks as they arrive (see base.py for the contract)."""
        out = UpstreamStream()
        return out.attach(self._chunks(url, body, t, headers, out))

    async def _chunks(self, url: str, body: dict, t: Timeouts, headers: dict,
                      sink: UpstreamStream) -> AsyncIterator[bytes]:
        loop, end, deadline = _clock(t)
        phase = "first_token"
        resp = None
        done = False
        try:
            try:
                with deadline_at(deadline, loop):
                    resp = await self.http.session.post(url, data=dumps(body), headers=headers,
                                                        timeout=self._ctimeout(t))
                    sink.request_id = _request_id(resp.headers)
                    if resp.status >= 400:
                        raw = await resp.read()
                        done = True
                        raise self._status_error(resp, raw)
                    if resp.content_type == "application/json":  # the server ignored stream: true
                        chunk = self._json_as_stream(await resp.read())
                    else:
                        chunk = await resp.content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._error(exc, resp is not None, t, phase, deadline, end) from None
            phase = "idle"
            while chunk:
                yield chunk
                deadline = min(loop.time() + t.idle, end)
                try:
                    with deadline_at(deadline, loop):
                        chunk = await resp.content.readany()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    raise self._error(exc, True, t, phase, deadline, end) from None
            done = True
        finally:
            if resp is not None:
                if done:
                    resp.release()
                else:
                    resp.close()
