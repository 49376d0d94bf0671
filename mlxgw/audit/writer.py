"""Batched audit writes, off the request path.

`record()` is a list append: the request never waits for the database. The pending rows go to the
`requests` table in one INSERT per batch, from a worker thread (mlxgw.store.batches: drained on `stop()`,
so a clean shutdown loses no row; a refused batch is kept and retried up to `max_pending` rows).
"""

from __future__ import annotations

from sqlalchemy import insert

from mlxgw.store.batches import BatchWriter
from mlxgw.store.db import Store
from mlxgw.store.tables import RequestLog


class AuditWriter(BatchWriter):
    label = "audit log"

    def __init__(self, store: Store, interval: float = 0.2, batch: int = 1000, max_pending: int = 100_000):
        super().__init__(interval, batch, max_pending)
        self._store = store

    @property
    def pending(self) -> int:
        """Rows queued and not yet written."""
        return len(self._pending)

    def record(self, row: dict) -> None:
        """Queue one RequestLog row (a dict of its columns). Never blocks, never raises."""
        self._queue(row)

    def _write(self, rows: list[dict]) -> None:
        with self._store.session(write=True) as s:
            s.execute(insert(RequestLog), rows)
        self.written += len(rows)
