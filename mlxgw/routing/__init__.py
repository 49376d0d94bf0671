"""Routing: model name -> Route -> ordered targets, and the failover policy between them."""

from mlxgw.routing.policy import Attempts, fails_over
from mlxgw.routing.snapshot import Provider, Route, Snapshot, Target, merge_timeouts

__all__ = ["Attempts", "Provider", "Route", "Snapshot", "Target", "fails_over", "merge_timeouts"]
