"""The attempt loop and the stream relay, shared by every client dialect (/v1/chat/completions,
/v1/messages).

`run()` walks a route's ordered targets (`routing.policy` says when to go on). Per target:
- a provider cooling down (its circuit breaker is open) is skipped, unless every target is;
- a local target that is not loaded is checked against the route's `max_wait` / `on_cold`: when its
  expected start (the median of its past starts) is longer than `max_wait`, or it is not ready within
  `max_wait`, the request moves on at once while the model keeps loading in the background (or, with
  `on_cold: retry_later`, the client is told when to come back);
- the resource's `send(backend, backend_model, timeouts)` makes the call in whatever wire the pair needs
  (pass-through or translated: the resource decides, and records `row["backend_api"]`); for a stream the
  first chunk is awaited, so every failure before the first byte reaches the client can still move on;
- a failure that `fails_over` is retried on the same target per the provider's RetryPolicy (backoff with
  jitter, `retry-after` honoured up to `max_backoff`), then counted against its breaker, then the next
  target is tried. Any other failure (a client error the next target would repeat) ends the loop.
`Failed` carries the last error out, with every attempt, and the resource answers it in its client's
dialect. `send` may raise the resource's own ApiError (a request that cannot be translated): that is the
client's fault and ends the loop at once. Every attempt (target, outcome, duration) lands in
`row["attempts_detail"]`; `row["failovers"]` counts the moves to a next target.

`relay()` streams an answer to the client: each upstream read goes through a `Translator` (feed bytes,
get bytes) and out as one write, so nothing is buffered. It notices a client that went away (status 499,
upstream closed at the next chunk), turns a mid-stream upstream failure into the translator's error
event (the stream line: past the first byte there is no failover), records in the audit row that the
stream broke and after how many bytes, and completes the row once the stream is over.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mlxgw.backends.base import (
    Backend, UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamStatusError,
)  # fmt: skip
from mlxgw.dialects import openai as oa
from mlxgw.routing import Route, Target
from mlxgw.routing.policy import ColdTarget, ModelLoading, fails_over, outcome, retryable


class Failed(Exception):
    """Every target failed before the first byte; `error` is the last failure, `attempts` the audit
    row's list of attempts."""

    def __init__(self, error: UpstreamError, attempts: list[dict] | None = None, route: str | None = None):
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts or []
        self.route = route

    @property
    def summary(self) -> str | None:
        """One message listing the attempts, when more than one target was tried (None otherwise)."""
        tried = [a for a in self.attempts if a["outcome"] != "skipped_cooldown"]
        if len({a["target"] for a in self.attempts}) < 2 or not tried:
            return None
        parts = [f"{a['target']}: {a.get('error') or a['outcome']}" for a in self.attempts]
        return f"every target of route '{self.route}' failed ({len(self.attempts)} attempts): " + "; ".join(parts)


@dataclass(slots=True)
class Answer:
    target: Target
    backend: Backend
    backend_model: str
    result: Any  # the ChatResult of a non-streaming call
    first: bytes | None  # a stream's first chunk
    chunks: AsyncIterator[bytes] | None
    context: Any  # what `send` returned next to the call (e.g. the tool-name map of a translation)
    translator: Any = None  # the stream's Translator, when `run` got a factory: `first` is then client bytes
    ended: bool = False  # the upstream stream already ended while `run` read up to its first content


Send = Callable[[Backend, str, Any], Awaitable[tuple[Any, Any]]]


def _describe(exc: UpstreamError) -> str:
    """One line about a failed attempt: an HTTP error with what the upstream said."""
    if isinstance(exc, UpstreamStatusError):
        said = oa.upstream_error(exc.status, exc.body or b"", exc.provider)["error"]["message"]
        return f"{exc.message}: {said[:300]}"
    return getattr(exc, "summary", None) or exc.message  # an engine's failed start without its log lines


def _tries(notes: list[dict]) -> int:
    """Attempts made so far (targets skipped while cooling down are listed but were not tried)."""
    return sum(1 for n in notes if n["outcome"] != "skipped_cooldown")


