"""The backend adapter contract (BACK-01) and the failures a backend reports.

A backend (a cloud API or a local engine) declares the wires it speaks (`wires`, a set of names from
`mlxgw.kinds`: "openai" chat completions, "anthropic" messages) and has one call entry per operation:

    await call(wire, body, timeouts, headers=None) -> ChatResult
                                  one non-streaming request on `wire`; `body` is already in that wire's
                                  shape and carries the backend's model name. Returns the decoded JSON body.
    stream(wire, body, timeouts, headers=None) -> UpstreamStream
                                  an async iterator of the raw response body chunks as they arrive
                                  (server-sent events). Everything that can fail before the first byte
                                  (connect, HTTP status, first-token timeout) is raised by the first
                                  `__anext__()`, so the caller can still fail over or answer with a real
                                  status; later failures are raised mid-iteration. The caller must
                                  `aclose()` it when it stops early. Its `request_id` (the upstream's) is
                                  set once the first chunk arrived.
    await count_tokens(body, timeouts, headers=None) -> ChatResult
                                  Anthropic's /v1/messages/count_tokens, on backends that speak "anthropic".
    await fit(wire, body) -> (body, note)
                                  before a call: the body to send, when it must change to fit the model's
                                  context (max_tokens clamped to the room left), and a note for the audit
                                  row saying so (None: unchanged); raises ContextExceeded when the prompt
                                  cannot fit, so the attempt loop moves on without calling. Local engines
                                  count with the model's own tokenizer (backends/tokencount.py); a backend
                                  that does not know its context (a cloud) sends the body as it is.
    await prompt_tokens(wire, body) -> int | None
                                  the exact prompt count where the backend can tell without a call (local
                                  engines), else None.

`headers` are the client's `anthropic-*` request headers (`anthropic-beta` verbatim, `anthropic-version`)
when an Anthropic client's request passes through: a cloud forwards them, a local engine may ignore them;
auth always comes from the provider, never from them. `chat_target` says how this backend's chat
completions differ from the common ground (OpenAI's own cloud takes `role: developer` and
`max_completion_tokens`; compatible servers get `system` and `max_tokens`). `supervisor` is set on local
engines only: the attempt loop asks it how cold a model is.

Failures are reported only as the UpstreamError family (mlxgw.upstream_errors, re-exported here), never
as a transport library's own exceptions (the one mapping is in `backends/http.py`), so the server and the
failover policy classify them without knowing the transport.

Adapters hold no per-request state and never build an HTTP client per request: they use the one shared
client handed to them at construction.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mlxgw.dialects.openai import COMPATIBLE, ChatTarget

# The failures live in a leaf module (the supervisor and the failover policy use them too); re-exported here.
from mlxgw.upstream_errors import (  # noqa: F401
    ContextExceeded, UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout,
)  # fmt: skip


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
    raw: bytes = b""  # `body` as the upstream sent it; whoever changes `body` in place must empty this


class UpstreamStream:
    """What `stream()` returns: the chunks of an async generator, plus `request_id`, the upstream's
    request id, which the generator sets once the response has started."""

    __slots__ = ("_gen", "request_id")

    def __init__(self):
        self.request_id: str | None = None
        self._gen: AsyncIterator[bytes] | None = None

    def attach(self, gen) -> UpstreamStream:
        self._gen = gen
        return self

    def __aiter__(self) -> UpstreamStream:
        return self

    def __anext__(self):
        return self._gen.__anext__()

    def aclose(self):
        return self._gen.aclose()


class Backend(abc.ABC):
    """Base of every adapter; see the module docstring for the contract."""

    name: str
    kind: str
    wires: frozenset[str] = frozenset()
    chat_target: ChatTarget = COMPATIBLE
    supervisor = None  # local engines: the mlxgw.supervisor.Supervisor that runs their models

    def unspoken(self, wire: str) -> UpstreamProtocolError:
        """The error for a call on a wire this backend does not speak (a wiring bug, reported as an
        unusable upstream rather than a crash)."""
        return UpstreamProtocolError(self.name, f"provider '{self.name}' ({self.kind}) does not speak the "
                                                f"'{wire}' API")

    @abc.abstractmethod
    async def call(self, wire: str, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult: ...

    @abc.abstractmethod
    def stream(self, wire: str, body: dict, t: Timeouts, headers: dict | None = None) -> UpstreamStream: ...

    async def count_tokens(self, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult:
        raise self.unspoken("anthropic")

    fits = False  # does fit() change anything? (the attempt loop calls it only then)

    async def fit(self, wire: str, body: dict) -> tuple[dict, str | None]:
        return body, None

    async def prompt_tokens(self, wire: str, body: dict) -> int | None:
        return None
