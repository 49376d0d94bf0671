"""The attempt loop: the route's targets in order until one answers (`run`).

Per target: skip a provider cooling down (its breaker is open); find the dialect's pair for the
backend's wires; for a cold local model, load-aware routing (`_cold`: wait up to the route's max_wait,
move on, or ask the client to retry); build the backend's request (the pair's Leg); let the backend fit
it to the model's context (`Backend.fit`: a local engine counts the prompt with the model's own tokenizer
and clamps max_tokens to the room left, noted in the attempt's `note`, or raises ContextExceeded, which
moves on at once without calling, so no engine starts for a request that cannot fit); then call, retrying
the same target per its retry policy, failing over per `routing/policy.py`.

The stream line: a streamed answer is normally read up to its first client bytes (`prime`) before the
HTTP status is decided, so a failure before the first token can still fail over. A local target that is
the last one left (nothing to fail over to) is the exception: its prefill may take minutes, during which
neither the client nor a proxy in between should see silence. Once `keepalive` seconds passed without a
first byte while its engine is ready (prefilling, not starting: a failed start keeps its own status),
the stream is committed (`Answer.pending`: 200 and the SSE headers go out while `prime` still runs) and
`streaming.relay` sends the dialect's keep-alive (`Translator.keepalive`) every `keepalive` seconds
until the first token. Every stream from a local engine gets those keep-alives in its silences
(`Answer.keepalive`), also when the engine's first chunk came at once and the prefill follows it. A failure after that point is the dialect's error event in the stream, as for
any failure past the stream line.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from mlxgw.backends.base import (
    ChatResult, ContextExceeded, UpstreamConnectError, UpstreamError, UpstreamStatusError, UpstreamStream,
)  # fmt: skip
from mlxgw.dialects import openai as oa
from mlxgw.routing import Route, Target
from mlxgw.routing.policy import ColdTarget, ModelLoading, fails_over, outcome, retryable
from mlxgw.server.dialect import Dialect, Exchange, Leg, Pair
from mlxgw.server.record import AuditRecord
from mlxgw.server.streaming import Translator, prime


class Failed(Exception):
    """Every target failed before the first byte; `error` is the last failure, `attempts` the audit
    record's list of attempts, `pair` the dialect's pair the last call went through (None: no backend
was called), whose wire shapes the upstream's error body."""

    def __init__(self, error: UpstreamError, attempts: list[dict] | None = None, route: str | None = None,
                 pair: Pair | None = None):
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts or []
        self.route = route
        self.pair = pair

    @property
    def summary(self) -> str | None:
        """One message listing the attempts, when more than one target was tried (None otherwise)."""
        if isinstance(self.error, ContextExceeded):
            return None  # its own message names both numbers, in the words clients match ("prompt is too long")
        tried = [a for a in self.attempts if a["outcome"] != "skipped_cooldown"]
        if len({a["target"] for a in self.attempts}) < 2 or not tried:
            return None
        parts = [f"{a['target']}: {a.get('error') or a['outcome']}" for a in self.attempts]
        return f"every target of route '{self.route}' failed ({len(self.attempts)} attempts): " + "; ".join(parts)


@dataclass(slots=True)
class Answer:
    leg: Leg
    result: ChatResult | None = None  # a non-streamed answer
    first: bytes = b""  # a stream's first client bytes (out of `translator`)
    chunks: UpstreamStream | None = None  # the rest of the upstream stream
    translator: Translator | None = None
    ended: bool = False  # the upstream stream already ended while `run` read up to its first content
    pending: asyncio.Future | None = None  # committed before its first byte: prime() still runs (module doc)
    keepalive: float | None = None  # a local engine's stream: keep-alives after this many silent seconds


def _describe(exc: UpstreamError) -> str:
    """One line about a failed attempt: an HTTP error with what the upstream said."""
    if isinstance(exc, UpstreamStatusError):
        said = oa.upstream_error(exc.status, exc.body or b"", exc.provider)["error"]["message"]
        return f"{exc.message}: {said[:300]}"
    return exc.summary


def _tries(notes: list[dict]) -> int:
    """Attempts made so far (targets skipped while cooling down are listed but were not tried)."""
    return sum(1 for n in notes if n["outcome"] != "skipped_cooldown")