def _order(targets: tuple[Target, ...], rt, notes: list[dict]):
    """The targets to try, in order, with whether a later one is still available: providers whose
    breaker is open are skipped (noted), unless every target's is, then the first of them is tried."""
    breakers = rt.breakers
    providers = rt.snapshot.providers
    skipped: list[Target] = []
    tried = False
    for i, t in enumerate(targets):
        p = providers.get(t.provider)
        cooldown = p.cooldown if p is not None else 0.0
        if breakers.allow(t.provider, cooldown):
            tried = True
            later = any(not breakers.is_open(x.provider) for x in targets[i + 1:])
            yield t, later
        else:
            notes.append({"target": t.label, "outcome": "skipped_cooldown", "ms": 0.0,
                          "error": f"provider '{t.provider}' is cooling down after repeated failures"})
            skipped.append(t)
    if not tried and skipped:
        yield skipped[0], False


async def _cold(backend, backend_model: str, route: Route, later: bool) -> UpstreamError | None:
    """Load-aware routing for a local target (see the module docstring): None to go ahead (the model is
    ready, or worth waiting for), ColdTarget to move on, ModelLoading to ask the client to retry."""
    sup = backend.supervisor
    try:
        m = sup.get(backend.name, backend_model)
    except UpstreamError:
        return None  # send() reports it
    if (m.state == "ready" and m.alive()) or m.state == "failed":
        return None  # ready; or its last start failed: send() reports that (fast) or starts it afresh
    max_wait = route.max_wait or 0.0
    expected = sup.expected_remaining(m)
    task = sup.warm(backend.name, m.name)  # loads in the background whatever this request does
    if expected is None or expected <= max_wait:
        try:
            await asyncio.wait_for(asyncio.shield(task), max_wait)
            return None
        except TimeoutError:
            expected = sup.expected_remaining(m)
        except UpstreamError:
            return None  # the start failed: send() gets the same error, which fails over
    if route.on_cold == "retry_later":
        left = expected if expected is not None else m.settings.start_timeout - (
            time.time() - m.started_at if m.started_at else 0.0)
        return ModelLoading(backend.name, m.name, left)
    if not later:
        return None  # nothing to move on to: wait for the load
    shown = f"about {expected:.1f}s" if expected is not None else "longer"
    return ColdTarget(backend.name, f"local model '{m.name}' is loading ({shown} to go, the route's max_wait "
                                    f"is {max_wait:g}s); it keeps loading in the background")


