"""`BatchWriter`: rows queued by the request path and written in batches, off it.

Queueing is a list append: a request never waits for the database. A background task moves the pending
rows to the database every `interval` seconds (sooner once `batch` rows wait), in a worker thread so a
slow disk never stalls the event loop. `stop()` drains everything, so a clean shutdown (SIGTERM to
`mlxgw serve` included) loses no row. One database write at a time (`_lock`), so a subclass can order its
own writes (deletes) after a batch.

The writes are multi-row INSERTs (`INSERT ... VALUES (...), (...), ...`) on a connection of the
writer's own (mlxgw.store.sql), a chunk of rows per transaction, each chunk its own trip to a worker
thread. Many rows per statement, not `executemany`: the driver lets go of the GIL for each statement's
step and must take it back after, and on a busy single core every take-back is a forced switch away from
the event loop (after the interpreter's 5 ms switch interval) and two context switches. Per row, that
cost the writer thread about 45 us of CPU under load; per statement of up to `MAX_ROWS` rows it is paid
once (about 10 us a row all told). Statements come in power-of-two sizes, so a handful are prepared and
cached. A chunk holds as many rows as take about `budget` (1 ms) of the thread's CPU, from the cost per row
measured on the writes so far (bench/audit_gil.py measures it), but never fewer than `min_chunk`: the
audit log's small rows go 256 at a time, since only building and binding them holds the GIL, and the
stored Responses' big rows a few at a time.

When the database refuses a chunk:
- because of the database (locked, read-only, gone: the driver's OperationalError), the rows are kept and
  retried, up to `max_pending` rows (beyond that the oldest are dropped with a warning rather than
  exhausting memory);
- because of the rows (anything else: a constraint, a value the driver cannot bind), the chunk is split in
  halves until the bad rows are alone; the good rows are written, each bad row is logged, counted in
  `dead` and appended to the writer's dead-letter file in MLXGW_HOME (mode 0600). One bad row never holds
  back the others.

Used by the audit log (mlxgw.audit.writer) and the stored Responses (mlxgw.store.responses).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path

from mlxgw.errors import StoreError
from mlxgw.store.sql import home
from mlxgw.text import clip

log = logging.getLogger("mlxgw.store")

MAX_ROWS = 256  # rows per INSERT statement at most (a power of two; 256 x 20 columns is far below the
# drivers' limits on bound values: SQLite's 32,766, PostgreSQL's 65,535)


def blocks(n: int) -> list[int]:
    """The statement sizes that write `n` rows: MAX_ROWS while it fits, then the binary digits of the
    rest (37 rows: 32, 4, 1)."""
    sizes = [MAX_ROWS] * (n // MAX_ROWS)
    rest = n % MAX_ROWS
    while rest:
        top = 1 << (rest.bit_length() - 1)
        sizes.append(top)
        rest -= top
    return sizes


class BatchWriter(abc.ABC):
    label = "rows"  # how log lines name what is written
    table = ""  # the table rows go to
    columns: tuple[str, ...] = ()  # its columns, in the order `_values` gives them
    dead_letter_file = "dead-letter.jsonl"  # where refused rows are kept, in MLXGW_HOME
    budget = 0.001  # seconds of the worker thread's CPU per database call (one chunk)
    # ...but never fewer rows: a transaction's own cost must not throttle the writes, and a statement of
    # MAX_ROWS small rows costs about 7 us a row against 12 for 32 (the GIL is held only to build and bind
    # the values, well under the budget for audit rows).
    min_chunk = MAX_ROWS

    def __init__(self, store, interval: float = 0.2, batch: int = 1000, max_pending: int = 100_000,
                 dead_letter: Path | None = None):
        self._db = store.db
        self._interval = interval
        self._batch = batch
        self._max_pending = max_pending
        self._dead_letter = dead_letter
        self._pending: list[dict] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._conn = None  # the writer's own connection, opened on first write
        self._row_cost = 1e-5  # seconds of thread CPU per row written: a running mean of the writes so far
        self._statements: dict[int, str] = {}  # rows -> the INSERT of that many rows
        self.written = 0
        self.dead = 0  # rows the database refused on their own: logged and kept in the dead-letter file

    # -- what a subclass provides --

    @abc.abstractmethod
    def _values(self, row: dict) -> tuple | list:
        """The row's values in `columns` order, as the driver binds them."""

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
        self._close()

    async def flush(self) -> bool:
        """Write the rows pending now (chunk by chunk, each in a worker thread), without stopping. Rows
        the database refuses stay queued for the next try; returns False then."""
        async with self._lock:
            rows = self._take()
            start = 0
            while start < len(rows):
                end = start + self.chunk()
                try:
                    await asyncio.to_thread(self._write, rows[start:end])
                except Exception as exc:
                    self._keep(rows[start:], exc)
                    return False
                start = end
        return True

    def chunk(self) -> int:
        """Rows for the next database call: about `budget` of CPU at the measured cost per row."""
        return max(self.min_chunk, min(self._batch, int(self.budget / self._row_cost)))

    def _keep(self, rows: list[dict], exc: Exception) -> None:
        log.warning("%s: cannot write %d: %s", self.label, len(rows), exc)
        self._pending[:0] = rows
        overflow = len(self._pending) - self._max_pending
        if overflow > 0:
            self._dropped(self._pending[:overflow])
            del self._pending[:overflow]
            log.warning("%s: dropped %d the database would not take", self.label, overflow)

    def flush_sync(self) -> None:
        """Write pending rows from synchronous code (tests, emergency exits)."""
        rows = self._take()
        while rows:
            n = self.chunk()
            self._write(rows[:n])
            rows = rows[n:]

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

    # -- the database (in a worker thread) --

    def _write(self, rows: list[dict]) -> None:
        """Insert `rows`; raise only when the database itself fails (then nothing was written)."""
        try:
            self._insert(rows)
        except (self._db.driver.OperationalError, StoreError):
            self._close()  # the connection may be gone: the next try opens another
            raise
        except Exception as exc:
            if len(rows) == 1:
                self._bury(rows[0], exc)
                return
            mid = len(rows) // 2
            self._write(rows[:mid])
            self._write(rows[mid:])

    def _insert(self, rows: list[dict]) -> None:
        if self._conn is None:
            self._conn = self._db.connect()
        cpu = time.thread_time()
        params: list = []  # every row's values, one after the other: each statement binds a slice
        for row in rows:
            params += self._values(row)
        width = len(self.columns)
        if len(params) != len(rows) * width:  # a row of the wrong length would shift every row after it
            raise ValueError(f"{self.label}: rows of other than {width} values")
        with self._db.transaction(conn=self._conn, raw=True) as cur:
            start = 0
            for n in blocks(len(rows)):
                end = start + n * width
                cur.execute(self._statement(n), params[start:end])
                start = end
        # CPU, not wall time: a commit waiting on the disk lets go of the GIL.
        self._row_cost = 0.7 * self._row_cost + 0.3 * max((time.thread_time() - cpu) / len(rows), 1e-7)
        self.written += len(rows)

    def _statement(self, rows: int) -> str:
        sql = self._statements.get(rows)
        if sql is None:
            one = f"({', '.join('?' * len(self.columns))})"
            sql = self._statements[rows] = self._db.sql(
                f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES {', '.join([one] * rows)}")
        return sql

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _bury(self, row: dict, exc: Exception) -> None:
        """A row the database refuses on its own: log it, count it, keep it in the dead-letter file."""
        self.dead += 1
        reason = clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 300)
        name = self.dead_letter_file
        log.error("%s: row %s refused by the database (%s); kept in %s", self.label, row.get("id"), reason, name)
        path = self._dead_letter or home() / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"row": row, "reason": reason}, default=repr) + "\n")
        except OSError as err:
            log.error("%s: cannot write the dead-letter file %s: %s", self.label, path, err.strerror)
