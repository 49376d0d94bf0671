"""The Runtime: a Snapshot plus one backend adapter per provider, swapped as ONE reference.

The circuit breakers (provider cooldowns) are the gateway's: every Runtime it builds shares them, so a
reload keeps a failing provider cooling down.

Building it is the only place config turns into objects that do I/O; it happens at start and on reload,
never per request. A request reads `gateway.runtime` once and uses that object to the end, so a reload
never changes the ground under a request in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlxgw import backends
from mlxgw.backends.base import Backend
from mlxgw.backends.http import HttpClient
from mlxgw.routing import Breakers, Snapshot


@dataclass(frozen=True)
class Runtime:
    snapshot: Snapshot
    backends: dict[str, Backend]
    unavailable: dict[str, str]  # provider -> why it has no adapter
    breakers: Breakers = field(default_factory=Breakers)  # the gateway's, shared by every Runtime it builds

    @property
    def revision(self) -> int:
        return self.snapshot.revision


def build(revision: int, config: dict, keys: dict, http: HttpClient, supervisor=None,
          breakers: Breakers | None = None) -> Runtime:
    snap = Snapshot(config, keys, revision)
    if supervisor is not None:  # local engines: adopt the config, keeping engines whose spec is unchanged
        supervisor.sync(snap.providers.values())
    adapters: dict[str, Backend] = {}
    unavailable: dict[str, str] = {}
    for p in snap.providers.values():
        try:
            adapters[p.name] = backends.create(p.name, p.kind, p.spec, p.api_key, http, supervisor=supervisor)
        except ValueError as exc:
            unavailable[p.name] = str(exc)
    return Runtime(snap, adapters, unavailable, breakers if breakers is not None else Breakers())