class Step:
    """What the attempt loop needs of one route target for one dialect, looked up once per Runtime rather
    than per request (`steps`): its backend, provider and pair, its retry policy, whether load-aware
    routing applies."""

    __slots__ = ("target", "label", "name", "backend", "model", "aliases", "pair", "provider", "policy", "tries",
                 "cold", "local")

    def __init__(self, rt, route: Route, target: Target, dialect: Dialect):
        self.target = target
        self.label = target.label
        self.name = target.provider
        self.backend = backend = rt.backends.get(target.provider)
        self.provider = provider = rt.snapshot.providers.get(target.provider)
        self.model = target.model
        # For `Snapshot.backend_model` in the loop: target.model, else `Provider.resolve` of the requested
        # model, written out there as a lookup in these aliases (a call per request saved).
        self.aliases = provider.aliases if provider is not None else {}
        self.pair = dialect.pair_for(backend) if backend is not None else None
        self.policy = policy = provider.retry if provider is not None else None
        self.tries = 1 + (policy.attempts if policy is not None else 0)
        self.local = backend is not None and backend.supervisor is not None
        self.cold = self.local and route.on_cold != "wait"


def steps(rt, route: Route, dialect: Dialect) -> tuple[tuple[Step, bool], ...]:
    """The route's (step, whether a later one exists) in order, for this Runtime and dialect: made once and
    kept on the Route (one entry per dialect) with the Runtime's backends they were made from, so a Route
    met with other backends (two Runtimes built from one Snapshot) has them made afresh."""
    made = route.steps.get(dialect)
    if made is None or made[0] is not rt.backends:
        last = len(route.targets) - 1
        made = route.steps[dialect] = (rt.backends, tuple((Step(rt, route, t, dialect), i < last)
                                                         for i, t in enumerate(route.targets)))
    return made[1]


def _order(order: tuple[tuple[Step, bool], ...], rt, notes: list[dict]):
    """The steps to try, in order, with whether a later one is still available, when some breaker is
    open (else the plain order): providers whose breaker is open are skipped (noted), unless every
    target's is, then the first of them is tried."""
    breakers = rt.breakers
    skipped: list[Step] = []
    tried = False
    for i, (s, _) in enumerate(order):
        if breakers.allow(s.name, s.provider.cooldown if s.provider is not None else 0.0):
            tried = True
            later = any(not breakers.is_open(x.name) for x, _ in order[i + 1:])
            yield s, later
        else:
            notes.append({"target": s.label, "outcome": "skipped_cooldown", "ms": 0.0,
                          "error": f"provider '{s.name}' is cooling down after repeated failures"})
            skipped.append(s)
    if not tried and skipped:
        yield skipped[0], False


async def _cold(backend, backend_model: str, route: Route, later: bool) -> UpstreamError | None:
    """Load-aware routing for a local target (see the module docstring): None to go ahead (the model is
    ready, or worth waiting for), ColdTarget to move on, ModelLoading to ask the client to retry."""
    sup = backend.supervisor
    try:
        r = sup.readiness(backend.name, backend_model)
    except UpstreamError:
        return None  # send() reports it
    if r.ready or r.failed:
        return None  # ready; or its last start failed: send() reports that (fast) or starts it afresh
    max_wait = route.max_wait or 0.0
    expected = r.expected_remaining
    task = sup.warm(backend.name, backend_model)  # loads in the background whatever this request does
    if expected is None or expected <= max_wait:
        try:
            await asyncio.wait_for(asyncio.shield(task), max_wait)
            return None
        except TimeoutError:
            try:
                r = sup.readiness(backend.name, backend_model)
            except UpstreamError:
                return None  # dropped from the config meanwhile: send() reports it
            expected = r.expected_remaining
        except UpstreamError:
            return None  # the start failed: send() gets the same error, which fails over
    if route.on_cold == "retry_later":
        return ModelLoading(backend.name, backend_model, expected if expected is not None else r.start_timeout_left)
    if not later:
        return None  # nothing to move on to: wait for the load
    shown = f"about {expected:.1f}s" if expected is not None else "longer"
    return ColdTarget(backend.name, f"local model '{backend_model}' is loading ({shown} to go, the route's max_wait "
                                    f"is {max_wait:g}s); it keeps loading in the background")


async def _prime_local(chunks, tr: Translator, backend, backend_model: str, every: float):
    """`prime()` for the last local target left: (first, ended, None) when it finished, or (b"", False,
    the prime task) to commit the stream once `every` seconds passed without a first byte while the
    engine is ready (prefilling, not starting: a failed start keeps its own status)."""
    priming = asyncio.ensure_future(prime(chunks, tr, backend.name))
    try:
        while True:
            done, _ = await asyncio.wait((priming,), timeout=every)
            if done:
                first, ended = priming.result()
                return first, ended, None
            try:
                if backend.supervisor.readiness(backend.name, backend_model).ready:
                    return b"", False, priming
            except UpstreamError:  # dropped from the config meanwhile: the stream reports it
                continue
    except asyncio.CancelledError:  # the client went away: stop reading the engine
        priming.cancel()
        raise


