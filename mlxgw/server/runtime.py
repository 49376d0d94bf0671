"""The Runtime: a Snapshot plus one backend adapter per provider, swapped as ONE reference.

Building it is the only place config turns into objects that do I/O; it happens at start and on reload,
never per request. A request reads `gateway.runtime` once and uses that object to the end, so a reload
never changes the ground under a request in flight.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlxgw import backends
from mlxgw.backends.base import Backend
from mlxgw.backends.http import HttpClient
from mlxgw.routing import Snapshot


@dataclass(frozen=True)
class Runtime:
    snapshot: Snapshot
    backends: dict[str, Backend]
    unavailable: dict[str, str]  # provider -> why it has no adapter

    @property
    def revision(self) -> int:
        return self.snapshot.revision


def build(revision: int, config: dict, keys: dict, http: HttpClient, supervisor=None) -> Runtime:
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
    return Runtime(snap, adapters, unavailable)
