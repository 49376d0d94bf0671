"""Routing: model name -> Route -> ordered targets, and the failover policy between them."""

from mlxgw.routing.policy import Breakers, RetryPolicy, fails_over, retryable
from mlxgw.routing.snapshot import Provider, Route, Snapshot, Target, merge_timeouts

__all__ = ["Breakers", "Provider", "RetryPolicy", "Route", "Snapshot", "Target", "fails_over", "merge_timeouts",
           "retryable"]
