"""Start-up and shutdown, as a Falcon middleware (Falcon runs ASGI lifespan through middleware).

Start-up: open the store, build the first Runtime, start the shared HTTP client, the audit writer and
the reload task, the audit log's pruning (mlxgw.audit.retention, by the config's `audit` limits), and apply
the settings that live outside the Runtime (the stored responses' retention). The reload task polls the
store's revision (one integer) about every second, or at once
on SIGHUP, and swaps in a new Runtime when it moves; a config that fails to build keeps the old Runtime
and logs why.
Shutdown (after uvicorn stopped accepting and let requests in flight finish, up to the shutdown
timeout): stop reloading, flush the audit log, stop the engines this gateway started, drain the audit
log (no row lost), close the HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading

from mlxgw import tracing
from mlxgw.audit import retention as audit_retention
from mlxgw.audit.writer import AuditWriter
from mlxgw.backends import local_profiles
from mlxgw.server import keys, runtime
from mlxgw.server.origins import Access
from mlxgw.server.gateway import Gateway
from mlxgw.store.live import current_revision, load_runtime
from mlxgw.store.responses import RETENTION, ResponseStore
from mlxgw.store.sql import Database, home
from mlxgw.supervisor import Supervisor

log = logging.getLogger("mlxgw.server")



def _can_handle_sighup() -> bool:
    """SIGHUP (reload now) can be handled: a POSIX system, and the main thread (where the event loop of
    `mlxgw serve` runs; a test's server in another thread reloads on its poll alone)."""
    return hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread()


GC_THRESHOLDS = (2_000, 20, 20)  # with freeze_gc: young, middle and old generation thresholds


class Lifespan:
    def __init__(self, gateway: Gateway, store=None, loaded: tuple | None = None):
        """`store`/`loaded` let the CLI open the store and load the config before uvicorn starts, so a
        broken store or master key is reported as a plain error instead of a failed lifespan. `store`: a
        mlxgw.store.sql.Database (what the server opens itself: no SQLAlchemy) or a Store."""
        self.gw = gateway
        self.store = store
        self._loaded = loaded
        self._reloader: asyncio.Task | None = None
        self._pruner: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self.supervisor = None  # local engines (mlxgw.supervisor), created at start-up

    async def process_startup(self, scope, event) -> None:
        gw = self.gw
        if self.store is None:
            self.store = Database(gw.config.db_url).check()
        store = self.store
        revision, config, provider_keys = self._loaded or load_runtime(store)
        self._loaded = None
        gw.key_hashes = keys.load_hashes(store)
        await gw.http.start()
        # The lifespan owns the supervisor, gw publishes it. Engine logs go under MLXGW_HOME/logs; it may
        # launch every engine kind the backends know.
        self.supervisor = gw.supervisor = Supervisor(gw.http, home() / "logs", local_profiles(gw.http))
        self.supervisor.on_event = gw.engine_counters
        gw.runtime = runtime.build(revision, config, provider_keys, gw.http, self.supervisor, gw.breakers)
        gw.access = Access.of(gw.config.allowed_hosts, gw.config.allow_origins, config.get("server"))
        gw.tracer = tracing.from_env()
        observers = [gw.metrics.observe] + ([gw.tracer.observe] if gw.tracer is not None else [])
        gw.audit = AuditWriter(store, interval=gw.config.audit_interval, observers=observers)
        await gw.audit.start()
        gw.responses = ResponseStore(store, interval=gw.config.audit_interval)
        self._apply_settings()
        await gw.responses.start()
        self._wake = asyncio.Event()
        if _can_handle_sighup():
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._wake.set)
        self._reloader = asyncio.create_task(self._reload_loop(), name="mlxgw-reload")
        self._pruner = asyncio.create_task(audit_retention.run(store, self._audit_limits, gw.config.prune_interval),
                                           name="mlxgw-audit-prune")
        if gw.config.freeze_gc:
            # Everything loaded so far (modules, the config's objects) lives as long as the process: out of
            # the collector's sight, a full collection under load scans only what requests made since,
            # well under 1 ms instead of about 17 (48k objects at start-up; 3 to 5 full collections per
            # 10 s at 1,500 requests/s).
            gc.collect()
            gc.freeze()
            # Collections by the default thresholds (700, 10, 10) took about 2% of a request's
            # instructions (callgrind, c=8): nearly everything a request makes is freed by its reference
            # count, so rarer collections find the same garbage for less. Not much rarer: a young
            # collection walks every young object still alive (at 20,000, one bench run's p99 was 4.1x its p50).
            gc.set_threshold(*GC_THRESHOLDS)
        gw.ready = True
        log.info("mlxgw serving config revision %d from %s", revision, store.where)
        modules = os.environ.get("MLXGW_DEBUG_MODULES")
        if modules:  # tests/test_serve_imports.py: what a started server has imported
            with open(modules, "w", encoding="utf-8") as fh:
                fh.write("\n".join(sorted(sys.modules)) + "\n")

    async def process_shutdown(self, scope, event) -> None:
        gw = self.gw
        gw.ready = False
        if _can_handle_sighup():
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in (self._reloader, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # By now uvicorn has stopped accepting and let requests in flight finish (up to `mlxgw serve
        # --shutdown-timeout`). Their audit rows go to the database first, then the engines stop; a row
        # recorded meanwhile (a request cancelled at the deadline) is in the final drain.
        if gw.audit is not None:
            await gw.audit.flush()
        if self.supervisor is not None:  # stop every engine this gateway started
            await self.supervisor.shutdown()
        if gw.audit is not None:
            await gw.audit.stop()
        if gw.responses is not None:
            await gw.responses.close()
        if gw.tracer is not None:  # export the spans of the last rows
            await asyncio.to_thread(gw.tracer.shutdown)
        await gw.http.close()
        if self.store is not None:
            self.store.db.close()

    def _audit_limits(self) -> tuple[float | None, int | None]:
        snap = self.gw.runtime.snapshot
        return snap.audit_retention, snap.audit_max_rows

    async def reload_once(self) -> bool:
        """Swap in the store's config if its revision moved; refresh gateway key hashes. True on a swap."""
        gw, store = self.gw, self.store
        gw.key_hashes = await asyncio.to_thread(keys.load_hashes, store)
        rev = await asyncio.to_thread(current_revision, store)
        if rev == gw.runtime.revision:
            return False
        revision, config, provider_keys = await asyncio.to_thread(load_runtime, store)
        gw.runtime = runtime.build(revision, config, provider_keys, gw.http, self.supervisor, gw.breakers)
        self._apply_settings()
        gw.access = Access.of(gw.config.allowed_hosts, gw.config.allow_origins, config.get("server"))
        log.info("mlxgw reloaded config revision %d", revision)
        return True

    def _apply_settings(self) -> None:
        """The config's settings that live outside the Runtime: the stored responses' retention."""
        retention = self.gw.runtime.snapshot.response_retention
        self.gw.responses.retention = retention if retention is not None else RETENTION

    async def _reload_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.gw.config.reload_interval)
            self._wake.clear()
            try:
                await self.reload_once()
            except Exception as exc:  # keep serving the config we have
                log.warning("mlxgw could not reload the config: %s", exc)
