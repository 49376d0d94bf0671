"""The client-dialect seam: what the one inference endpoint (`server/inference.py`) and the attempt loop
(`server/attempts.py`) need from a client API, so that neither branches on a dialect's or a backend's name.

A `Dialect` is one object per client API (OpenAI chat completions, Anthropic messages...). It parses and
checks a request into an `Exchange`, shapes the errors the gateway raises (not found, bad request, an
upstream failure) in its own wire format, and holds its `Pair`s: one per backend wire it can talk to, in
order of preference, its own wire first (a pass-through). For each target the attempt loop asks the
dialect for the pair that fits the backend's declared `wires`; the pair builds the backend's request (a
`Leg`), the stream translator, and the client's response body.

Adding a client API means adding one Dialect with its pairs and their stream translators, and one
`add_route` line in app.py.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from mlxgw.backends.base import Backend, ChatResult, UpstreamError, UpstreamStatusError
from mlxgw.server.errors import ApiError
from mlxgw.server.streaming import Translator


@dataclass(slots=True)
class Exchange:
    """One client request, parsed: what every step after parsing reads."""

    body: dict
    model: str
    stream: bool
    request_id: str
    headers: dict | None = None  # client headers a pass-through may forward (None: none)
    created: int = 0  # Unix time the response is stamped with
    state: Any = None  # what the dialect keeps for this request (e.g. a stored conversation's history)


@dataclass(slots=True)
class Leg:
    """One attempt's request to one backend, in one of its wires."""

    pair: Pair
    body: dict
    backend_model: str
    headers: dict | None = None
    context: Any = None  # what the translation needs again on the way back (e.g. shortened tool names)

    @property
    def wire(self) -> str:
        return self.pair.wire


class Pair(abc.ABC):
    """How one client dialect talks to backends of one wire."""

    wire: str

    @abc.abstractmethod
    def leg(self, ex: Exchange, backend: Backend, backend_model: str) -> Leg:
        """The backend's request. Raises the dialect's ApiError when the request cannot be translated."""

    @abc.abstractmethod
    def translator(self, ex: Exchange, leg: Leg, provider: str) -> Translator:
        """The stream translator of one streamed answer."""

    @abc.abstractmethod
    def response(self, ex: Exchange, leg: Leg, result: ChatResult) -> tuple[dict, tuple]:
        """The client's body for a non-streamed answer, and its (input, output, cached) tokens. When
        the backend's body needs no change, return `result.body` itself: its bytes (`result.raw`) then
        go to the client as they came, not serialised again."""

    def status_error(self, exc: UpstreamStatusError) -> ApiError | None:
        """The client's error for an HTTP error the backend answered in this wire, when it differs from
        the dialect's own mapping (None: use the dialect's)."""
        return None


class Dialect(abc.ABC):
    # (The endpoint does not call a hook a dialect leaves as the do-nothing one here: start, prepare,
    # answered, completed; see `inference._hook`.)
    wire: str  # the client's API, also the audit row's client_api
    pairs: tuple[Pair, ...]  # in order of preference: the dialect's own wire first

    def pair_for(self, backend: Backend) -> Pair | None:
        """The first of this dialect's pairs whose wire the backend speaks."""
        for pair in self.pairs:
            if pair.wire in backend.wires:
                return pair
        return None

    @abc.abstractmethod
    def parse(self, req, raw: bytes, request_id: str) -> Exchange:
        """The request as an Exchange; the dialect's 400 ApiError naming the field when it is bad."""

    def prepare(self, ex: Exchange) -> Awaitable[None] | None:
        """Anything the request needs before routing that may wait (e.g. a stored conversation): a
        dialect that has some returns the awaitable (an `async def` does), which raises the dialect's
        ApiError when it cannot be had. None (this default): nothing to wait for, and no coroutine made
        and awaited per request for nothing."""
        return None

    def completed(self, ex: Exchange, out: dict) -> None:
        """A non-streamed answer `out` was sent (a pair's stream translator reports its own end)."""

    @abc.abstractmethod
    def not_found(self, model: str) -> ApiError:
        """No route matches the model."""

    def failure(self, exc: UpstreamError, pair: Pair | None) -> ApiError:
        """The client's error for an upstream failure before the first byte; `pair` is the one the last
        attempt went through (None when no backend was called)."""
        if pair is not None and isinstance(exc, UpstreamStatusError):
            mapped = pair.status_error(exc)
            if mapped is not None:
                return mapped
        return self.upstream_error(exc)

    @abc.abstractmethod
    def upstream_error(self, exc: UpstreamError) -> ApiError:
        """The dialect's own mapping of an upstream failure to its error shape and status."""

    def start(self, req, resp) -> None:
        """Response headers every answer of this dialect carries (set before anything else runs)."""

    def answered(self, resp, headers: dict | None) -> None:
        """Response headers from the backend's answer (e.g. its request id)."""
