"""Batched audit writes, off the request path.

`record()` is a list append: the request never waits for the database. A background task moves the
pending rows to the `requests` table in one INSERT per batch, in a worker thread so a slow disk never
stalls the event loop. `stop()` drains everything, so a clean shutdown (including SIGTERM to
`mlxgw serve`) loses no row. If the database refuses a batch, the rows are kept and retried, up to
`max_pending` rows (beyond that the oldest are dropped with a warning rather than exhausting memory).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import insert

from mlxgw.store.db import Store
from mlxgw.store.tables import RequestLog

log = logging.getLogger("mlxgw.audit")


class AuditWriter:
    def __init__(self, store: Store, interval: float = 0.2, batch: int = 1000, max_pending: int = 100_000):
        self._store = store
        self._interval = interval
        self._batch = batch
        self._max_pending = max_pending
        self._pending: list[dict] = []
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self.written = 0

    @property
    def pending(self) -> int:
        """Rows queued and not yet written."""
        return len(self._pending)

    def record(self, row: dict) -> None:
        """Queue one RequestLog row (a dict of its columns). Never blocks, never raises."""
        self._pending.append(row)
        if len(self._pending) >= self._batch and self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="mlxgw-audit")

    async def stop(self) -> None:
        """Write every pending row, then end the background task."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._pending:  # rows a failing database kept back: one last try
            rows = self._take()
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception as exc:
                log.error("audit log: %d rows lost, the database refused them: %s", len(rows), exc)

    async def flush(self) -> None:
        """Write the rows pending now (in a worker thread), without stopping the writer. Rows the
        database refuses stay queued for the next try."""
        if self._pending:
            rows = self._take()
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception as exc:
                log.warning("audit log: cannot write %d rows: %s", len(rows), exc)
                self._pending[:0] = rows

    def flush_sync(self) -> None:
        """Write pending rows from synchronous code (tests, emergency exits)."""
        if self._pending:
            self._write(self._take())

    def _take(self) -> list[dict]:
        rows, self._pending = self._pending, []
        return rows

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._pending:
                rows = self._take()
                try:
                    await asyncio.to_thread(self._write, rows)
                except Exception as exc:  # keep the rows; retry on the next tick
                    log.warning("audit log: cannot write %d rows: %s", len(rows), exc)
                    self._pending[:0] = rows
                    overflow = len(self._pending) - self._max_pending
                    if overflow > 0:
                        del self._pending[:overflow]
                        log.warning("audit log: dropped %d rows the database would not take", overflow)
                    if self._stopping:
                        return
                    await asyncio.sleep(self._interval)
            if self._stopping and not self._pending:
                return

    def _write(self, rows: list[dict]) -> None:
        with self._store.session(write=True) as s:
            s.execute(insert(RequestLog), rows)
        self.written += len(rows)