async def run(rt, route: Route, ex: Exchange, rec: AuditRecord, t0: float, dialect: Dialect,
              keepalive: float = 15.0) -> Answer:
    """The first answer of the route's targets (see the module docstring). Fills the record's attempts,
    attempts_detail, failovers, provider, backend_model, backend_api and ttfb_ms."""
    breakers = rt.breakers
    notes: list[dict] = []
    rec.attempts_detail = notes
    error: UpstreamError | None = None
    last: Pair | None = None
    order = steps(rt, route, dialect)
    for step, later in _order(order, rt, notes) if breakers.active else order:
        if notes:
            rec.failovers = len({n["target"] for n in notes if n["target"] != step.label})  # targets before it
        backend = step.backend
        backend_model = step.model or step.aliases.get(ex.model, ex.model)
        rec.provider, rec.backend_model = step.name, backend_model
        pair = step.pair
        if pair is None:
            reason = rt.unavailable.get(step.name) or f"provider '{step.name}' is not configured"
            if backend is not None:
                reason = f"provider '{step.name}' speaks none of the APIs a {dialect.wire} client can be served in"
            error = UpstreamConnectError(step.name, reason)
            notes.append({"target": step.label, "outcome": "unavailable", "ms": 0.0, "error": reason})
            rec.attempts = _tries(notes)
            continue
        if step.cold:
            began = time.perf_counter()
            cold = await _cold(backend, backend_model, route, later)
            if cold is not None:
                notes.append({"target": step.label, "outcome": outcome(cold),
                              "ms": round((time.perf_counter() - began) * 1000, 1), "error": cold.message})
                rec.attempts = _tries(notes)
                if isinstance(cold, ModelLoading):
                    raise Failed(cold, notes, route.key, last)
                error = cold
                continue
        leg = pair.leg(ex, backend, backend_model)
        fitted = None
        if backend.fits:
            began = time.perf_counter()
            try:
                leg.body, fitted = await backend.fit(pair.wire, leg.body)
            except ContextExceeded as exc:  # nothing was called, no engine started: on to the next target
                error = exc
                notes.append({"target": step.label, "outcome": outcome(exc),
                              "ms": round((time.perf_counter() - began) * 1000, 1), "error": exc.message})
                rec.attempts = _tries(notes)
                continue
        rec.backend_api = wire = pair.wire
        last = pair
        tries = step.tries
        for n in range(1, tries + 1):
            began = time.perf_counter()
            rec.attempts = (_tries(notes) if notes else 0) + 1
            try:
                if ex.stream:
                    chunks = backend.stream(wire, leg.body, step.target.timeouts, leg.headers)
                    tr = pair.translator(ex, leg, step.name)
                    if step.local and not later and n == tries:
                        first, ended, pending = await _prime_local(chunks, tr, backend, backend_model, keepalive)
                    else:
                        (first, ended), pending = await prime(chunks, tr, step.name), None
                    answer = Answer(leg, None, first, chunks, tr, ended, pending, keepalive if step.local else None)
                else:
                    answer = Answer(leg, await backend.call(wire, leg.body, step.target.timeouts, leg.headers))
            except UpstreamError as exc:
                error = exc
                note = {"target": step.label, "outcome": outcome(exc),
                        "ms": round((time.perf_counter() - began) * 1000, 1), "error": _describe(exc)}
                if isinstance(exc, UpstreamStatusError):
                    note["status"] = exc.status
                if fitted:
                    note["note"] = fitted
                notes.append(note)
                if not fails_over(exc):
                    breakers.success(step.name)  # it answered: a client error is not its failure
                    raise Failed(exc, notes, route.key, pair) from None
                if n < tries and retryable(exc):
                    delay = step.policy.delay(n, exc.retry_after if isinstance(exc, UpstreamStatusError) else None)
                    if delay is not None:
                        await asyncio.sleep(delay)
                        continue
                breakers.failure(step.name, step.provider.cooldown if step.provider is not None else 0.0)
                break
            breakers.success(step.name)
            now = time.perf_counter()
            # (ms to 0.1: round(x, 1) goes through a decimal string, twice the time of this)
            note = {"target": step.label, "outcome": "ok", "ms": round((now - began) * 10000) / 10}
            if fitted:
                note["note"] = fitted
            if answer.pending is not None:
                note["committed"] = "before the first token (keep-alives while the local engine prefills)"
            notes.append(note)
            rec.ttfb_ms = (now - t0) * 1000
            return answer
    if error is None:
        error = UpstreamConnectError(route.key, f"route '{route.key}' has no target")
    raise Failed(error, notes, route.key, last)
