"""The state every resource shares: the current Runtime, the audit writer, the key hashes.

Resources get this object passed in (no globals), which is also what lets tests build several gateways
in one process."""

from __future__ import annotations

from mlxgw.audit.writer import AuditWriter
from mlxgw.metrics import EngineCounters, Metrics
from mlxgw.store.responses import ResponseStore
from mlxgw.backends.http import HttpClient
from mlxgw.routing import Breakers
from mlxgw.server.config import ServerConfig
from mlxgw.server.origins import Access
from mlxgw.server.runtime import Runtime


class Gateway:
    def __init__(self, config: ServerConfig):
        self.config = config
        # Host/Origin allowlists: the command line's, plus the config's `server` section once loaded.
        self.access = Access.of(config.allowed_hosts, config.allow_origins)
        self.http = HttpClient()
        self.runtime: Runtime | None = None  # set at startup, swapped by the reloader
        self.audit: AuditWriter | None = None
        self.responses: ResponseStore | None = None  # stored Responses API responses, set at startup
        self.supervisor = None  # the local engines' mlxgw.supervisor.Supervisor, set at startup
        self.key_hashes: dict[str, str] = {}  # sha256 of each gateway key -> its scope ("client" | "admin")
        self.keys_required = config.keys_required
        self.ready = False
        # The providers' circuit breakers (cooldowns), in memory only, shared by every Runtime it builds,
        # so a reload keeps a failing provider cooling down.
        self.breakers = Breakers()
        self.in_flight = 0  # HTTP requests being answered (GatewayApp counts them, streams included)
        self.engine_counters = EngineCounters()  # the supervisor's load/evict/crash events
        self.metrics = Metrics(self)
        self.tracer = None  # mlxgw.tracing.Tracer when OTEL_EXPORTER_OTLP_ENDPOINT is set
