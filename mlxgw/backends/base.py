"""The backend adapter contract (BACK-01) and the failures a backend reports.

Every backend (a cloud API or a local engine) is one object with five coroutines:

    await start()                 get ready to serve (a local engine launches its process; a cloud
                                  adapter has nothing to do). Idempotent.
    await stop()                  release what start() took. Idempotent; never cuts a request in flight
                                  for cloud adapters (they own no connection: the HTTP client is shared).
    await health() -> bool        cheap liveness probe of the upstream.
    await chat(body, timeouts) -> ChatResult
                                  one non-streaming request; `body` is already in the backend's dialect
                                  and carries the backend's model name. Returns the decoded JSON body.
    stream(body, timeouts) -> AsyncIterator[bytes]
                                  an async generator of the raw response body chunks as they arrive
                                  (server-sent events for OpenAI-compatible backends). Everything that can
                                  fail before the first byte (connect, HTTP status, first-token timeout)
                                  is raised by the first `__anext__()`, so the caller can still fail over
                                  or answer with a real status; later failures are raised mid-iteration.
                                  The caller must `aclose()` it when it stops early. It may carry
                                  `request_id` (the upstream's), set once the first chunk arrived.

Failures are reported only as the UpstreamError subclasses below, never as a transport library's own
exceptions, so the server and the failover policy classify them without knowing the transport:

    UpstreamError                 base; `provider` names the backend
    ├── UpstreamConnectError      could not connect, or the connection dropped before any response
    ├── UpstreamTimeout           `kind` is connect | first_token | idle | total
    ├── UpstreamStatusError       the upstream answered an HTTP error: `status`, raw `body`, `retry_after`,
    │                             `request_id` (the upstream's, when it sent one)
    └── UpstreamProtocolError     the upstream answered 2xx with a body that cannot be used

Dialects. `api` names the dialect `chat`/`stream` speak ("openai" or "anthropic"). Backends that speak
Anthropic's Messages API natively (the Anthropic cloud adapter, the local engine vllm-mlx) set
`anthropic_native = True` and also provide

    await messages(body, timeouts, headers=None) -> ChatResult
    messages_stream(body, timeouts, headers=None) -> AsyncIterator[bytes]

with the contract of `chat`/`stream`, on `/v1/messages` (the stream is Anthropic's named SSE events).
They may also provide `await count_tokens(body, timeouts, headers=None) -> ChatResult` (/v1/messages/
count_tokens); without it the server answers count_tokens with its own estimate.
`headers` are the client's `anthropic-*` request headers (`anthropic-beta` verbatim, `anthropic-version`):
a cloud forwards them, a local engine may ignore them; auth always comes from the provider, never from
them. The server sends an Anthropic client's request there untranslated (only `model` rewritten) and an
OpenAI client's request translated; every other backend (`anthropic_native = False`) gets OpenAI bodies
on `chat`/`stream`, translated from Anthropic when the client spoke Anthropic. An OpenAI-dialect backend
that accepts `role: developer` sets `developer_role = True` (OpenAI's cloud); the others get such
messages as `system`.

Adapters hold no per-request state and never build an HTTP client per request: they use the one shared
client handed to them at construction.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `first_token` bounds the wait for the first byte of the answer (headers and, on a
    stream, the first body chunk); `idle` bounds each later gap; `total` bounds the whole exchange."""

    connect: float = 5.0
    first_token: float = 60.0
    idle: float = 30.0
    total: float = 600.0


@dataclass(slots=True)
class ChatResult:
    status: int
    body: dict
    headers: dict | None = None  # response headers worth passing back (the upstream's request-id)


class UpstreamError(Exception):
    def __init__(self, provider: str, message: str):
        super().__init__(message)
        self.provider = provider
        self.message = message


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    def __init__(self, provider: str, kind: str, seconds: float):
        super().__init__(provider, f"provider '{provider}' timed out ({kind} timeout of {seconds:g}s)")
        self.kind = kind
        self.seconds = seconds


class UpstreamStatusError(UpstreamError):
    def __init__(self, provider: str, status: int, body: bytes, retry_after: str | None = None,
                 request_id: str | None = None):
        super().__init__(provider, f"provider '{provider}' answered HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.request_id = request_id


class UpstreamProtocolError(UpstreamError):
    pass


class Backend(abc.ABC):
    """Base of every adapter; see the module docstring for the contract."""

    name: str
    api: str  # the dialect the backend speaks: "openai" | "anthropic"
    anthropic_native: bool = False  # True: also messages()/messages_stream() on /v1/messages
    developer_role: bool = False  # True: `role: developer` is sent as is, else as `system`

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @abc.abstractmethod
    async def health(self) -> bool: ...

    @abc.abstractmethod
    async def chat(self, body: dict, timeouts: Timeouts) -> ChatResult: ...

    @abc.abstractmethod
    def stream(self, body: dict, timeouts: Timeouts) -> AsyncIterator[bytes]: ...
