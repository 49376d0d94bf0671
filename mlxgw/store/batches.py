"""`BatchWriter`: rows queued by the request path and written in batches, off it.

Queueing is a list append: a request never waits for the database. A background task moves the pending
rows to the database every `interval` seconds (sooner once `batch` rows wait), in a worker thread so a
slow disk never stalls the event loop. `stop()` drains everything, so a clean shutdown (SIGTERM to
`mlxgw serve` included) loses no row. A batch the database refuses is kept and retried, up to
`max_pending` rows (beyond that the oldest are dropped with a warning rather than exhausting memory).
One database write at a time (`_lock`), so a subclass can order its own writes (deletes) after a batch.

Used by the audit log (mlxgw.audit.writer) and the stored Responses (mlxgw.store.responses).
"""

from __future__ import annotations

import abc

import asyncio
import logging

log = logging.getLogger("mlxgw.store")


class BatchWriter(abc.ABC):
    label = "rows"  # how log lines name what is written

    def __init__(self, interval: float = 0.2, batch: int = 1000, max_pending: int = 100_000):
        self._interval = interval
        self._batch = batch
        self._max_pending = max_pending
        self._pending: list[dict] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self.written = 0

    # -- what a subclass provides --

    @abc.abstractmethod
    def _write(self, rows: list[dict]) -> None:
        """Write one batch (runs in a worker thread); raise to have it kept and retried."""

    def _dropped(self, rows: list[dict]) -> None:
        """Rows given up on (the database refused them too long)."""

    async def _tick(self) -> None:
        """Called once per cycle of the background task, after the flush."""

    # -- the queue --

    def _queue(self, row: dict) -> None:
        self._pending.append(row)
        if len(self._pending) >= self._batch and self._wake is not None:
            self._wake.set()

    def _take(self) -> list[dict]:
        rows, self._pending = self._pending, []
        return rows

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"mlxgw-{self.label}")

    async def stop(self) -> None:
        """Write every pending row, then end the background task."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._pending:  # rows a failing database kept back: one last try
            await self.flush()
            if self._pending:
                log.error("%s: %d lost, the database refused them", self.label, len(self._pending))

    async def flush(self) -> bool:
        """Write the rows pending now (in a worker thread), without stopping. Rows the database refuses
        stay queued for the next try; returns False then."""
        async with self._lock:
            rows = self._take()
            if not rows:
                return True
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception as exc:
                log.warning("%s: cannot write %d: %s", self.label, len(rows), exc)
                self._pending[:0] = rows
                overflow = len(self._pending) - self._max_pending
                if overflow > 0:
                    self._dropped(self._pending[:overflow])
                    del self._pending[:overflow]
                    log.warning("%s: dropped %d the database would not take", self.label, overflow)
                return False
        return True

    def flush_sync(self) -> None:
        """Write pending rows from synchronous code (tests, emergency exits)."""
        if self._pending:
            self._write(self._take())

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            ok = await self.flush()
            if self._stopping:
                return
            if not ok:
                await asyncio.sleep(self._interval)  # the database refused: back off a tick
            await self._tick()
