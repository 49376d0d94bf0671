"""Which upstream failures move a request on to the route's next target.

Only failures that happened before any byte reached the client get here. Today the rule is: the
upstream could not be reached (connection refused, connect timeout) or answered 5xx. The failover issue
adds retries with backoff and cooldowns; it extends `Attempts` rather than the server's loop.
"""

from __future__ import annotations

from mlxgw.backends.base import UpstreamConnectError, UpstreamError, UpstreamStatusError, UpstreamTimeout


def fails_over(exc: UpstreamError) -> bool:
    if isinstance(exc, UpstreamConnectError):
        return True
    if isinstance(exc, UpstreamTimeout):
        return exc.kind == "connect"
    if isinstance(exc, UpstreamStatusError):
        return exc.status >= 500
    return False


class Attempts:
    """The attempt plan of one request: iterate it to get the next target; `failed(exc)` says whether to
    go on. Keeps the count for the audit row."""

    __slots__ = ("_targets", "count")

    def __init__(self, targets):
        self._targets = targets
        self.count = 0

    def __iter__(self):
        for t in self._targets:
            self.count += 1
            yield t

    def failed(self, exc: UpstreamError) -> bool:
        """True when the next target should be tried."""
        return fails_over(exc)
