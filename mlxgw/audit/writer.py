"""Batched audit writes, off the request path.

`record()` makes the row storable (client-controlled texts cleaned and cut, missing columns filled: see
`storable_row`) and appends it to a list: the request never waits for the database. The pending rows go
to the `requests` table by mlxgw.store.batches: multi-row INSERTs on a connection of the writer's own, up
to 256 rows per statement, drained on `stop()` (a clean shutdown loses no row). A chunk the database
refuses is retried (the database's fault) or split until the bad rows are alone, which go to the
dead-letter file (`audit-dead-letter.jsonl` in MLXGW_HOME, mode 0600), counted in `dead`.

`observers` (the metrics, the tracer) see each finished row as it is recorded (after it was made
storable), so everything derived from a request's outcome needs no hook in the endpoints; an observer
that raises is logged, never propagated.
"""

from __future__ import annotations

import logging
from operator import itemgetter
from pathlib import Path

from mlxgw.dialects.jsonfast import dumps
from mlxgw.store.batches import BatchWriter
from mlxgw.text import MAX_ERROR_TEXT, MAX_MODEL_NAME, clip, storable

log = logging.getLogger("mlxgw.audit")

DEAD_LETTER = "audit-dead-letter.jsonl"
# Column -> the most characters kept (the column sizes of RequestLog, and a sane cap for error texts).
LIMITS = {"id": 64, "client_api": 16, "backend_api": 16, "requested_model": MAX_MODEL_NAME, "route": 300,
          "provider": 63, "backend_model": MAX_MODEL_NAME, "error": MAX_ERROR_TEXT, "path": 300}
# The columns of the `requests` table (mlxgw.store.tables.RequestLog), in the INSERT's order.
COLUMNS = ("id", "ts", "client_api", "backend_api", "requested_model", "route", "provider", "backend_model",
           "attempts", "stream", "status", "duration_ms", "ttfb_ms", "input_tokens", "output_tokens",
           "cached_tokens", "error", "attempts_detail", "failovers", "path")
_DEFAULTS = {**dict.fromkeys(COLUMNS), "attempts": 1, "stream": False, "failovers": 0}
_ID_MAX = LIMITS["id"]
_TEXT_LIMITS = tuple((k, n) for k, n in LIMITS.items() if k != "id")
_COLUMN_SET = frozenset(COLUMNS)
# The VARCHAR sizes PostgreSQL enforces (a model name may be 256 characters, its column keeps 200).
_SIZES = (("requested_model", 200), ("backend_model", 200))
_JSON = COLUMNS.index("attempts_detail")
# SQLite: sqlite3 binds an exact int, float or str in one C call, but None and bool go through its adapter
# registry (mlxgw.store.sql: a key tuple built, a dict lookup, a call; ~1,200 instructions a value, a tenth
# of the writer's CPU per row). A NaN binds as NULL (SQLite has no NaN: sqlite3_bind_double stores NULL),
# and a bool as the int its adapter makes of it, so those are given instead: in the columns most rows
# leave None (any other None still goes through the adapter), and `stream`.
_OFTEN_NONE = tuple(COLUMNS.index(c) for c in ("ttfb_ms", "input_tokens", "output_tokens", "cached_tokens", "error"))
_STREAM = COLUMNS.index("stream")
_NULL = float("nan")
_ALL = itemgetter(*COLUMNS)
# The text columns but the id (the gateway's own, unique per row): a request's route, provider, models,
# path and error repeat from row to row, so a tuple of them checked once is known fine after.
_TEXTS = itemgetter(*(k for k, _ in _TEXT_LIMITS))
_KNOWN_FINE: set[tuple] = set()
_KNOWN_MAX = 4096  # tuples kept at most (a pathological mix of models only costs the check each time)


def storable_row(row: dict) -> dict:
    """`row` with every text a database accepts: lone surrogates and NULs replaced, cut to its column's
    limit; the texts inside `attempts_detail` too. A row with every column is cleaned in place."""
    out = row if row.keys() == _COLUMN_SET else _complete(row)
    # A text is storable as it is when short ASCII with no NUL: three C checks, no regex, written out in
    # each loop below (a call per text was most of their cost).
    rid = out["id"]  # checked on its own: unique per row
    if rid.__class__ is str and not (len(rid) <= _ID_MAX and rid.isascii() and "\x00" not in rid):
        out["id"] = clip(storable(rid), _ID_MAX)
    texts = _TEXTS(out)
    try:
        known = texts in _KNOWN_FINE
    except TypeError:  # a value neither text nor None (a caller's bug): checked below, never remembered
        known, texts = False, None
    if not known:
        fine = True
        for key, limit in _TEXT_LIMITS:
            value = out[key]
            if value.__class__ is str and not (len(value) <= limit and value.isascii() and "\x00" not in value):
                out[key] = clip(storable(value), limit)
                fine = False
        if fine and texts is not None:
            if len(_KNOWN_FINE) >= _KNOWN_MAX:
                _KNOWN_FINE.clear()
            _KNOWN_FINE.add(texts)
    detail = out["attempts_detail"]
    if isinstance(detail, list) and not _attempts_fine(detail):
        out["attempts_detail"] = [
            {k: clip(storable(v), MAX_ERROR_TEXT) if isinstance(v, str) else v for k, v in a.items()}
            if isinstance(a, dict) else a for a in detail]
    return out


def _complete(row: dict) -> dict:
    """`row` with the columns of the table and no other key. One INSERT takes rows with one set of columns:
    a column a row leaves out gets its default. A key that is no column is a caller's bug (a typo in an
    AuditRecord attribute): logged, and dropped rather than kept where no one would see it."""
    extra = row.keys() - _COLUMN_SET
    if not extra:
        return {**_DEFAULTS, **row}
    log.error("audit row %s: not columns, dropped: %s", row.get("id"), ", ".join(sorted(map(repr, extra))))
    return {**_DEFAULTS, **{k: v for k, v in row.items() if k in _COLUMN_SET}}


def _attempts_fine(detail: list) -> bool:
    """Every text in the attempts storable as it is (see storable_row); anything but an object is left
    as it is. Measured: 360 ns for one attempt, against 800 ns joining their texts to check them in one C
    pass."""
    for a in detail:
        if isinstance(a, dict):
            for v in a.values():
                if isinstance(v, str) and not (len(v) <= MAX_ERROR_TEXT and v.isascii() and "\x00" not in v):
                    return False
    return True


class AuditWriter(BatchWriter):
    label = "audit log"
    table = "requests"
    columns = COLUMNS
    dead_letter_file = DEAD_LETTER

    def __init__(self, store, interval: float = 0.2, batch: int = 1000, max_pending: int = 100_000,
                 dead_letter: Path | None = None, observers: tuple = ()):
        super().__init__(store, interval, batch, max_pending, dead_letter)
        self._sqlite = self._db.sqlite
        self._observers = tuple(observers)
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

    def _values(self, row: dict) -> list:
        for name, size in _SIZES:
            v = row.get(name)
            if v is not None and len(v) > size:
                row[name] = v[:size]
        values = list(_ALL(row))  # every column is there: storable_row filled in the missing ones
        detail = values[_JSON]
        if detail is not None:
            values[_JSON] = dumps(detail).decode()
        if self._sqlite:
            for i in _OFTEN_NONE:
                if values[i] is None:
                    values[i] = _NULL
            stream = values[_STREAM]
            if stream is True or stream is False:
                values[_STREAM] = int(stream)
        return values
