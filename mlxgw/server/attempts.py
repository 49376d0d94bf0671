"""The attempt loop and the stream relay, shared by every client dialect (/v1/chat/completions,
/v1/messages).

`run()` walks a route's ordered targets. For each one it asks the resource's `send(backend,
backend_model, timeouts)` to make the call in whatever wire the pair needs (pass-through or translated:
the resource decides, and records `row["backend_api"]`), and for a stream waits for the first chunk. A
failure before any byte reached the client (connection refused, connect timeout, 5xx, per
`routing.policy`) moves on to the next target; otherwise `Failed` carries the last error out, and the
resource answers it in its client's dialect. `send` may raise the resource's own ApiError (a request that
cannot be translated): that is the client's fault and ends the loop at once.

`relay()` streams an answer to the client: each upstream read goes through a `Translator` (feed bytes,
get bytes) and out as one write, so nothing is buffered. It notices a client that went away (status 499,
upstream closed at the next chunk), turns a mid-stream upstream failure into the translator's error
event, and completes the audit row once the stream is over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mlxgw.backends.base import Backend, UpstreamConnectError, UpstreamError, UpstreamProtocolError
from mlxgw.routing import Attempts, Route, Target


class Failed(Exception):
    """Every target failed before the first byte; `error` is the last failure."""

    def __init__(self, error: UpstreamError):
        super().__init__(error.message)
        self.error = error


@dataclass(slots=True)
class Answer:
    target: Target
    backend: Backend
    backend_model: str
    result: Any  # the ChatResult of a non-streaming call
    first: bytes | None  # a stream's first chunk
    chunks: AsyncIterator[bytes] | None
    context: Any  # what `send` returned next to the call (e.g. the tool-name map of a translation)


Send = Callable[[Backend, str, Any], Awaitable[tuple[Any, Any]]]


async def run(rt, route: Route, model: str, row: dict, t0: float, stream: bool, send: Send) -> Answer:
    """The first answer of the route's targets (see the module docstring). Fills the row's attempts,
    provider, backend_model and ttfb_ms."""
    snap = rt.snapshot
    attempts = Attempts(route.targets)
    error: UpstreamError | None = None
    for target in attempts:
        row["attempts"] = attempts.count
        backend = rt.backends.get(target.provider)
        backend_model = snap.backend_model(target, model)
        row["provider"], row["backend_model"] = target.provider, backend_model
        if backend is None:
            reason = rt.unavailable.get(target.provider) or f"provider '{target.provider}' is not configured"
            error = UpstreamConnectError(target.provider, reason)
            continue
        first = None
        try:
            call, context = await send(backend, backend_model, target.timeouts)
            if stream:
                try:
                    first = await call.__anext__()
                except StopAsyncIteration:
                    raise UpstreamProtocolError(target.provider,
                                                f"provider '{target.provider}' sent an empty stream") from None
        except UpstreamError as exc:
            error = exc
            if attempts.failed(exc):
                continue
            break
        row["ttfb_ms"] = (time.perf_counter() - t0) * 1000
        if stream:
            return Answer(target, backend, backend_model, None, first, call, context)
        return Answer(target, backend, backend_model, call, None, None, context)
    if error is None:
        error = UpstreamConnectError(route.key, f"route '{route.key}' has no target")
    raise Failed(error)


class Translator:
    """What `relay` needs from a stream translator (one per response).

    feed(chunk) -> bytes     raw upstream bytes in, client bytes out (possibly b"")
    end() -> bytes           the upstream ended (EOF): the closing events, or an error event when the
                             stream was cut before it finished
    failed(exc) -> bytes     the error event for an UpstreamError raised mid-stream
    finished                 True once nothing more is wanted from the upstream ([DONE], an error...)
    error                    why the stream failed, for the audit row (None: it did not)
    tokens()                 (input, output, cached) for the audit row
    """

    finished: bool = False
    error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        raise NotImplementedError

    def end(self) -> bytes:
        raise NotImplementedError

    def failed(self, exc: UpstreamError) -> bytes:
        raise NotImplementedError

    def tokens(self) -> tuple:
        return None, None, None


async def relay(first: bytes, chunks: AsyncIterator[bytes], tr: Translator, row: dict,
                finish: Callable[[int, str | None], None], receive=None):
    """The client's stream (see the module docstring); `finish(status, error)` completes the audit row."""
    gone = asyncio.ensure_future(receive()) if receive is not None else None
    status = 200
    chunk: bytes | None = first
    try:
        while True:
            out = tr.feed(chunk) if chunk is not None else tr.end()
            if out:
                yield out
            if gone is not None and gone.done():
                status, tr.error = 499, "client disconnected"
                return
            if tr.finished or chunk is None:
                break
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                chunk = None  # flush what the translator holds, then end
    except UpstreamError as exc:
        tr.error = exc.message
        yield tr.failed(exc)
    except BaseException as exc:  # client gone (cancelled) or a bug: record it, then let it propagate
        tr.error = tr.error or f"stream aborted: {type(exc).__name__}"
        raise
    finally:
        if gone is not None and not gone.done():
            gone.cancel()
        await chunks.aclose()
        row["input_tokens"], row["output_tokens"], row["cached_tokens"] = tr.tokens()
        finish(status, tr.error)
