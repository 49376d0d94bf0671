"""Batched audit writes, off the request path.

`record()` makes the row storable (client-controlled texts cleaned and cut, missing columns filled: see
`storable_row`) and appends it to a list: the request never waits for the database. The pending rows go
to the `requests` table in one INSERT per batch, from a worker thread (mlxgw.store.batches: drained on
`stop()`, so a clean shutdown loses no row).

When the database refuses a batch:
- because of the database (locked, read-only, gone: an OperationalError), the rows are kept and retried,
  up to `max_pending` rows (mlxgw.store.batches);
- because of the rows (anything else: a constraint, a value the driver cannot bind), the batch is split
  in halves until the bad rows are alone; the good rows are written, each bad row is logged, counted in
  `dead` and appended to the dead-letter file (`audit-dead-letter.jsonl` in MLXGW_HOME, mode 0600). One
  bad row never holds back the others.

`observers` (the metrics, the tracer) see each finished row as it is recorded (after it was made
storable), so everything derived from a request's outcome needs no hook in the endpoints; an observer
that raises is logged, never propagated.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.exc import OperationalError

from mlxgw.store.batches import BatchWriter
from mlxgw.store.db import Store, home
from mlxgw.store.tables import RequestLog
from mlxgw.text import MAX_ERROR_TEXT, MAX_MODEL_NAME, clip, storable

log = logging.getLogger("mlxgw.audit")

DEAD_LETTER = "audit-dead-letter.jsonl"
# Column -> the most characters kept (the column sizes of RequestLog, and a sane cap for error texts).
LIMITS = {"id": 64, "client_api": 16, "backend_api": 16, "requested_model": MAX_MODEL_NAME, "route": 300,
          "provider": 63, "backend_model": MAX_MODEL_NAME, "error": MAX_ERROR_TEXT, "path": 300}
_DEFAULTS = {c.key: (c.default.arg if c.default is not None and c.default.is_scalar else None)
             for c in RequestLog.__table__.columns}


def storable_row(row: dict) -> dict:
    """`row` with every text a database accepts: lone surrogates and NULs replaced, cut to its column's
    limit; the texts inside `attempts_detail` too."""
    # One INSERT takes rows with one set of columns: a column a row leaves out gets its default.
    out = {**_DEFAULTS, **row}
    for key, limit in LIMITS.items():
        value = out.get(key)
        if isinstance(value, str):
            out[key] = clip(storable(value), limit)
    detail = out.get("attempts_detail")
    if isinstance(detail, list):
        out["attempts_detail"] = [
            {k: clip(storable(v), MAX_ERROR_TEXT) if isinstance(v, str) else v for k, v in a.items()}
            if isinstance(a, dict) else a for a in detail]
    return out

log = logging.getLogger("mlxgw.audit")
_LIMITS = tuple((c.name, c.type.length) for c in RequestLog.__table__.columns
                if getattr(c.type, "length", None) and c.name != "id")


class AuditWriter(BatchWriter):
    label = "audit log"

    def __init__(self, store: Store, interval: float = 0.2, batch: int = 1000, max_pending: int = 100_000,
                 dead_letter: Path | None = None, observers: tuple = ()):
        super().__init__(interval, batch, max_pending)
        self._store = store
        self._dead_letter = dead_letter
        self._observers = tuple(observers)
        self.dead = 0  # rows the database refused on their own: logged and kept in the dead-letter file
        self.dropped = 0  # rows given up on (for /metrics)

    @property
    def pending(self) -> int:
        """Rows queued and not yet written."""
        return len(self._pending)

    def record(self, row: dict) -> None:
        """Queue one RequestLog row (a dict of its columns). Never blocks, never raises."""
        try:
            row = storable_row(row)
        except Exception:  # a malformed row still gets its chance; the split below isolates it
            log.exception("audit log: cannot clean row %s", row.get("id"))
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
        """Insert `rows`; raise only when the database itself fails (then nothing was written)."""
        try:
            self._insert(rows)
        except OperationalError:
            raise
        except Exception as exc:
            if len(rows) == 1:
                self._bury(rows[0], exc)
                return
            mid = len(rows) // 2
            self._write(rows[:mid])
            self._write(rows[mid:])

    def _insert(self, rows: list[dict]) -> None:
        for row in rows:  # PostgreSQL enforces VARCHAR lengths: a client's 10 kB model name must not sink a batch
            for name, limit in _LIMITS:
                v = row.get(name)
                if v is not None and len(v) > limit:
                    row[name] = v[:limit]
        # The engine, not Store.session: that maps every driver error to a StoreError, and here a
        # refused row must be told apart from a failing database.
        with self._store.engine.execution_options(sqlite_immediate=True).begin() as conn:
            conn.execute(insert(RequestLog), rows)
        self.written += len(rows)

    def _bury(self, row: dict, exc: Exception) -> None:
        """A row the database refuses on its own: log it, count it, keep it in the dead-letter file."""
        self.dead += 1
        reason = clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 300)
        log.error("audit log: row %s refused by the database (%s); kept in %s", row.get("id"), reason,
                  DEAD_LETTER)
        path = self._dead_letter or home() / DEAD_LETTER
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"row": row, "reason": reason}, default=repr) + "\n")
        except OSError as err:
            log.error("audit log: cannot write the dead-letter file %s: %s", path, err.strerror)