async def run(rt, route: Route, model: str, row: dict, t0: float, stream: bool, send: Send,
              translator: Callable[[Target, str, Any], Translator] | None = None) -> Answer:
    """The first answer of the route's targets (see the module docstring). Fills the row's attempts,
    attempts_detail, failovers, provider, backend_model and ttfb_ms. For a stream, `translator(target,
    backend_model, context)` makes the stream's Translator (called after `send`): the upstream is read
    until it has produced the first bytes for the client, so a stream that breaks before any content
    still fails over."""
    snap = rt.snapshot
    breakers = rt.breakers
    notes: list[dict] = []
    row["attempts_detail"] = notes
    error: UpstreamError | None = None
    for target, later in _order(route.targets, rt, notes):
        row["failovers"] = len({n["target"] for n in notes if n["target"] != target.label})  # targets before it
        backend = rt.backends.get(target.provider)
        backend_model = snap.backend_model(target, model)
        row["provider"], row["backend_model"] = target.provider, backend_model
        provider = snap.providers.get(target.provider)
        if backend is None:
            reason = rt.unavailable.get(target.provider) or f"provider '{target.provider}' is not configured"
            error = UpstreamConnectError(target.provider, reason)
            notes.append({"target": target.label, "outcome": "unavailable", "ms": 0.0, "error": reason})
            row["attempts"] = _tries(notes)
            continue
        if route.on_cold != "wait" and getattr(backend, "supervisor", None) is not None:
            began = time.perf_counter()
            cold = await _cold(backend, backend_model, route, later)
            if cold is not None:
                notes.append({"target": target.label, "outcome": outcome(cold),
                              "ms": round((time.perf_counter() - began) * 1000, 1), "error": cold.message})
                row["attempts"] = _tries(notes)
                if isinstance(cold, ModelLoading):
                    raise Failed(cold, notes, route.key)
                error = cold
                continue
        policy = provider.retry if provider is not None else None
        tries = 1 + (policy.attempts if policy is not None else 0)
        for n in range(1, tries + 1):
            began = time.perf_counter()
            row["attempts"] = _tries(notes) + 1
            try:
                call, context = await send(backend, backend_model, target.timeouts)
                first, tr, ended = None, None, False
                if stream and translator is not None:
                    tr = translator(target, backend_model, context)
                    first, ended = await _prime(call, tr, target.provider)
                elif stream:
                    try:
                        first = await call.__anext__()
                    except StopAsyncIteration:
                        raise UpstreamProtocolError(target.provider,
                                                    f"provider '{target.provider}' sent an empty stream") from None
            except UpstreamError as exc:
                error = exc
                note = {"target": target.label, "outcome": outcome(exc),
                        "ms": round((time.perf_counter() - began) * 1000, 1), "error": _describe(exc)}
                if isinstance(exc, UpstreamStatusError):
                    note["status"] = exc.status
                notes.append(note)
                if not fails_over(exc):
                    breakers.success(target.provider)  # it answered: a client error is not its failure
                    raise Failed(exc, notes, route.key) from None
                if n < tries and retryable(exc):
                    delay = policy.delay(n, getattr(exc, "retry_after", None))
                    if delay is not None:
                        await asyncio.sleep(delay)
                        continue
                breakers.failure(target.provider, provider.cooldown if provider is not None else 0.0)
                break
            breakers.success(target.provider)
            notes.append({"target": target.label, "outcome": "ok",
                          "ms": round((time.perf_counter() - began) * 1000, 1)})
            row["ttfb_ms"] = (time.perf_counter() - t0) * 1000
            if stream:
                return Answer(target, backend, backend_model, None, first, call, context, tr, ended)
            return Answer(target, backend, backend_model, call, None, None, context)
    if error is None:
        error = UpstreamConnectError(route.key, f"route '{route.key}' has no target")
    raise Failed(error, notes, route.key)


async def _next(chunks: AsyncIterator[bytes]) -> bytes | None:
    """The next upstream chunk, None at the end of the stream."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


async def _prime(call: AsyncIterator[bytes], tr: Translator, provider: str) -> tuple[bytes, bool]:
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


class Translator(abc.ABC):
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


async def relay(first: bytes, chunks: AsyncIterator[bytes], tr: Translator, row: dict,
                finish: Callable[[int, str | None], None], receive=None, *, translated: bool = False,
                ended: bool = False):
    """The client's stream (see the module docstring); `finish(status, error)` completes the audit row.
    `first` is the upstream's first chunk, or with `translated` the client bytes `run()` already got out
    of the translator (`ended`: the upstream stream is over, nothing more to read)."""
    gone = asyncio.ensure_future(receive()) if receive is not None else None
    status = 200
    sent = 0
    chunk: bytes | None = first
    try:
        if translated:
            if first:
                yield first
                sent += len(first)
            if ended or tr.finished:
                return
            chunk = await _next(chunks)
        while True:
            out = tr.feed(chunk) if chunk is not None else tr.end()
            if out:
                yield out
                sent += len(out)
            if gone is not None and gone.done():
                status, tr.error = 499, "client disconnected"
                return
            if tr.finished or chunk is None:
                break
            chunk = await _next(chunks)
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
        error = tr.error
        if error and status == 200:  # the upstream failed past the stream line: no failover any more
            error = f"stream broke after {sent} bytes sent to the client: {error}"
            notes = row.get("attempts_detail")
            if notes:
                notes[-1] = {**notes[-1], "outcome": "broke_mid_stream", "at_byte": sent, "error": tr.error}
        finish(status, error)
