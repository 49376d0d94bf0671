"""Local engine processes: one owner per model, started on demand, stopped when idle (GATE-04)."""

from mlxgw.supervisor.core import (
    FAILED, READY, STARTING, STOPPED, STOPPING, EngineError, EngineProfile, LaunchSpec, ManagedModel, Supervisor,
)  # fmt: skip

__all__ = ["FAILED", "READY", "STARTING", "STOPPED", "STOPPING", "EngineError", "EngineProfile", "LaunchSpec",
           "ManagedModel", "Supervisor"]


def create(http) -> Supervisor:
    """The supervisor of one gateway process: engine logs under MLXGW_HOME/logs, every engine kind the
    backends know how to launch."""
    from mlxgw.backends import local_profiles
    from mlxgw.store.db import home

    return Supervisor(http, home() / "logs", local_profiles(http))
