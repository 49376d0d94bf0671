"""The failover policy: which upstream failures move a request on, which are retried on the same target
first and after how long, and which targets are skipped for a while because they keep failing.

Only failures that happened before any byte reached the client get here (after that, the stream relay
ends the client's stream with an error event in its dialect).

- `fails_over(exc)`: move on to the route's next target on connection refused or dropped, a timeout
  (connect, first token, or a stalled non-streamed body), HTTP 5xx, 408, 429 and 529, a local engine that
  failed to start or crashed, a 2xx answer that cannot be used (malformed JSON, an empty stream), or a
  prompt that does not fit a local model's context (another target's context may hold it).
  Never on another 4xx (400, 401, 403, 404, 413, 422...): the next target would refuse it the same way.
- `retryable(exc)`: the same target may be tried again first (RetryPolicy.attempts extra times) on
  408/429/5xx, connection refused and connect timeouts; not on a first-token timeout (a slow model stays
  slow), a local engine's failed start (the supervisor remembers it), or an unusable answer.
- `RetryPolicy.delay(n, retry_after)`: exponential backoff with jitter; an upstream `retry-after` is
  honoured up to `max_backoff`, and a longer one means "do not retry here, fail over now".
- `Breakers`: a circuit breaker per provider. `FAILURES_TO_OPEN` consecutive failures open it for the
  provider's `cooldown`; while open the provider is skipped (unless every target of the route is cooling
  down); when the cooldown ends ONE request probes it (half-open): success closes it, failure opens it
  again. The state lives in memory only, on the gateway, and survives config reloads.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from mlxgw.upstream_errors import (
    ContextExceeded, EngineError, UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamStatusError,
    UpstreamTimeout,
)  # fmt: skip

FAILOVER_STATUSES = frozenset({408, 429})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
FAILURES_TO_OPEN = 3
DEFAULT_COOLDOWN = 30.0


class ModelLoading(UpstreamError):
    """A route with `on_cold: retry_later` found its local model loading: the client is told to come back
    in `retry_after` seconds (503 for OpenAI clients, 529 overloaded_error for Anthropic's)."""

    def __init__(self, provider: str, model: str, seconds: float):
        self.seconds = max(1, int(seconds + 0.999))
        super().__init__(provider, f"the local model '{model}' of provider '{provider}' is loading; "
                                   f"retry in about {self.seconds}s")
        self.retry_after = str(self.seconds)


class ColdTarget(UpstreamError):
    """A local target skipped because it is not loaded and would take longer than the route's max_wait."""


def fails_over(exc: UpstreamError) -> bool:
    """True when the next target should be tried (see the module docstring)."""
    if isinstance(exc, ModelLoading):
        return False
    if isinstance(exc, (UpstreamConnectError, UpstreamTimeout, UpstreamProtocolError, ColdTarget,
                        ContextExceeded)):
        return True
    if isinstance(exc, UpstreamStatusError):
        return exc.status >= 500 or exc.status in FAILOVER_STATUSES
    return False


def retryable(exc: UpstreamError) -> bool:
    """True when the same target may be tried again before failing over."""
    if isinstance(exc, UpstreamStatusError):
        return exc.status in RETRY_STATUSES
    if isinstance(exc, UpstreamTimeout):
        return exc.kind == "connect"
    if isinstance(exc, UpstreamConnectError):
        return not isinstance(exc, EngineError)
    return False


def outcome(exc: UpstreamError) -> str:
    """A short name of a failure for the audit row's attempts."""
    if isinstance(exc, ModelLoading):
        return "loading"
    if isinstance(exc, ColdTarget):
        return "cold"
    if isinstance(exc, ContextExceeded):
        return "context_exceeded"
    if isinstance(exc, UpstreamStatusError):
        return f"http_{exc.status}"
    if isinstance(exc, UpstreamTimeout):
        return f"timeout_{exc.kind}"
    if isinstance(exc, UpstreamProtocolError):
        return "bad_response"
    if isinstance(exc, EngineError):
        return "engine_failed"
    return "unreachable"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `retry-after` header: a number of seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 0  # extra tries on the same target
    backoff: float = 0.5
    max_backoff: float = 20.0

    def delay(self, n: int, retry_after: str | None = None) -> float | None:
        """Seconds to wait before retry number `n` (1-based), or None when the upstream asks for longer
        than `max_backoff` (then failing over beats waiting)."""
        asked = parse_retry_after(retry_after)
        if asked is not None:
            return asked if asked <= self.max_backoff else None
        base = min(self.max_backoff, self.backoff * (2 ** (n - 1)))
        return base / 2 + random.uniform(0, base / 2)  # "equal jitter": never less than half the backoff


class _Breaker:
    __slots__ = ("failures", "until", "probe_at")

    def __init__(self):
        self.failures = 0
        self.until = 0.0  # wall clock; > now while open
        self.probe_at = 0.0  # when the half-open probe was let through


class Breakers:
    """The circuit breakers of one gateway (see the module docstring). Keys are provider names."""

    def __init__(self, failures_to_open: int = FAILURES_TO_OPEN):
        self.failures_to_open = failures_to_open
        self._b: dict[str, _Breaker] = {}

    @property
    def active(self) -> bool:
        """Does any provider have failures on record? (None has: every breaker is closed.)"""
        return bool(self._b)

    def is_open(self, key: str, now: float | None = None) -> bool:
        b = self._b.get(key)
        return b is not None and b.until > (time.time() if now is None else now)

    def allow(self, key: str, cooldown: float) -> bool:
        """May a request try `key` now? Closed: yes. Open: no. Cooled down (half-open): one request at a
        time probes it (another may probe if that one has not reported within the cooldown)."""
        b = self._b.get(key)
        if b is None or b.until == 0.0:
            return True
        now = time.time()
        if b.until > now:
            return False
        if b.probe_at and now - b.probe_at < max(cooldown, 1.0):
            return False
        b.probe_at = now
        return True

    def success(self, key: str) -> None:
        b = self._b.get(key)
        if b is not None:
            del self._b[key]

    def failure(self, key: str, cooldown: float) -> None:
        if cooldown <= 0:
            return
        b = self._b.get(key)
        if b is None:
            b = self._b[key] = _Breaker()
        b.failures += 1
        if b.probe_at or b.failures >= self.failures_to_open:
            b.until = time.time() + cooldown
            b.probe_at = 0.0

    def open_until(self) -> dict[str, float]:
        """Provider -> wall-clock time (time.time()) its cooldown ends, for the providers cooling down."""
        now = time.time()
        return {k: b.until for k, b in self._b.items() if b.until > now}

    def describe(self) -> list[dict]:
        now = time.time()
        return [{"provider": k, "state": "open" if b.until > now else "half-open" if b.until else "closed",
                 "failures": b.failures, "until": b.until or None,
                 "seconds_left": round(b.until - now, 1) if b.until > now else 0.0}
                for k, b in sorted(self._b.items())]
