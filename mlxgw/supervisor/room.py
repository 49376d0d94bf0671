"""Room for a model about to start: which idle model to evict first, or why nothing can be.

Before a start the model's memory estimate is checked against the budget (and the number of its
provider's loaded models against `max_loaded`). The Supervisor evicts the model `next_eviction` names,
least recently used idle one first, and asks again until it answers None; when nothing idle is left to
evict it raises EngineError with the numbers, an upstream-unavailable error so failover can take over.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlxgw.supervisor import memory
from mlxgw.supervisor.models import READY, STARTING, STOPPING, EngineProfile, ManagedModel
from mlxgw.upstream_errors import EngineError


def next_eviction(m: ManagedModel, need: memory.Estimate, models: Iterable[ManagedModel],
                  profiles: dict[str, EngineProfile], budget: int) -> tuple[ManagedModel, str] | None:
    """(model to stop, "memory" | "max_loaded") before `m` (needing `need`) may start; None when it fits."""
    others = [x for x in models if x.state in (STARTING, READY, STOPPING) and x is not m]
    used = sum(x.estimate(profiles[x.launch.kind].overhead).total for x in others)
    same = [x for x in others if x.provider == m.provider]
    limit = m.settings.max_loaded
    over_count = limit is not None and len(same) >= limit
    over_memory = used + need.total > budget
    if not over_count and not over_memory:
        return None
    pool = same if over_count and not over_memory else others
    idle = sorted((x for x in pool if x.state == READY and x.inflight == 0), key=lambda x: x.last_used)
    if not idle:
        busy = ", ".join(f"{x.provider}/{x.name} ({x.state}, {x.inflight} in flight)" for x in pool) or "none"
        if over_memory:
            raise EngineError(m.provider, (
                f"not starting '{m.name}': it needs about {need.describe()}, the memory budget is "
                f"{memory.human(budget)} and {memory.human(used)} of it is taken by models that "
                f"cannot be stopped now: {busy}. Set MLXGW_MEMORY_BUDGET or stop a model."))
        raise EngineError(m.provider, (
            f"not starting '{m.name}': provider '{m.provider}' allows {limit} loaded model(s) "
            f"(max_loaded) and none of {busy} is idle"))
    return idle[0], "memory" if over_memory else "max_loaded"
