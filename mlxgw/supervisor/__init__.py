"""Local engine processes: one owner per model, started on demand, stopped when idle (GATE-04).

The Supervisor is handed the engine profiles it may launch (mlxgw.backends provides them) by whoever
builds it: it imports nothing from the backends, which build on it."""

from mlxgw.supervisor.core import Supervisor
from mlxgw.supervisor.models import (
    FAILED, READY, STARTING, STOPPED, STOPPING, EngineProfile, IllegalTransition, LaunchSpec, LocalModel,
    ManagedModel, ModelSettings, Readiness,
)  # fmt: skip
from mlxgw.upstream_errors import EngineError

__all__ = ["FAILED", "READY", "STARTING", "STOPPED", "STOPPING", "EngineError", "EngineProfile",
           "IllegalTransition", "LaunchSpec", "LocalModel", "ManagedModel", "ModelSettings", "Readiness",
           "Supervisor"]
