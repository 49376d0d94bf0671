"""Batched audit writes, off the request path.

`record()` is a list append: the request never waits for the database. The pending rows go to the
`requests` table in one INSERT per batch, from a worker thread (mlxgw.store.batches: drained on `stop()`,
so a clean shutdown loses no row; a refused batch is kept and retried up to `max_pending` rows).

`observers` (the metrics, the tracer) see each finished row as it is recorded, so everything derived from
a request's outcome needs no hook in the endpoints; an observer that raises is logged, never propagated.
"""

from __future__ import annotations

import logging

from sqlalchemy import insert

from mlxgw.store.batches import BatchWriter
from mlxgw.store.db import Store
from mlxgw.store.tables import RequestLog

log = logging.getLogger("mlxgw.audit")
_LIMITS = tuple((c.name, c.type.length) for c in RequestLog.__table__.columns
                if getattr(c.type, "length", None) and c.name != "id")


class AuditWriter(BatchWriter):
    label = "audit log"

    def __init__(self, store: Store, interval: float = 0.2, batch: int = 1000, max_pending: int = 100_000,
                 observers: tuple = ()):
        super().__init__(interval, batch, max_pending)
        self._store = store
        self._observers = tuple(observers)
        self.dropped = 0  # rows given up on (for /metrics)

    @property
    def pending(self) -> int:
        """Rows queued and not yet written."""
        return len(self._pending)

    def record(self, row: dict) -> None:
        """Queue one RequestLog row (a dict of its columns). Never blocks, never raises."""
        for observe in self._observers:
            try:
                observe(row)
            except Exception:
                log.exception("audit observer failed on row %s", row.get("id"))
        self._queue(row)

    async def stop(self) -> None:
        await super().stop()
        self.dropped += len(self._pending)  # what even the last try could not write

    def _dropped(self, rows: list[dict]) -> None:
        self.dropped += len(rows)

    def _write(self, rows: list[dict]) -> None:
        for row in rows:  # PostgreSQL enforces VARCHAR lengths: a client's 10 kB model name must not sink a batch
            for name, limit in _LIMITS:
                v = row.get(name)
                if v is not None and len(v) > limit:
                    row[name] = v[:limit]
        with self._store.session(write=True) as s:
            s.execute(insert(RequestLog), rows)
        self.written += len(rows)
