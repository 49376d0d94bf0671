"""Streaming an answer to the client, for every dialect: the `Translator` contract, reading a stream up
to its first client bytes (`prime`, the stream line), and `relay`.

`relay()` streams an answer to the client: each upstream read goes through a `Translator` (feed bytes,
get bytes) and out as one write, so nothing is buffered. It notices a client that went away (status 499,
upstream closed at the next chunk), turns a mid-stream upstream failure into the translator's error
event (the stream line: past the first byte there is no failover), records in the audit record that the
stream broke and after how many bytes, and completes the record once the stream is over.

Keep-alives (local engines, whose prefill can take minutes): every `keepalive` seconds without an
upstream chunk the client gets the translator's `keepalive` bytes (an SSE comment for OpenAI chat and
Responses, Anthropic's `ping` event). That covers an engine that sent its role chunk at once and then
prefills, and a stream committed before its first byte (see `server/attempts.py`), which comes with its
`prime()` still running (`pending`): a failure before its first content then becomes the dialect's error
event. The backend's own timeouts still bound the waits (`first_token`; `idle` from the first token).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from mlxgw.backends.base import UpstreamError, UpstreamProtocolError
from mlxgw.server.record import AuditRecord


class Translator(abc.ABC):
    """What `relay` needs from a stream translator (one per response).

    feed(chunk) -> bytes     raw upstream bytes in, client bytes out (possibly b"")
    end() -> bytes           the upstream ended (EOF): the closing events, or an error event when the
                             stream was cut before it finished
    failed(exc) -> bytes     the error event for an UpstreamError raised mid-stream
    finished                 True once nothing more is wanted from the upstream ([DONE], an error...)
    error                    why the stream failed, for the audit record (None: it did not)
    tokens()                 (input, output, cached) for the audit record
    """

    finished: bool = False
    error: str | None = None
    keepalive: bytes = b": keep-alive\n\n"  # what a waiting client gets while the upstream is silent

    @abc.abstractmethod
    def feed(self, chunk: bytes) -> bytes:
        """Raw upstream bytes in, client bytes out."""

    @abc.abstractmethod
    def end(self) -> bytes:
        """The upstream ended: closing events, or an error event if it was cut."""

    @abc.abstractmethod
    def failed(self, exc: UpstreamError) -> bytes:
        """The error event for a mid-stream UpstreamError."""

    def tokens(self) -> tuple:
        return None, None, None


async def _next(chunks: AsyncIterator[bytes]) -> bytes | None:
    """The next upstream chunk, None at the end of the stream."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


async def prime(call: AsyncIterator[bytes], tr: Translator, provider: str) -> tuple[bytes, bool]:
    """Read the upstream stream until the translator has bytes for the client (the stream line): the
    first client bytes, and whether the upstream stream is over. A stream that fails or ends before it
    produced any content (dropped, malformed, an error event first, empty) raises an UpstreamError, so
    the request can still fail over."""
    while True:
        chunk = await _next(call)
        out = tr.feed(chunk) if chunk is not None else tr.end()
        if tr.error:
            with contextlib.suppress(Exception):
                await call.aclose()
            raise UpstreamProtocolError(provider, f"provider '{provider}' stream failed before any content: "
                                                  f"{tr.error}")
        if chunk is None and not out:
            raise UpstreamProtocolError(provider, f"provider '{provider}' sent an empty stream")
        if out or tr.finished or chunk is None:
            return out, tr.finished or chunk is None


async def _ticks(waiting: asyncio.Future, every: float):
    """Yields each time `every` seconds pass while `waiting` is not done."""
    while not waiting.done():
        done, _ = await asyncio.wait((waiting,), timeout=every)
        if not done:
            yield


async def relay(first: bytes, chunks: AsyncIterator[bytes], tr: Translator, rec: AuditRecord,
                finish: Callable[[int, str | None], None], receive=None, *, ended: bool = False,
                pending: asyncio.Future | None = None, keepalive: float | None = None):
    """The client's stream (see the module docstring); `finish(status, error)` completes the audit record.
    `first` is the client bytes `prime()` already got out of the translator (`ended`: the upstream stream
    is over, nothing more to read). `pending`: the stream was committed while `prime()` still runs; its
    (first, ended) is awaited here. `keepalive`: seconds of upstream silence after which the client gets
    the translator's keep-alive (local engines; None: never)."""
    # The client going away is noticed by a task waiting on `receive`, started only for a stream that
    # is not over at its first write (a short answer often is: then it costs nothing).
    gone = asyncio.ensure_future(receive()) if receive is not None and not (ended or tr.finished) else None
    status = 200
    sent = 0
    waiting = pending  # what is awaited with keep-alives: the committed prime(), then each read
    try:
        if pending is not None:
            async for _ in _ticks(pending, keepalive):
                yield tr.keepalive
                if gone is not None and gone.done():
                    status, tr.error = 499, "client disconnected"
                    return
            first, ended = pending.result()  # an UpstreamError here is the dialect's error event
        if first:
            yield first
            sent += len(first)
        if ended or tr.finished:
            return
        while True:
            if keepalive is None:
                chunk = await _next(chunks)
            else:
                waiting = asyncio.ensure_future(_next(chunks))
                async for _ in _ticks(waiting, keepalive):
                    yield tr.keepalive
                    if gone is not None and gone.done():
                        status, tr.error = 499, "client disconnected"
                        return
                chunk = waiting.result()
            out = tr.feed(chunk) if chunk is not None else tr.end()
            if out:
                yield out
                sent += len(out)
            if gone is not None and gone.done():
                status, tr.error = 499, "client disconnected"
                return
            if tr.finished or chunk is None:
                break
    except UpstreamError as exc:
        tr.error = exc.message
        yield tr.failed(exc)
    except BaseException as exc:  # client gone (cancelled) or a bug: record it, then let it propagate
        tr.error = tr.error or f"stream aborted: {type(exc).__name__}"
        raise
    finally:
        if gone is not None and not gone.done():
            gone.cancel()
        if waiting is not None and not waiting.done():  # a read still under way: stop it before closing
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting
        await chunks.aclose()
        rec.set_tokens(tr.tokens())
        error = tr.error
        if error and status == 200:  # the upstream failed past the stream line: no failover any more
            error = f"stream broke after {sent} bytes sent to the client: {error}"
            notes = rec.attempts_detail
            if notes:
                notes[-1] = {**notes[-1], "outcome": "broke_mid_stream", "at_byte": sent, "error": tr.error}
        finish(status, error)
